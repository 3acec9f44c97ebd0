"""Export bundle, and --mode=enroll / --mode=predict from the bundle alone."""

import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from annojax import adaptive
from annojax import export
from annojax import jobs
from annojax import predict
from annojax import train
from annojax.corpora import ratings as ratings_lib
from annojax.data import pipeline
from annojax.protocol import source
from tests import test_blend
from tests import test_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bundle_dir(trained_tiny, tmp_path_factory):
  config, workdir, prepared = trained_tiny
  path = export.export(config, workdir, prepared)
  # Copy it away from the workdir: enroll/predict must need nothing else.
  moved = str(tmp_path_factory.mktemp("moved") / "bundle")
  shutil.copytree(path, moved)
  return moved


def test_bundle_carries_the_posterior_tuned_on_source(trained_tiny,
                                                      bundle_dir):
  """The bundle stores the temperature and rating noise the protocol would
  tune for seed 0's model on the source's held-out raters; enroll's
  suggestions use them unless config.predict sets its own (older bundles:
  1.0 and 0.1)."""
  config, workdir, prepared = trained_tiny
  b = export.load(bundle_dir)
  post = b.info["posterior"]
  graphdef, params = train.load_best(config, workdir, "individual", prepared)
  held = source.source_held_out(prepared)
  want = source.tune_on_source(
      config, held, train.trunk_features(graphdef, params,
                                         held["embeddings"]),
      *train.head_arrays(params), seed=0)
  assert post["temperature"] == want.temperature
  assert post["temperature"] in config.eval.mixture_temperatures
  assert post["noise"] == pytest.approx(want.noise) and 0 < post["noise"] < 1
  p = ml_collections.ConfigDict(dict(config.predict))
  assert (p.temperature, p.noise) == (0, 0)  # the defaults: the bundle's
  got = predict._posterior_settings(p, b)  # pylint: disable=protected-access
  assert got == pytest.approx((post["temperature"], post["noise"]))
  p.temperature = 2.5
  assert predict._posterior_settings(p, b)[0] == 2.5  # pylint: disable=protected-access
  older = dataclasses.replace(b, info={k: v for k, v in b.info.items()
                                       if k != "posterior"})
  p.temperature = 0.0
  assert predict._posterior_settings(p, older) == (1.0, 0.1)  # pylint: disable=protected-access
  p.noise = -1.0
  with pytest.raises(ValueError, match="predict.noise"):
    predict._posterior_settings(p, b)  # pylint: disable=protected-access


def test_bundle_restores_the_best_params(trained_tiny, bundle_dir):
  config, workdir, prepared = trained_tiny
  _, best = train.load_best(config, workdir, "individual", prepared)
  b = export.load(bundle_dir)
  want, got = jax_leaves(best), jax_leaves(b.params)
  assert len(want) == len(got) == 8
  for x, y in zip(want, got):
    np.testing.assert_array_equal(x, y)
  _, best_agg = train.load_best(config, workdir, "aggregate", prepared)
  want, got = jax_leaves(best_agg), jax_leaves(b.aggregate[1])
  assert len(want) == len(got) == 8
  for x, y in zip(want, got):
    np.testing.assert_array_equal(x, y)
  meta = pipeline.read_meta(prepared.source)
  assert tuple(b.info["annotator_ids"]) == meta.annotator_ids
  assert b.dims == meta.dims
  assert b.info["embedding_dim"] == meta.embedding_dim


def jax_leaves(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _write_inputs(tmp_path, bundle, planted_head, n_clips=40, seed=0):
  """Embeddings of new clips, and one new annotator who rates exactly like
  head `planted_head` (on a 1-7 scale) plus one who rates at random."""
  rng = np.random.default_rng(seed)
  emb = rng.standard_normal((n_clips, bundle.info["embedding_dim"])
                            ).astype(np.float32)
  emb[-5:] *= 30.0  # unseen clips far out: raw outputs beyond the scale
  ids = np.array([f"new_clip_{i:03d}" for i in range(n_clips)])
  np.savez(tmp_path / "emb.npz", clip_ids=ids, embeddings=emb)
  kernel, bias = bundle.heads()
  pred = np.einsum("cdh,dh->cd", bundle.features(emb), kernel[planted_head]
                   ) + bias[planted_head]
  pred = np.clip(pred, -1, 1)
  with open(tmp_path / "enroll.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["clip", "annotator", *bundle.dims])
    for c, p in zip(ids[:25], pred[:25]):
      w.writerow([c, "planted", *(1 + (p + 1) * 3)])  # [-1, 1] -> [1, 7]
    for c in ids[:10]:
      w.writerow([c, "random", *rng.integers(1, 8, len(bundle.dims))])
  return ids, emb


def _predict_config(tiny_config, bundle_dir, tmp_path, mode):
  c = tiny_config
  c.mode = mode
  c.predict.bundle = bundle_dir
  c.predict.embeddings = str(tmp_path / "emb.npz")
  c.predict.ratings = str(tmp_path / "enroll.csv")
  c.predict.scale = (1.0, 7.0)
  c.predict.rule = "top_k"  # the copied heads (the blended rule: its test)
  return c


def test_enroll_then_predict_from_bundle_alone(tiny_config, bundle_dir,
                                               tmp_path):
  b = export.load(bundle_dir)
  planted = 7
  ids, emb = _write_inputs(tmp_path, b, planted)
  workdir = str(tmp_path / "work")
  out = jobs.run(_predict_config(tiny_config, bundle_dir, tmp_path,
                                 "enroll"), workdir)["mapping"]
  m = out["annotators"]["planted"]
  assert out["rule"] == "top_k" and m["from_consensus"] == 1.0
  assert m["heads"] == [b.annotator_ids[planted]]
  assert m["num_clips"] == 25 and out["annotators"]["random"][
      "num_clips"] == 10
  assert m["margin"] > 0
  with open(os.path.join(workdir, "enroll", "mapping.csv")) as f:
    rows = list(csv.DictReader(f))
  assert {r["annotator"] for r in rows} == {"planted", "random"}
  assert {(r["rule"], r["weight"]) for r in rows} == {("top_k", "1")}

  # predict via the command line, as a user would.
  r = subprocess.run(
      [sys.executable, "-m", "annojax.main", "--config=configs/tiny.py",
       f"--workdir={workdir}", "--mode=predict",
       f"--config.predict.embeddings={tmp_path / 'emb.npz'}"],
      cwd=ROOT, capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-3000:]
  with open(os.path.join(workdir, "predict", "predictions.csv")) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2 * len(ids)
  got = np.array([[float(r[d]) for d in b.dims] for r in rows
                  if r["annotator"] == "planted"])
  kernel, bias = b.heads()
  raw = np.einsum("cdh,dh->cd", b.features(emb), kernel[planted]
                  ) + bias[planted]
  assert (np.abs(raw) > 1.05).sum() >= 3  # the test has values to clip
  want = np.clip(raw, -1, 1)  # config.predict.clip, the default
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  scaled = np.array([[float(r[f"{d}_scaled"]) for d in b.dims] for r in rows
                     if r["annotator"] == "planted"])
  np.testing.assert_allclose(scaled, 1 + (want + 1) * 3, rtol=1e-4,
                             atol=1e-4)
  assert scaled.min() >= 1.0 and scaled.max() <= 7.0

  # clip=False writes the heads' raw outputs.
  c = _predict_config(tiny_config, bundle_dir, tmp_path, "predict")
  c.predict.clip = False
  jobs.run(c, workdir)
  with open(os.path.join(workdir, "predict", "predictions.csv")) as f:
    rows = list(csv.DictReader(f))
  got = np.array([[float(r[f"{d}_scaled"]) for d in b.dims] for r in rows
                  if r["annotator"] == "planted"])
  np.testing.assert_allclose(got, 1 + (raw + 1) * 3, rtol=1e-4, atol=1e-4)


def test_predict_writes_each_clips_rating_distribution(
    trained_tiny, tiny_config, bundle_dir, tmp_path):
  """config.predict.distribution: distributions.csv holds each clip's KDE of
  every head (weights: the annotators' source training ratings; the width
  and shrink toward the heads' mean the bundle chose on the source), its mean, s.d. and quantiles recomputed
  here with scipy's truncated normal, on [-1, 1] and on the 1-7 scale."""
  from scipy import optimize  # pylint: disable=g-import-not-at-top
  from scipy import stats  # pylint: disable=g-import-not-at-top
  _, _, prepared = trained_tiny
  b = export.load(bundle_dir)
  info = b.info["distribution"]
  src = pipeline.load_table(prepared.source, "train")
  np.testing.assert_array_equal(info["annotator_weights"], np.bincount(
      src.pair_annotator, minlength=len(b.annotator_ids)))
  ids, emb = _write_inputs(tmp_path, b, 3)
  workdir = str(tmp_path / "work")
  jobs.run(_predict_config(tiny_config, bundle_dir, tmp_path, "enroll"),
           workdir)
  c = _predict_config(tiny_config, bundle_dir, tmp_path, "predict")
  c.predict.distribution = True
  jobs.run(c, workdir)
  with open(os.path.join(workdir, "predict", "distributions.csv")) as f:
    rows = list(csv.DictReader(f))
  assert [r["clip"] for r in rows] == list(ids)
  kernel, bias = b.heads()
  heads = np.einsum("cdh,adh->cad", b.features(emb), kernel) + bias
  w = np.asarray(info["annotator_weights"], float)
  w /= w.sum()
  mean = np.einsum("a,cad->cd", w, heads)[:, None]
  heads = np.clip(mean + np.asarray(info["shrink"]) * (heads - mean), -1, 1)
  for i in (0, 7, len(ids) - 1):
    for j, d in enumerate(b.dims):
      s = info["width"][j]
      parts = [stats.truncnorm((-1 - m) / s, (1 - m) / s, loc=m, scale=s)
               for m in heads[i, :, j]]
      mean = sum(wk * p.mean() for wk, p in zip(w, parts))
      second = sum(wk * (p.var() + p.mean() ** 2) for wk, p in zip(w, parts))
      got = {k: float(rows[i][f"{d}_{k}"]) for k in
             ("mean", "sd", "q05", "q50", "q95")}
      assert got["mean"] == pytest.approx(mean, abs=1e-4)
      assert got["sd"] == pytest.approx(np.sqrt(second - mean ** 2),
                                        abs=1e-4)
      for q in (5, 50, 95):
        root = optimize.brentq(lambda x, q=q: sum(
            wk * p.cdf(x) for wk, p in zip(w, parts)) - q / 100, -1, 1)
        assert got[f"q{q:02d}"] == pytest.approx(root, abs=3e-3)
      assert float(rows[i][f"{d}_sd_scaled"]) == pytest.approx(
          3 * got["sd"], rel=1e-4)
      assert float(rows[i][f"{d}_q50_scaled"]) == pytest.approx(
          1 + 3 * (got["q50"] + 1), rel=1e-4)


def test_blended_enrollment_is_the_default_and_predict_serves_it(
    tiny_config, bundle_dir, tmp_path):
  """The default rule: enroll writes each annotator's blended head and
  consensus part (mapping.json, blended_heads.npz) and how far it moved
  from the consensus (mapping.csv); predict's values equal the rule
  computed here from the bundle's arrays (blend.py); the weights are the
  bundle's, learned at export on the source's held-out raters."""
  b = export.load(bundle_dir)
  assert b.blendable and b.info["format_version"] == export.FORMAT_VERSION
  weights, heads = b.blend()
  assert len(weights.sizes) >= 2 and weights.weights.shape == (
      len(weights.sizes), 3)
  ids, emb = _write_inputs(tmp_path, b, planted_head=3)
  workdir = str(tmp_path / "work")
  c = _predict_config(tiny_config, bundle_dir, tmp_path, "enroll")
  c.predict.rule = "blended"
  out = jobs.run(c, workdir)["mapping"]
  assert out["rule"] == "blended" and out["blend"] == b.info["blend"][
      "weights"]
  with open(os.path.join(workdir, "enroll", "mapping.csv")) as f:
    rows = list(csv.DictReader(f))
  moved = {r["annotator"]: float(r["from_consensus"]) for r in rows}
  assert set(moved) == {"planted", "random"}
  # Under the blended rule the head is the most similar one, for
  # reference: no copy weight beside from_consensus (it showed weight=1).
  assert {(r["rule"], r["weight"]) for r in rows} == {("blended", "")}
  assert {r["head"] for r in rows if r["annotator"] == "planted"} == {
      b.annotator_ids[3]}
  for name, m in out["annotators"].items():
    assert moved[name] == pytest.approx(m["from_consensus"], abs=1e-3)
    assert 0.0 <= m["from_consensus"] <= 1.0
  # The rule from its definition (test_blend.blended_by_hand) on the
  # bundle's arrays, no files.
  with open(c.predict.ratings) as f:
    lines = list(csv.DictReader(f))
  row_of = {cid: i for i, cid in enumerate(ids)}
  z, agg = b.features(emb), b.consensus(emb)
  names = sorted({r["annotator"] for r in lines})
  want = {}
  for n in names:
    mine = [r for r in lines if r["annotator"] == n]
    cl = [row_of[r["clip"]] for r in mine]
    y = np.array([[(float(r[d]) - 1) / 3 - 1 for d in b.dims] for r in mine])
    want[n] = test_blend.blended_by_hand(
        b.info["blend"]["weights"], heads.kernel, heads.bias, heads.prior,
        heads.temperature, heads.noise, heads.rescale, heads.shrink, z[cl],
        agg[cl], y, z, agg)
    assert out["annotators"][n]["from_consensus"] == pytest.approx(
        want[n][1], abs=1e-6)
  c.mode = "predict"
  jobs.run(c, workdir)
  with open(os.path.join(workdir, "predict", "predictions.csv")) as f:
    rows = list(csv.DictReader(f))
  for n in names:
    got = np.array([[float(r[d]) for d in b.dims] for r in rows
                    if r["annotator"] == n])
    np.testing.assert_allclose(got, np.clip(want[n][0], -1, 1), atol=1e-4)
  # Without the heads file, predict says what is missing.
  os.remove(os.path.join(workdir, "enroll", predict.BLENDED_HEADS))
  with pytest.raises(FileNotFoundError, match="blended_heads.npz"):
    jobs.run(c, workdir)
  # A bundle without the consensus model (format 3): the top_k rule.
  older = dataclasses.replace(b, aggregate=None)
  assert predict._rule(c.predict, older) == "top_k"  # pylint: disable=protected-access
  c.predict.rule = "top_1"
  with pytest.raises(ValueError, match="blended"):
    predict._rule(c.predict, b)  # pylint: disable=protected-access


def _on_five_points(src, dst):
  """The 1-7 enrollment file rewritten on 1-5 (the same [-1, 1] ratings)."""
  with open(src, newline="") as f:
    rows = list(csv.reader(f))
  with open(dst, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(rows[0])
    for r in rows[1:]:
      w.writerow(r[:2] + [f"{1 + (float(v) - 1) * 4 / 6:.9g}" for v in r[2:]])


def test_enrollment_scale_is_declared_recorded_and_used_by_predict(
    tiny_config, bundle_dir, tmp_path, caplog):
  """No silent default scale: the bundle records its source corpus's scale
  (the synthetic population's 1-7); a 1-5 listening test enrolled without
  declaring its scale is read on 1-7 with a warning naming its range; with
  its scale declared, the same heads and scores as the 1-7 file; the scale
  is recorded in mapping.json and predict writes on it."""
  b = export.load(bundle_dir)
  assert b.info["source_scale"] == [1.0, 7.0]
  planted = 5
  ids, emb = _write_inputs(tmp_path, b, planted)
  c = _predict_config(tiny_config, bundle_dir, tmp_path, "enroll")
  on_seven = jobs.run(c, str(tmp_path / "w7"))["mapping"]
  _on_five_points(tmp_path / "enroll.csv", tmp_path / "five.csv")
  c.predict.ratings = str(tmp_path / "five.csv")
  c.predict.scale = ()  # as a newcomer would leave it
  with caplog.at_level("WARNING"):
    undeclared = jobs.run(c, str(tmp_path / "w_undeclared"))["mapping"]
  assert undeclared["scale"] == (1.0, 7.0)
  warned = [r.getMessage() for r in caplog.records
            if "inside the scale" in r.getMessage()]
  assert len(warned) == 1 and "five.csv" in warned[0]
  assert "[1, 5]" in warned[0] and "[1, 7]" in warned[0]
  assert undeclared["annotators"]["planted"]["scores"] != pytest.approx(
      on_seven["annotators"]["planted"]["scores"], abs=1e-3)
  caplog.clear()
  c.predict.scale = (1.0, 5.0)
  with caplog.at_level("WARNING"):
    declared = jobs.run(c, str(tmp_path / "w5"))["mapping"]
  assert not [r for r in caplog.records
              if "inside the scale" in r.getMessage()]
  for who in ("planted", "random"):
    assert declared["annotators"][who]["heads"] == on_seven["annotators"][
        who]["heads"]
    np.testing.assert_allclose(declared["annotators"][who]["scores"],
                               on_seven["annotators"][who]["scores"],
                               atol=1e-5)
  assert declared["annotators"]["planted"]["heads"][0] == b.annotator_ids[
      planted]
  with open(tmp_path / "w5" / "enroll" / "mapping.json") as f:
    assert json.load(f)["scale"] == [1.0, 5.0]
  # predict, no scale given: the mapping's 1-5.
  c.mode, c.predict.scale = "predict", ()
  jobs.run(c, str(tmp_path / "w5"))
  with open(tmp_path / "w5" / "predict" / "predictions.csv") as f:
    rows = [r for r in csv.DictReader(f) if r["annotator"] == "planted"]
  kernel, bias = b.heads()
  want = np.clip(np.einsum("cdh,dh->cd", b.features(emb), kernel[planted])
                 + bias[planted], -1, 1)
  got = np.array([[float(r[f"{d}_scaled"]) for d in b.dims] for r in rows])
  np.testing.assert_allclose(got, 1 + (want + 1) * 2, atol=1e-4)
  # A bundle that records no scale needs one declared.
  older = dataclasses.replace(b, info={k: v for k, v in b.info.items()
                                       if k != "source_scale"})
  with pytest.raises(ValueError, match="records no source scale"):
    predict.declared_scale(ml_collections.ConfigDict({"scale": ()}), older)
  with pytest.raises(ValueError, match="low < high"):
    predict.declared_scale(ml_collections.ConfigDict({"scale": (5, 1)}), b)


def test_enroll_errors_name_the_problem(tiny_config, bundle_dir, tmp_path):
  b = export.load(bundle_dir)
  _write_inputs(tmp_path, b, 0)
  with open(tmp_path / "enroll.csv", "a") as f:
    f.write("no_such_clip,planted," + ",".join(["4"] * len(b.dims)) + "\n")
  with pytest.raises(ratings_lib.RatingsError, match="no_such_clip"):
    jobs.run(_predict_config(tiny_config, bundle_dir, tmp_path, "enroll"),
             str(tmp_path / "w"))
  c = _predict_config(tiny_config, str(tmp_path / "nope"), tmp_path,
                      "enroll")
  with pytest.raises(FileNotFoundError, match="no exported model"):
    jobs.run(c, str(tmp_path / "w2"))
  with pytest.raises(ValueError, match="trained on"):
    b.features(np.zeros((3, b.info["embedding_dim"] + 1), np.float32))


def test_wrong_embedding_dimension_is_one_line_naming_the_file(bundle_dir,
                                                               tmp_path):
  b = export.load(bundle_dir)
  bad = tmp_path / "wrong_dim.npz"
  np.savez(bad, clip_ids=np.array(["a", "b"]),
           embeddings=np.zeros((2, b.info["embedding_dim"] + 3), np.float32))
  r = subprocess.run(
      [test_main.console_command(), f"--config={ROOT}/configs/tiny.py",
       f"--workdir={tmp_path / 'w'}", "--mode=enroll",
       f"--config.predict.bundle={bundle_dir}",
       f"--config.predict.embeddings={bad}",
       f"--config.predict.ratings={tmp_path / 'none.csv'}"],
      cwd=tmp_path, capture_output=True, text=True, timeout=300)
  assert r.returncode == 1
  lines = r.stderr.strip().splitlines()
  assert "Traceback" not in r.stderr
  assert lines[-2].startswith(f"annojax: error: {bad}: embeddings of shape "
                              f"(2, {b.info['embedding_dim'] + 3})")
  assert f"takes {b.info['embedding_dim']}-d embeddings" in lines[-2]


def test_mapping_json_is_readable(tiny_config, bundle_dir, tmp_path):
  b = export.load(bundle_dir)
  _write_inputs(tmp_path, b, 3)
  c = _predict_config(tiny_config, bundle_dir, tmp_path, "enroll")
  c.predict.top_k = 3
  c.predict.weighted = True
  jobs.run(c, str(tmp_path / "w"))
  with open(tmp_path / "w" / "enroll" / "mapping.json") as f:
    m = json.load(f)["annotators"]["planted"]
  assert len(m["heads"]) == 3 and m["heads"][0] == b.annotator_ids[3]
  assert abs(sum(m["weights"]) - 1) < 1e-5
  assert m["scores"] == sorted(m["scores"], reverse=True)


def test_bundle_standardises_raw_embeddings_like_prepare(trained_tiny,
                                                         bundle_dir):
  """The bundle carries the source training split's feature statistics and
  applies them to raw embeddings: its features of the raw target clips equal
  the trunk features of the standardised clips the protocol used."""
  from annojax.corpora import synthetic  # pylint: disable=g-import-not-at-top
  config, workdir, prepared = trained_tiny
  b = export.load(bundle_dir)
  meta = pipeline.read_meta(prepared.source)
  np.testing.assert_allclose(b.info["standardizer"]["mean"],
                             meta.feature_mean, rtol=1e-6)
  _, target = synthetic.make_pair(config.data.synthetic)
  table = pipeline.load_table(prepared.target, "full")
  raw = target.embeddings[np.searchsorted(target.clips, table.clip_ids)]
  assert not np.allclose(raw, table.embeddings, atol=1e-2)
  graphdef, params = train.load_best(config, workdir, "individual", prepared)
  np.testing.assert_allclose(
      b.features(raw), train.trunk_features(graphdef, params,
                                            table.embeddings),
      rtol=1e-4, atol=1e-4)
  # ... and limits them as prepare did (config.data.feature_clip): a raw
  # value far out gives the features of a clip at the limit.
  clip = b.info["standardizer"]["clip"]
  assert clip == config.data.feature_clip == 5.0
  far, at_limit = raw[:2].copy(), table.embeddings[:2].copy()
  far[0, 1] = b.info["standardizer"]["mean"][1] + 1e4
  at_limit[0, 1] = clip
  np.testing.assert_allclose(
      b.features(far), train.trunk_features(graphdef, params, at_limit),
      rtol=1e-4, atol=1e-4)


def _read_csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def _pool_config(config, bundle_dir, pool):
  """enroll from the bundle with a pool of candidate clips only."""
  config.mode = "enroll"
  config.predict.bundle = bundle_dir
  config.predict.pool = str(pool)
  config.predict.embeddings = config.predict.ratings = ""
  config.predict.annotators = ""
  return config


def test_enroll_suggests_clips_in_rounds(tiny_config, bundle_dir, tmp_path):
  """A listening test in rounds from the bundle alone: round 0 names two new
  listeners with no ratings and gets the pool's most disputed clips (the
  same for both: every head is in contention, as adaptive.propose says);
  each round's suggestions file, filled in, is passed back with the earlier
  ones (comma-separated); no clip is suggested twice to a listener; the
  listener who rates like head 7 is mapped to it."""
  b = export.load(bundle_dir)
  rng = np.random.default_rng(5)
  n_pool = 60
  emb = rng.standard_normal((n_pool, b.info["embedding_dim"])
                            ).astype(np.float32)
  ids = np.array([f"pool_{i:03d}" for i in range(n_pool)])
  np.savez(tmp_path / "pool.npz", clip_ids=ids, embeddings=emb)
  kernel, bias = b.heads()
  truth = np.clip(np.einsum("cdh,dh->cd", b.features(emb), kernel[7])
                  + bias[7], -1, 1)
  c = _pool_config(tiny_config, bundle_dir, tmp_path / "pool.npz")
  c.predict.annotators = "planted, other"
  c.predict.propose = 4
  c.predict.scale = (1.0, 7.0)
  files, rated = [], {"planted": set(), "other": set()}
  for rnd in range(3):
    work = str(tmp_path / f"round{rnd}")
    out = jobs.run(c, work)["mapping"]
    sugg = _read_csv(os.path.join(work, "enroll", "suggestions.csv"))
    assert len(sugg) == 8
    for who in rated:
      mine = [r for r in sugg if r["annotator"] == who]
      assert [int(r["rank"]) for r in mine] == [1, 2, 3, 4]
      spread = [float(r["spread"]) for r in mine]
      assert spread == sorted(spread, reverse=True) and spread[-1] > 0
      assert all(r[d] == "" for r in mine for d in b.dims)
      assert not {r["clip"] for r in mine} & rated[who]
    if rnd == 0:
      assert out["annotators"] == {}
      pred = adaptive.head_predictions(b.features(emb), kernel, bias)
      want, _ = adaptive.propose(pred, np.full((1, len(kernel)),
                                               1 / len(kernel)),
                                 np.ones((1, n_pool), bool), 4, 0.1)
      for who in rated:
        assert [r["clip"] for r in sugg if r["annotator"] == who] == list(
            ids[want[0]])
    else:
      assert out["annotators"]["planted"]["num_clips"] == 4 * rnd
    for r in sugg:  # the listeners rate the suggested clips ...
      if rnd == 1 and r["annotator"] == "other" and r["rank"] == "4":
        continue  # ... but one, left blank: skipped, not an error
      i = int(np.flatnonzero(ids == r["clip"])[0])
      vals = (truth[i] if r["annotator"] == "planted"
              else rng.uniform(-1, 1, len(b.dims)))
      for d, v in zip(b.dims, vals):
        r[d] = f"{1 + (v + 1) * 3:.4f}"
      rated[r["annotator"]].add(r["clip"])
    path = tmp_path / f"round{rnd}.csv"
    with open(path, "w", newline="") as f:
      w = csv.DictWriter(f, fieldnames=list(sugg[0]))
      w.writeheader()
      w.writerows(sugg)
    files.append(str(path))
    c.predict.ratings = ",".join(files)
  out = jobs.run(c, str(tmp_path / "final"))["mapping"]
  assert out["annotators"]["planted"]["num_clips"] == 12
  assert out["annotators"]["other"]["num_clips"] == 11
  assert out["annotators"]["planted"]["heads"] == [b.annotator_ids[7]]


def test_enroll_skips_blank_rows_and_names_the_right_lines(
    tiny_config, bundle_dir, tmp_path):
  """Rows with no rating (suggestions not rated) are left out; the lines
  of later errors are still the file's own; a row with only some ratings
  blank, or a file with none filled in, is refused."""
  b = export.load(bundle_dir)
  _write_inputs(tmp_path, b, 7)
  c = _predict_config(tiny_config, bundle_dir, tmp_path, "enroll")
  lines = open(tmp_path / "enroll.csv").read().splitlines()
  blank = ",".join(["new_clip_030", "planted"] + [""] * len(b.dims))
  with open(tmp_path / "enroll.csv", "w") as f:  # lines 2-3 blank
    f.write("\n".join([lines[0], blank, blank.replace("030", "031"),
                       *lines[1:]]) + "\n")
  out = jobs.run(c, str(tmp_path / "w"))["mapping"]
  assert out["annotators"]["planted"]["num_clips"] == 25
  partial = ",".join(["new_clip_032", "planted", "4"] + [""] * (
      len(b.dims) - 1))
  with open(tmp_path / "enroll.csv", "a") as f:  # after lines 4-38
    f.write(partial + "\n")
  with pytest.raises(ratings_lib.RatingsError, match="line 39: "):
    jobs.run(c, str(tmp_path / "w"))
  with open(tmp_path / "enroll.csv", "w") as f:
    f.write("\n".join([lines[0], blank]) + "\n")
  with pytest.raises(ratings_lib.RatingsError, match="no rating filled in"):
    jobs.run(c, str(tmp_path / "w"))


def test_suggestions_refuse_what_cannot_work(tiny_config, bundle_dir,
                                            tmp_path):
  b = export.load(bundle_dir)
  np.savez(tmp_path / "pool.npz", clip_ids=np.array(["a", "b", "c"]),
           embeddings=np.zeros((3, b.info["embedding_dim"]), np.float32))
  c = _pool_config(tiny_config, bundle_dir, tmp_path / "pool.npz")
  with pytest.raises(ValueError, match="no annotator"):
    jobs.run(c, str(tmp_path / "w"))
  c.predict.annotators = "x"
  c.predict.propose = 0
  with pytest.raises(ValueError, match="propose"):
    jobs.run(c, str(tmp_path / "w"))


@pytest.mark.slow
def test_predict_without_an_enrollment_writes_the_consensus(
    trained_tiny, tiny_config, bundle_dir, tmp_path):
  """The baseline every listener is compared with, from the command line:
  --mode=predict with no mapping (or rule=consensus) writes the consensus
  model's output ("consensus") and the consensus at the raters' typical
  scale ("consensus_typical"), on [-1, 1] and scaled. It used to need an
  enrollment (users had to find export.load(path).consensus)."""
  config, workdir, prepared = trained_tiny
  b = export.load(bundle_dir)
  ids, emb = _write_inputs(tmp_path, b, 0)
  r = subprocess.run(
      [sys.executable, "-m", "annojax.main", "--config=configs/tiny.py",
       f"--workdir={tmp_path / 'w'}", "--mode=predict",
       f"--config.predict.bundle={bundle_dir}", "--config.predict.clip=False",
       "--config.predict.distribution=True",
       f"--config.predict.embeddings={tmp_path / 'emb.npz'}"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "the consensus model's predictions" in r.stderr
  # The far-out clips' clipped features: said once (the consensus model
  # and the trunk of the distributions standardise the same array).
  assert r.stderr.count("standardised feature values lie beyond") == 1
  with open(tmp_path / "w" / "predict" / "predictions.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2 * len(ids)
  got = {a: np.array([[float(r[d]) for d in b.dims] for r in rows
                      if r["annotator"] == a])
         for a in ("consensus", "consensus_typical")}
  # The trained aggregate model's forward pass written out in numpy, on
  # prepare's standardisation (not the bundle's or train's code).
  _, params = train.load_best(config, workdir, "aggregate", prepared)
  meta = pipeline.read_meta(prepared.source)
  x = (emb - meta.feature_mean) / meta.feature_std
  if meta.feature_clip:
    x = np.clip(x, -meta.feature_clip, meta.feature_clip)
  t, head = params["trunk"], params["heads"]["stack"]
  relu = lambda v: np.maximum(v, 0.0)
  h = relu(x @ np.asarray(t["shared"]["kernel"]) + t["shared"]["bias"])
  mlp = t["branches"]["mlps"]
  agg = np.stack([
      relu(relu(h @ mlp["l1"]["kernel"][d] + mlp["l1"]["bias"][d])
           @ mlp["l2"]["kernel"][d] + mlp["l2"]["bias"][d])
      @ head["kernel"][0, d] + head["bias"][0, d]
      for d in range(len(b.dims))], 1)
  np.testing.assert_allclose(got["consensus"], agg, rtol=1e-4, atol=1e-5)
  a = np.asarray(b.info["blend"]["rescale"]["a"])
  c = np.asarray(b.info["blend"]["rescale"]["c"])
  assert np.all(a > 1.0)  # raters spread more than their consensus
  np.testing.assert_allclose(got["consensus_typical"], a * agg + c,
                             rtol=1e-4, atol=1e-5)
  scaled = np.array([[float(r[f"{d}_scaled"]) for d in b.dims]
                     for r in rows if r["annotator"] == "consensus"])
  np.testing.assert_allclose(scaled, 1 + (agg + 1) * 3, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_a_workdir_given_as_the_bundle_names_its_export(trained_tiny,
                                                         bundle_dir):
  """Was Orbax's 'Item "info" was not found in the checkpoint'."""
  _, workdir, _ = trained_tiny
  with pytest.raises(FileNotFoundError,
                     match=f"{workdir} is not an exported bundle .*it is a "
                           f"workdir: use its bundle, {workdir}/export"):
    export.load(workdir)
  with pytest.raises(FileNotFoundError, match="give the directory "
                                              "--mode=export wrote"):
    export.load(os.path.dirname(bundle_dir))
