"""CREMA-D path end to end: finishedResponses.csv -> categorical heads ->
enrollment by log-likelihood -> protocol, on a generated per-rater file.

Raters come in 3 "types", each favouring one emotion on ambiguous clips, so
a new rater is best predicted by a pre-trained head of their own type.
"""

import csv

import numpy as np
import pytest

from annojax import adaptive
from annojax import export
from annojax import jobs
from annojax import losses
from annojax.corpora import crema_d
from annojax.corpora import embeddings
from tests.test_readers import CREMA_HEADER


def _write_corpus(tmp_path, seed=0, n_actors=30, clips_per_actor=40,
                  n_raters=150, raters_per_clip=12, dim=12):
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(dim, 6))
  favourite = np.array([0, 3, 5])  # anger, happy, sad
  types = rng.integers(0, 3, n_raters)
  ids, emb, lines = [], [], []
  for a in range(n_actors):
    for c in range(clips_per_actor):
      clip = f"{1001 + a}_S{c:03d}_XXX_XX"
      x = rng.normal(size=dim)
      ids.append(clip)
      emb.append(x)
      base = x @ w
      for r in rng.choice(n_raters, raters_per_clip, replace=False):
        logits = base + 2.5 * np.eye(6)[favourite[types[r]]]
        emo = crema_d.CODES[int(np.argmax(logits + rng.gumbel(size=6)))]
        lines.append(f"rater{r:04d},1,{emo}_50,900,1,1,1,1,4,{clip},1,{emo},"
                     "50,N,50,50\n")
  (tmp_path / "finishedResponses.csv").write_text(CREMA_HEADER +
                                                  "".join(lines))
  np.savez(tmp_path / "emb.npz", clip_ids=np.array(ids),
           embeddings=np.array(emb, np.float32))
  return {f"rater{r:04d}": int(t) for r, t in enumerate(types)}


def test_xent_loss_hand_computed():
  logits = np.array([[[2.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]]], np.float32)
  label = np.array([[[1.0, -1.0, -1.0]], [[-1.0, 1.0, -1.0]]], np.float32)
  mask = np.array([[1.0], [0.0]], np.float32)  # the second pair is masked
  loss, per_class = losses.xent_loss(logits, label, mask)
  want = -(2.0 - np.log(np.exp(2.0) + 2.0))
  np.testing.assert_allclose(float(loss), want, rtol=1e-6)
  np.testing.assert_allclose(per_class, [want, 0, 0], rtol=1e-6)
  loss0, _ = losses.xent_loss(logits, label, np.zeros((2, 1), np.float32))
  assert float(loss0) == 0.0  # all masked: finite


def test_crema_d_end_to_end(tiny_config, tmp_path, monkeypatch):
  types = _write_corpus(tmp_path)
  temperatures = []
  simulate = adaptive.simulate

  def spy(*args, **kwargs):
    temperatures.append(args[5])  # (z, pred, pools, kernel, bias, T, ...)
    return simulate(*args, **kwargs)

  monkeypatch.setattr(adaptive, "simulate", spy)
  c = tiny_config
  c.mode = "all"
  c.data.corpus = "files"
  src, tgt = c.data.files.source, c.data.files.target
  src.name, src.reader, src.path = "cremad_pre", "crema_d", str(tmp_path)
  src.embeddings = str(tmp_path / "emb.npz")
  src.options = {"raters": "pretrain", "actors": "pretrain"}
  tgt.name, tgt.reader, tgt.path = "cremad_new", "crema_d", str(tmp_path)
  tgt.embeddings = src.embeddings
  tgt.options = {"raters": "new", "actors": "new"}
  c.data.min_ratings = 20
  c.train.loss = "xent"
  c.eval.score = "loglik"
  c.eval.folds = 3
  c.eval.enroll_sizes = (3, 10, 0)
  c.eval.adaptive_sizes = (3, 10)
  c.train.num_epochs = 15
  c.optim.early_stop_patience = 15
  out = jobs.run(c, str(tmp_path / "work"))
  rows = out["results"]["rows"]
  # Raters and actors held apart: nothing of the test material was seen.
  assert out["prepared"].overlap == {"clips": 0, "speakers": 0,
                                     "annotators": 0, "allowed": []}
  assert set(out["results"]["protocol"]["metrics"]) == {"agreement_ind",
                                                        "loglik_ind"}
  assert "linear_fit@all" not in rows  # rating-only rows are left out
  agree = {k: v["agreement_ind"]["all"]["mean"] for k, v in rows.items()}
  ll = {k: v["loglik_ind"]["all"]["mean"] for k, v in rows.items()}
  # Enrollment picks a head of the rater's own type: it beats a random head
  # and the consensus model, in agreement and in log-likelihood.
  assert agree["most_similar@all"] > agree["random_head"] + 0.05
  assert agree["most_similar@all"] > agree["aggregate"]
  assert ll["most_similar@all"] > ll["random_head"]
  assert agree["oracle"] >= agree["most_similar@all"] - 0.02
  # Adaptive clips (class probabilities, Bayes' rule: T = 1 for every fold
  # of both seeds): the head found on them is of the rater's type too, as
  # on random clips.
  assert temperatures == [1.0] * 6
  assert agree["adaptive_most_similar@10"] > agree["random_head"] + 0.05
  assert (set(out["results"]["adaptive_vs_random"]["per_fold"])
          == {"most_similar@3", "most_similar@10"})
  assert "agreement_ind means" in (tmp_path / "work" / "eval" /
                                   "results.md").read_text()
  # The exported bundle serves --mode=enroll/predict for categorical heads:
  # a rater who labels like pre-trained head j maps to a head of j's type.
  b = export.load(str(tmp_path / "work" / "export"))
  assert b.categorical and b.dims == crema_d.DIMS
  assert all(crema_d.rater_group(a) == "pretrain" for a in b.annotator_ids)
  ids, emb = embeddings.read_embeddings(str(tmp_path / "emb.npz"))
  kernel, bias = b.heads()
  rows = ["clip,annotator,label"]
  for j in (0, 1, 2):
    logits = np.einsum("cdh,dh->cd", b.features(emb[:60]), kernel[j]) + bias[j]
    rows += [f"{c},like_{j},{crema_d.DIMS[k]}"
             for c, k in zip(ids[:60], logits.argmax(1))]
  (tmp_path / "enroll.csv").write_text("\n".join(rows) + "\n")
  c.predict.bundle = str(tmp_path / "work" / "export")
  c.predict.embeddings = str(tmp_path / "emb.npz")
  c.predict.ratings = str(tmp_path / "enroll.csv")
  c.predict.score = "loglik"
  c.mode = "enroll"
  mapping = jobs.run(c, str(tmp_path / "new"))["mapping"]["annotators"]
  for j in (0, 1, 2):
    chosen = mapping[f"like_{j}"]["heads"][0]
    assert types[chosen] == types[b.annotator_ids[j]]
  c.mode = "predict"
  path = jobs.run(c, str(tmp_path / "new"))["predictions"]
  with open(path) as f:
    pred = list(csv.DictReader(f))
  assert len(pred) == 3 * len(ids)
  probs = np.array([[float(r[d]) for d in crema_d.DIMS] for r in pred])
  np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-4)
  assert all(r["label"] == crema_d.DIMS[int(np.argmax(p))]
             for r, p in zip(pred, probs))
  _suggestion_rounds(c, b, tmp_path, ids, emb, types)
  c.predict.score = "ccc"
  c.predict.pool = ""
  c.mode = "enroll"
  with pytest.raises(ValueError, match="heads are categorical"):
    jobs.run(c, str(tmp_path / "new2"))


def _suggestion_rounds(c, b, tmp_path, ids, emb, types):
  """Listening test in rounds with categorical heads: suggestions.csv has
  an empty label column; a listener with no labels yet is asked first the
  pool clip whose class probabilities the heads disagree on most; the
  rated listeners are asked only clips they have not labelled; the filled
  file comes back (a blank label = a skipped row) with the first one."""
  c.mode = "enroll"
  c.predict.pool = str(tmp_path / "emb.npz")
  c.predict.annotators = "newbie"
  c.predict.propose = 4
  jobs.run(c, str(tmp_path / "r0"))
  with open(tmp_path / "r0" / "enroll" / "suggestions.csv") as f:
    sugg = list(csv.DictReader(f))
  assert list(sugg[0]) == ["clip", "annotator", "label", "rank", "spread"]
  assert all(r["label"] == "" for r in sugg)
  by = {}
  for r in sugg:
    by.setdefault(r["annotator"], []).append(r["clip"])
  assert sorted(by) == ["like_0", "like_1", "like_2", "newbie"]
  assert all(len(v) == 4 for v in by.values())
  rated = set(ids[:60])
  assert not rated & {x for n, v in by.items() if n != "newbie" for x in v}
  kernel, bias = b.heads()
  probs = np.asarray(adaptive.head_predictions(b.features(emb), kernel, bias,
                                               True), np.float64)
  spread = probs.var(1).sum(-1)  # uniform weights over the heads
  assert by["newbie"][0] == ids[int(spread.argmax())]
  # The listeners label their suggestions as their head would, but for
  # each one's last suggestion (left blank).
  lines = ["clip,annotator,label,rank,spread"]
  for r in sugg:
    label = ""
    if r["annotator"].startswith("like_") and r["rank"] != "4":
      j = int(r["annotator"][5:])
      i = list(ids).index(r["clip"])
      label = crema_d.DIMS[int(np.argmax(probs[i, j]))]
    lines.append(f"{r['clip']},{r['annotator']},{label},{r['rank']},"
                 f"{r['spread']}")
  (tmp_path / "round0.csv").write_text("\n".join(lines) + "\n")
  c.predict.ratings = f"{tmp_path / 'enroll.csv'},{tmp_path / 'round0.csv'}"
  c.predict.annotators = ""
  mapping = jobs.run(c, str(tmp_path / "r1"))["mapping"]["annotators"]
  assert sorted(mapping) == ["like_0", "like_1", "like_2"]  # newbie: blank
  for j in (0, 1, 2):
    assert mapping[f"like_{j}"]["num_clips"] == 63
    assert types[mapping[f"like_{j}"]["heads"][0]] == types[
        b.annotator_ids[j]]


def test_crema_d_rater_only_split_leaks_and_is_refused(tiny_config, tmp_path):
  """Splitting raters but not actors puts the target's test clips and
  speakers in pre-training: prepare fails naming the counts, unless the
  config allows it, and then the results say so."""
  from annojax.data import prepare  # pylint: disable=g-import-not-at-top
  _write_corpus(tmp_path, n_actors=10, clips_per_actor=10)
  c = tiny_config
  c.data.corpus = "files"
  src, tgt = c.data.files.source, c.data.files.target
  for spec, group in ((src, "pretrain"), (tgt, "new")):
    spec.name, spec.reader, spec.path = f"c_{group}", "crema_d", str(tmp_path)
    spec.embeddings = str(tmp_path / "emb.npz")
    spec.options = {"raters": group}
  c.data.min_ratings = 1
  with pytest.raises(prepare.LeakageError,
                     match=r"shares 100 clips .*10 speakers"):
    prepare.prepare(c, str(tmp_path / "w"))
  c.data.allow_overlap = ("clips", "speakers")
  got = prepare.prepare(c, str(tmp_path / "w")).overlap
  assert got == {"clips": 100, "speakers": 10, "annotators": 0,
                 "allowed": ["clips", "speakers"]}
  from annojax.protocol import tables  # pylint: disable=g-import-not-at-top
  assert "Overlap allowed" in tables._overlap_line(got)  # pylint: disable=protected-access
