"""The cross-corpus protocol on the trained tiny workdir."""

import json
import os

import jax
import numpy as np
import pytest
from scipy import stats

from annojax import baselines
from annojax import enroll
from annojax import metrics
from annojax import posterior
from annojax import train
from annojax.data import pipeline
from annojax.protocol import context
from annojax.protocol import folds
from annojax.protocol import loop
from annojax.protocol import source
from annojax.protocol import summary
from annojax.protocol import tables
from tests import reference_metrics as ref
from tests import test_blend


@pytest.fixture(scope="module")
def protocol_and_calls(trained_tiny):
  """The protocol's results, and every scoring of target enrollment sets it
  made (enroll.enrollment_scores, which enroll.enroll calls too): (clip
  index lists, whether it was an enrollment call (names given) or the
  oracle's choice on the test clips, whether it was made by the posterior's
  tuning on the source, posterior.tune)."""
  config, workdir, prepared = trained_tiny
  calls, tuning = [], []
  real, real_tune = enroll.enrollment_scores, posterior.tune

  def spy(z, clips, ys, *args, **kwargs):
    calls.append(([np.asarray(c) for c in clips],
                  kwargs.get("names") is not None, bool(tuning)))
    return real(z, clips, ys, *args, **kwargs)

  def tune_spy(*args, **kwargs):
    tuning.append(True)
    try:
      return real_tune(*args, **kwargs)
    finally:
      tuning.pop()
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(enroll, "enrollment_scores", spy)
    mp.setattr(posterior, "tune", tune_spy)
    results = loop.run_protocol(config, workdir, prepared)
  return results, calls


@pytest.fixture(scope="module")
def protocol(protocol_and_calls):
  return protocol_and_calls[0]


def test_protocol_rows_and_claims(trained_tiny, protocol):
  config, workdir, _ = trained_tiny
  res = protocol
  rows = res["rows"]
  for d in ("activation", "valence"):
    def m(row, metric="ccc_ind"):
      return rows[row][metric][d]["mean"]
    # The method's claims on the synthetic default.
    assert m("most_similar@all") > m("aggregate") + 0.1
    assert m("most_similar@all") > m("random_head") + 0.1
    assert m("most_similar@5") > m("random_head")
    assert m("oracle") >= m("most_similar@all") - 0.02
    # The oracle's luck alone (test clips shuffled) stays far below it
    # here, and the calibrated aggregate's ceiling above the aggregate.
    assert m("oracle_chance") < m("oracle") - 0.2
    assert m("oracle_calibrated") > m("aggregate")
    assert m("most_similar@all") > m("most_similar@5")
    assert rows["most_similar@all"]["ccc_ind"][d]["t_p"] < 0.05
    assert len(rows["aggregate"]["ccc_ind"][d]["runs"]) == (
        config.eval.folds * config.eval.seeds)
  # Selected heads share the new annotator's latent type far above chance.
  tm = res["type_match"]
  assert tm["all"]["selected_same_type"] > 0.9
  assert tm["5"]["selected_same_type"] > 2 * tm["5"]["chance"]
  out = os.path.join(workdir, "eval")
  md = open(os.path.join(out, "results.md")).read()
  for row in ("aggregate", "mean_heads", "random_head", "most_similar@5",
              "linear_fit@all", "calibrated@5", "finetune@20", "oracle"):
    assert f"| {row} |" in md
  assert os.path.getsize(os.path.join(out, "ccc_ind_vs_k.png")) > 10_000


def test_runs_are_speaker_independent(trained_tiny):
  from annojax.data import pipeline  # pylint: disable=g-import-not-at-top
  _, _, prepared = trained_tiny
  table = pipeline.load_table(prepared.target, "full")
  parts = folds.speaker_folds(table.speakers, 5)
  assert sorted(np.concatenate(parts)) == sorted(np.unique(table.speakers))
  for f, test_spk in enumerate(parts):
    run = folds.Run(table, table.speakers, test_spk, 0, f, 2)
    test_spk_seen = set(table.speakers[table.pair_clip[run.test_rows]])
    assert test_spk_seen <= set(test_spk)
    for a, rows in zip(run.annotators, run.pool_by_ann):
      assert (table.pair_annotator[rows] == a).all()
      assert not set(table.speakers[table.pair_clip[rows]]) & set(test_spk)
    # A quarter of the remaining speakers is held out as validation.
    pool_spk = set(table.speakers[table.pair_clip[
        np.concatenate(run.pool_by_ann)]])
    assert len(pool_spk) <= 8 - 8 // 4


def test_linear_fit_matches_ridge_lstsq():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1, 6, 1))
  y = 2 * x + 0.5 + 0.1 * rng.normal(size=x.shape)
  mask = np.ones((1, 6))
  a, c = baselines.linear_fit(x, y, mask, ridge=1.0)
  # Ridge toward (1, 0): augment the design with the prior as pseudo-rows.
  design = np.concatenate([np.c_[x[0, :, 0], np.ones(6)], np.eye(2)])
  target = np.concatenate([y[0, :, 0], [1.0, 0.0]])
  want = np.linalg.lstsq(design, target, rcond=None)[0]
  np.testing.assert_allclose([a[0, 0], c[0, 0]], want, rtol=1e-6)


def _finetune_case(seed, n, k):
  """n annotators x k enrollment clips: (z, y, mask, mapped kernel, bias)."""
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(n, k, 2, 8)).astype(np.float32)
  y = rng.uniform(-1, 1, (n, k, 2)).astype(np.float32)
  k0 = rng.normal(size=(n, 2, 8)).astype(np.float32) * 0.1
  return z, y, np.ones((n, k), np.float32), k0, np.zeros((n, 2), np.float32)


def test_finetune_lowers_enrollment_error():
  z, y, mask, k0, b0 = _finetune_case(0, 3, 10)
  k1, b1 = baselines.finetune(k0, b0, z, y, mask, 50, 1e-2, 0.0)

  def err(k, b):
    return ((np.einsum("nkdh,ndh->nkd", z, k) + b[:, None] - y) ** 2).mean()
  assert err(np.asarray(k1), np.asarray(b1)) < 0.8 * err(k0, b0)


def test_seeds_are_independent_replicates(trained_tiny, protocol):
  """Each seed pre-trains its own models and draws its own speaker folds, so
  no two runs repeat each other; the table names the unit and n of each
  test."""
  config, workdir, prepared = trained_tiny
  assert config.eval.seeds == 2
  for kind in ("individual", "aggregate"):
    _, p0 = train.load_best(config, workdir, kind, prepared, 0)
    _, p1 = train.load_best(config, workdir, kind, prepared, 1)
    k0, k1 = train.head_arrays(p0)[0], train.head_arrays(p1)[0]
    assert np.abs(k0 - k1).mean() > 0.1 * np.abs(k0).mean()
  table = pipeline.load_table(prepared.target, "full")
  f0 = [set(f) for f in folds.speaker_folds(table.speakers, 5, 0)]
  f1 = [set(f) for f in folds.speaker_folds(table.speakers, 5, 1)]
  assert f0 != f1
  for row in ("aggregate", "mean_heads", "oracle"):
    runs = protocol["rows"][row]["ccc_ind"]["activation"]["runs"]
    assert len(runs) == 10 and len(set(runs)) == 10, row
  assert protocol["tests"]["runs"]["n"] == 10
  assert protocol["tests"]["seeds"]["n"] == 2
  md = open(os.path.join(workdir, "eval", "results.md")).read()
  assert "n = 10" in md and "no test over seeds: n = 2 seeds" in md
  assert ("Leakage check: the target shares 0 clips, 0 speakers, 0 "
          "annotators") in md


def test_fixed_folds_by_regex():
  spk = np.array(["Ses01_F", "Ses01_M", "Ses02_F", "Ses02_M", "Ses03_F"])
  for seed in (0, 1):
    parts = folds.speaker_folds(spk, 5, seed, fold_by=r"^(Ses\d+)")
    assert [f.tolist() for f in parts] == [
        ["Ses01_F", "Ses01_M"], ["Ses02_F", "Ses02_M"], ["Ses03_F"]]
  with pytest.raises(ValueError, match="does not match speaker"):
    folds.speaker_folds(np.array(["x"]), 1, 0, fold_by=r"^(Ses\d+)")


def test_tests_pair_runs_by_key():
  """The paired tests pair each run with the aggregate's run of the same
  (seed, fold), whatever order the runs were recorded in."""
  rng = np.random.default_rng(0)
  keys = [(s, f) for s in range(3) for f in range(4)]
  base = {k: rng.uniform(0.0, 0.8) for k in keys}  # runs differ a lot
  gain = {k: 0.02 + 0.005 * rng.normal() for k in keys}  # small, consistent
  cells = {"aggregate": {k: {"ccc_ind": [base[k]]} for k in reversed(keys)},
           "better": {k: {"ccc_ind": [base[k] + gain[k]]} for k in keys}}
  res = summary.summarize(cells, ("a",), ("ccc_ind",))
  cell = res["rows"]["better"]["ccc_ind"]["a"]
  want = stats.ttest_rel([base[k] + gain[k] for k in keys],
                         [base[k] for k in keys]).pvalue
  np.testing.assert_allclose(cell["t_p"], want)
  assert cell["t_p"] < 1e-6  # mis-paired runs would give p ~ 0.9
  seed_mean = lambda d, s: np.mean([d[k] for k in keys if k[0] == s])
  want_seed = stats.ttest_rel(
      [seed_mean({k: base[k] + gain[k] for k in keys}, s) for s in range(3)],
      [seed_mean(base, s) for s in range(3)]).pvalue
  np.testing.assert_allclose(cell["seed_t_p"], want_seed)
  cells["short"] = {k: {"ccc_ind": [0.0]} for k in keys[:-1]}
  with pytest.raises(ValueError, match="cannot be paired"):
    summary.summarize(cells, ("a",), ("ccc_ind",))


def _summarized(cells, n_seeds, folds):
  """summarize's results of one "act" column of CCC_ind, with the protocol
  facts to_markdown needs, and their markdown."""
  res = summary.summarize(cells, ("act",), ("ccc_ind",))
  res["protocol"] = {"columns": ["act"], "metrics": ["ccc_ind"],
                     "runs": n_seeds * folds, "seeds": n_seeds,
                     "folds": folds, "pretrained_heads": 9,
                     "target_annotators": 3, "score": "ccc", "top_k": 1}
  return res, tables.to_markdown(res)


def _summary_markdown(n_seeds, gain, folds=4):
  rng = np.random.default_rng(n_seeds)
  keys = [(s, f) for s in range(n_seeds) for f in range(folds)]
  base = {k: rng.uniform(0.2, 0.4) for k in keys}
  cells = {"aggregate": {k: {"ccc_ind": [base[k]]} for k in keys},
           "eb@10": {k: {"ccc_ind": [base[k] + gain + 0.002 * rng.normal()]}
                     for k in keys},
           "oracle_chance": {k: {"ccc_ind": [base[k] - gain
                                             + 0.002 * rng.normal()]}
                             for k in keys}}
  return _summarized(cells, n_seeds, folds)


def test_results_markdown_marks_direction_legend_and_seed_minimum():
  """Every mark says above (^) or below (v) the aggregate; a legend names
  each kind of row; with 2 seeds no seed-level test is run (and the table
  says so), with 3 it is."""
  res, md = _summary_markdown(2, 0.05)
  eb, chance = (res["rows"][r]["ccc_ind"]["act"] for r in ("eb@10",
                                                             "oracle_chance"))
  assert np.isnan(eb["seed_t_p"]) and eb["t_p"] < 0.05
  assert "| eb@10 | " in md and "*^ |" in md.split("| eb@10 |")[1].split(
      "\n")[0]
  assert "*v |" in md.split("| oracle_chance |")[1].split("\n")[0]
  assert "+^" not in md.split("| eb@10 |")[1].split("\n")[0]
  assert "no test over seeds: n = 2 seeds" in md
  assert "- eb: empirical-Bayes head" in md
  assert "- oracle_chance: " in md and "- mixture:" not in md
  assert chance["difference"] < 0 < eb["difference"]
  res, md = _summary_markdown(3, 0.05)
  assert res["rows"]["eb@10"]["ccc_ind"]["act"]["seed_t_p"] < 0.05
  assert "*^+^ |" in md.split("| eb@10 |")[1].split("\n")[0]
  assert "*v+v |" in md.split("| oracle_chance |")[1].split("\n")[0]


def test_calibration_matches_mean_and_sd_and_shrinks_to_identity():
  rng = np.random.default_rng(0)
  x = rng.normal(0.1, 0.2, size=(2, 400, 2))
  y = 0.3 + 2.0 * x + 0.3 * rng.normal(size=x.shape)
  mask = np.ones((2, 400))
  mask[1] = 0  # no enrollment clips: the aggregate unchanged
  a, c = baselines.calibrate(x, y, mask, shrink=5.0)
  pred = a[:, None] * x + c[:, None]
  np.testing.assert_allclose(pred[0].mean(0), y[0].mean(0), atol=0.01)
  np.testing.assert_allclose(pred[0].std(0), y[0].std(0), rtol=0.02)
  np.testing.assert_allclose(a[1], 1.0)
  np.testing.assert_allclose(c[1], 0.0)
  # An MSE line shrinks the variance (slope < sd ratio); matching the s.d.
  # gives a higher CCC on the same clips.
  la, lc = baselines.linear_fit(x, y, mask, 1.0)
  lin = la[:, None] * x + lc[:, None]
  assert (metrics.ccc(pred[0], y[0]) > metrics.ccc(lin[0], y[0])).all()


def test_typical_calibration_is_the_raters_pooled_scale():
  """Raters whose deviations from their own mean are exactly 1.5x the
  aggregate's on their clips (each with its own offset and few clips):
  a = 1.5 in both dimensions; c puts the mean over all pairs at the
  ratings' mean; padding is ignored. A per-rater ratio of s.d.s would be
  the same here; with noise it is the pooled one that stays near 1.5."""
  rng = np.random.default_rng(0)
  n, k = 40, 6
  x = rng.normal(0.0, 0.2, size=(n, k, 2))
  mask = (rng.random((n, k)) < 0.8).astype(float)
  mask[:, :2] = 1
  m = mask[..., None]
  mean_x = (m * x).sum(1, keepdims=True) / m.sum(1, keepdims=True)
  y = rng.normal(0.0, 0.3, size=(n, 1, 2)) + 1.5 * (x - mean_x)
  y = np.where(m > 0, y, 99.0)  # padding: never read
  a, c = baselines.typical_calibration(x, y, mask)
  np.testing.assert_allclose(a, [1.5, 1.5], rtol=1e-6)
  on = mask > 0
  np.testing.assert_allclose(c, y[on].mean(0) - a * x[on].mean(0),
                             atol=1e-9)
  noisy = np.where(m > 0, y + 0.3 * rng.normal(size=y.shape), 99.0)
  a_noisy, _ = baselines.typical_calibration(x, noisy, mask)
  assert (a_noisy > 1.5).all()  # the noise is rater spread the model lacks


def test_ccc_con_uses_the_consensus_of_all_ratings():
  """CCC_con compares the mean prediction with the consensus of ALL of a
  clip's ratings, not only of the annotators in the run."""
  table = pipeline.ClipTable(
      clip_ids=np.array(["c0", "c1", "c2"]), speakers=np.array(["s"] * 3),
      embeddings=np.zeros((3, 1), np.float32),
      pair_clip=np.array([0, 1, 2]), pair_annotator=np.array([0, 0, 0]),
      pair_values=np.array([[0.9], [-0.9], [0.1]], np.float32),
      consensus=np.array([[0.2], [-0.1], [0.0]], np.float32))
  pred = np.array([[0.3], [-0.2], [0.05]])
  got = summary.score_row(pred, table, np.arange(3))["ccc_con"]
  np.testing.assert_allclose(got, metrics.ccc(pred, table.consensus))
  assert not np.allclose(got, metrics.ccc(pred, table.pair_values))


def test_protocol_enrolls_on_training_speakers_clips_only(trained_tiny,
                                                          protocol_and_calls):
  """Inside run_protocol, every enrollment set is drawn from the annotator's
  ratings of the run's TRAINING speakers (its pool: never a test or
  validation speaker), k of them, all of them at k = all; the posterior's
  tuning scores heads on the source's held-out material only."""
  config, _, prepared = trained_tiny
  _, calls = protocol_and_calls
  ev = config.eval
  table = pipeline.load_table(prepared.target, "full")
  n_held = len(source.source_held_out(prepared)["embeddings"])
  # The posterior's tuning, once per seed: halves of the SOURCE's held-out
  # raters' ratings (indices into the source's held-out clips).
  tune_calls = [c for c, is_enrollment, tuning in calls if tuning]
  assert len(tune_calls) == ev.seeds
  assert not any(is_enrollment for _, is_enrollment, tuning in calls
                 if tuning)
  assert max(c.max() for clips in tune_calls for c in clips) < n_held
  it = iter([(c, is_enrollment) for c, is_enrollment, tuning in calls
             if not tuning])
  checked = 0
  for seed in range(ev.seeds):
    fold_speakers = folds.speaker_folds(table.speakers, ev.folds, seed)
    for f, test_spk in enumerate(fold_speakers):
      run = folds.Run(table, table.speakers, test_spk, seed, f,
                          ev.min_test)
      test_clips = set(table.pair_clip[run.test_rows])
      for _ in ("oracle", "oracle_chance"):  # both choose on the test clips
        oracle_clips, is_enrollment = next(it)
        assert not is_enrollment
        assert set(np.concatenate(oracle_clips)) == test_clips
      for k in ev.enroll_sizes:
        clips, is_enrollment = next(it)
        assert is_enrollment and len(clips) == len(run.annotators)
        for got, pool in zip(clips, run.pool_by_ann):
          pool_clips = table.pair_clip[pool]
          assert set(got) <= set(pool_clips)
          assert len(got) == (len(pool) if k == 0 else min(k, len(pool)))
          assert not set(table.speakers[got]) & set(test_spk)
          checked += 1
      # The adaptive simulation reveals ratings from the same pools only,
      # one more clip per annotator each round.
      for step in range(1, max(ev.adaptive_sizes)):
        clips, is_enrollment = next(it)
        assert is_enrollment and len(clips) == len(run.annotators)
        for got, pool in zip(clips, run.pool_by_ann):
          assert set(got) <= set(table.pair_clip[pool])
          assert len(set(got)) == len(got) == min(step, len(pool))
          checked += 1
      # Adaptive sets: from the same pools, one order per annotator (the
      # k-clip set is the first k of it).
      before = None
      for k in ev.adaptive_sizes:
        clips, is_enrollment = next(it)
        assert is_enrollment and len(clips) == len(run.annotators)
        for i, (got, pool) in enumerate(zip(clips, run.pool_by_ann)):
          assert set(got) <= set(table.pair_clip[pool])
          assert len(set(got)) == len(got) == min(k, len(pool))
          if before is not None:
            np.testing.assert_array_equal(got[:len(before[i])], before[i])
          checked += 1
        before = clips
  assert next(it, None) is None and checked > 100


def test_protocol_values_recomputed_independently(trained_tiny, protocol):
  """Run (seed 0, fold 0) of the table, recomputed here from the trained
  models: aggregate, mean of heads (as the mean of every head's own
  prediction), most-similar@all, linear fit / calibration / fine-tuning
  at k = all, the calibration ceiling, the aggregate at the source
  raters' scale, and CCC_con against the consensus of all ratings."""
  config, workdir, prepared = trained_tiny
  ev = config.eval
  table = pipeline.load_table(prepared.target, "full")
  (g_ia, p_ia), (g_ag, p_ag) = [
      train.load_best(config, workdir, kind, prepared, 0)
      for kind in ("individual", "aggregate")]
  z = train.trunk_features(g_ia, p_ia, table.embeddings)
  kernel, bias = train.head_arrays(p_ia)
  k_ag, b_ag = train.head_arrays(p_ag)
  agg_clip = train.pair_predictions(  # one prediction per clip
      train.trunk_features(g_ag, p_ag, table.embeddings), k_ag, b_ag,
      np.arange(len(table.clip_ids)), np.zeros(len(table.clip_ids), int))
  test_spk = folds.speaker_folds(table.speakers, ev.folds, 0)[0]
  run = folds.Run(table, table.speakers, test_spk, 0, 0, ev.min_test)
  rows = run.test_rows
  clip, ann = table.pair_clip[rows], table.pair_annotator[rows]
  y = table.pair_values[rows]
  pos = np.searchsorted(run.annotators, ann)
  heads_each = np.stack([train.pair_predictions(
      z, kernel, bias, clip, np.full(len(rows), a)) for a in range(len(kernel))])
  pools = [table.pair_clip[p] for p in run.pool_by_ann]
  ys = [table.pair_values[p] for p in run.pool_by_ann]
  mapping = enroll.enroll(z, pools, ys, kernel, bias, score=ev.score)
  sel = mapping.heads[:, 0]
  cidx, y_e, m_e = enroll.pack(pools, ys)
  a, c = baselines.linear_fit(agg_clip[cidx], y_e, m_e, ev.linear_ridge)
  ca, cc = baselines.calibrate(agg_clip[cidx], y_e, m_e,
                               ev.calibration_shrink)
  k_f, b_f = baselines.finetune(kernel[sel], bias[sel], z[cidx], y_e, m_e,
                                ev.finetune_steps, ev.finetune_lr,
                                ev.finetune_l2)
  want = {
      "aggregate": agg_clip[clip],
      "mean_heads": heads_each.mean(0),
      "most_similar@all": heads_each[sel[pos], np.arange(len(rows))],
      "linear_fit@all": a[pos] * agg_clip[clip] + c[pos],
      "calibrated@all": ca[pos] * agg_clip[clip] + cc[pos],
      "finetune@all": train.pair_predictions(z, k_f, b_f, clip, pos),
  }
  dims = pipeline.read_meta(prepared.target).dims
  # The aggregate at each annotator's mean and s.d. over all their ratings.
  every = table.pair_annotator
  for a in np.unique(ann):
    p_a = agg_clip[table.pair_clip[every == a]]
    y_a = table.pair_values[every == a]
    scale = y_a.std(0) / p_a.std(0)
    at = ann == a
    want.setdefault("oracle_calibrated", np.zeros_like(y))[at] = (
        y_a.mean(0) + scale * (agg_clip[clip[at]] - p_a.mean(0)))
  # The aggregate at the source held-out raters' pooled scale.
  held = source.source_held_out(prepared)
  agg_held = train.pair_predictions(
      train.trunk_features(g_ag, p_ag, held["embeddings"]), k_ag, b_ag,
      held["pair_clip"], np.zeros(len(held["pair_clip"]), int))
  ss_y = ss_x = 0.0
  for a in np.unique(held["pair_annotator"]):
    of = held["pair_annotator"] == a
    ss_y = ss_y + ((held["pair_values"][of]
                    - held["pair_values"][of].mean(0)) ** 2).sum(0)
    ss_x = ss_x + ((agg_held[of] - agg_held[of].mean(0)) ** 2).sum(0)
  scale = np.sqrt(ss_y / ss_x)
  assert (scale > 1.0).all()  # the consensus varies less than a rater
  want["aggregate_rescaled"] = held["pair_values"].mean(0) + scale * (
      agg_clip[clip] - agg_held.mean(0))
  tuned = protocol["protocol"][
      "aggregate_rescaled (a, c per seed; source held-out annotators)"]
  np.testing.assert_allclose(tuned[0]["a"], scale, rtol=1e-4)
  # The blended rule with seed 0's recorded weights and posterior, from its
  # definition (test_blend.blended_by_hand).
  facts = protocol["protocol"]
  learned = facts["blend (weights per enrollment size per seed; source "
                  "held-out annotators)"][0]
  post = facts["posterior_tuning (source held-out annotators)"][0]
  prior = posterior.fit_prior(kernel, bias, ev.eb_rank)
  rescale = (scale, held["pair_values"].mean(0) - scale * agg_held.mean(0))
  want["blended@all"] = np.zeros_like(y)
  for i, (pool, y_i) in enumerate(zip(pools, ys)):
    at = pos == i
    want["blended@all"][at] = test_blend.blended_by_hand(
        learned, kernel, bias, prior, post["temperature"], post["noise"],
        rescale, ev.calibration_shrink, z[pool], agg_clip[pool], y_i,
        z[clip[at]], agg_clip[clip[at]])[0]
  for row, pred in want.items():
    cell = protocol["rows"][row]
    assert cell["ccc_ind"]["activation"]["run_keys"][0] == [0, 0]
    got = [cell["ccc_ind"][d]["runs"][0] for d in dims]
    # CCC_ind / CCC_con by the test's own implementation, not the product's.
    np.testing.assert_allclose(got, ref.ccc_ind(pred, y, ann),
                               rtol=1e-4, atol=1e-5, err_msg=row)
    got = [cell["ccc_con"][d]["runs"][0] for d in dims]
    np.testing.assert_allclose(
        got, ref.ccc_con(pred, table.consensus[clip], clip), rtol=1e-4,
        atol=1e-5, err_msg=row)


def test_pooled_table_pools_each_seeds_out_of_fold_predictions(
    trained_tiny, protocol):
  """The pooled aggregate row of seed 0, recomputed: one CCC_ind per
  annotator over the test pairs of ALL of seed 0's folds (each pair in one
  fold only), which is not the mean of the per-fold values."""
  config, workdir, prepared = trained_tiny
  ev = config.eval
  table = pipeline.load_table(prepared.target, "full")
  g_ag, p_ag = train.load_best(config, workdir, "aggregate", prepared, 0)
  k_ag, b_ag = train.head_arrays(p_ag)
  agg_clip = train.pair_predictions(
      train.trunk_features(g_ag, p_ag, table.embeddings), k_ag, b_ag,
      np.arange(len(table.clip_ids)), np.zeros(len(table.clip_ids), int))
  rows = np.concatenate([
      folds.Run(table, table.speakers, spk, 0, f, ev.min_test).test_rows
      for f, spk in enumerate(folds.speaker_folds(table.speakers,
                                                     ev.folds, 0))])
  assert len(np.unique(rows)) == len(rows)
  clip, ann = table.pair_clip[rows], table.pair_annotator[rows]
  want = ref.ccc_ind(agg_clip[clip], table.pair_values[rows], ann)
  dims = pipeline.read_meta(prepared.target).dims
  pooled = protocol["pooled"]["rows"]["aggregate"]["ccc_ind"]
  assert [pooled[d]["run_keys"] for d in dims] == [
      [[s, 0] for s in range(ev.seeds)]] * len(dims)
  np.testing.assert_allclose([pooled[d]["runs"][0] for d in dims], want,
                             rtol=1e-4, atol=1e-5)
  per_fold = protocol["rows"]["aggregate"]["ccc_ind"]
  fold_mean = [np.mean(per_fold[d]["runs"][:ev.folds]) for d in dims]
  assert np.abs(np.array(fold_mean) - want).max() > 1e-3
  assert set(protocol["pooled"]["rows"]) == set(protocol["rows"])


def test_beyond_top1_rows_and_their_source_side_tuning(trained_tiny,
                                                      protocol):
  """mixture@k and eb@k for every enrollment size; per seed a temperature
  from the grid and an EB noise from the SOURCE held-out annotators (a
  positive mean squared residual), recorded with the table."""
  config, _, _ = trained_tiny
  ev = config.eval
  for k in ev.enroll_sizes:
    name = "all" if k == 0 else str(k)
    for kind in ("mixture", "eb"):
      assert f"{kind}@{name}" in protocol["rows"]
      assert f"{kind}@{name}" in protocol["pooled"]["rows"]
  tuned = protocol["protocol"]["posterior_tuning (source held-out annotators)"]
  assert len(tuned) == ev.seeds
  for t in tuned:
    assert t["temperature"] in ev.mixture_temperatures
    assert 0.0 < t["noise"] < 2.0 and t["annotators"] > 10
  # The blended rule: a row at every size, its weights per seed learned on
  # the source (the synthetic heads carry their raters: it moves from the
  # consensus at the larger sizes, and beats it there on the source).
  for k in ev.enroll_sizes:
    assert f"blended@{'all' if k == 0 else k}" in protocol["rows"]
  learned = protocol["protocol"][
      "blend (weights per enrollment size per seed; source held-out "
      "annotators)"]
  assert [b["seed"] for b in learned] == list(range(ev.seeds))
  for b in learned:
    w = np.asarray(b["weights"])
    assert w.shape == (len(b["sizes"]), 3) and (w >= 0).all()
    assert (w.sum(1) <= 1 + 1e-9).all() and w[-1].sum() > 0
    ccc = b["source_ccc_ind"]
    assert ccc["blended"][-1] > ccc["consensus"][-1]
  # The diagnostic: here the test ratings tell the heads apart.
  check = protocol["heads_distinguishable"]
  assert all(c["distinguishable"] for c in check["columns"].values())
  md = open(os.path.join(trained_tiny[1], "eval", "results.md")).read()
  assert check["sentence"] in md and "Yes:" in check["sentence"]


def test_adaptive_rows_their_comparison_and_plot(trained_tiny, protocol):
  """adaptive_<rule>@k beside each random row, in both tables; the paired
  comparison (same runs: n = runs per fold, seeds pooled) recomputed from
  the rows; the plot written; sizes without a random row refused."""
  config, workdir, _ = trained_tiny
  ev = config.eval
  assert ev.adaptive_sizes
  for table in (protocol, protocol["pooled"]):
    for k in ev.adaptive_sizes:
      for kind in ("most_similar", "mixture", "eb"):
        assert f"adaptive_{kind}@{k}" in table["rows"]
  cmp = protocol["adaptive_vs_random"]
  for part, n, src in (("per_fold", ev.seeds * ev.folds, protocol),
                       ("pooled", ev.seeds, protocol["pooled"])):
    c = cmp[part][f"most_similar@{ev.adaptive_sizes[0]}"]["valence"]
    runs = {p: np.array(src["rows"][f"{p}most_similar@"
                                    f"{ev.adaptive_sizes[0]}"]["ccc_ind"][
                                        "valence"]["runs"])
            for p in ("", "adaptive_")}
    assert c["n"] == n
    np.testing.assert_allclose(c["difference"],
                               np.mean(runs["adaptive_"] - runs[""]))
    if n >= metrics.MIN_PAIRS:
      assert c["t_p"] == pytest.approx(
          stats.ttest_rel(runs["adaptive_"], runs[""]).pvalue)
    else:  # tiny's 2 seeds: too few units for a test
      assert np.isnan(c["t_p"])
  md = open(os.path.join(workdir, "eval", "results.md")).read()
  assert "Adaptive vs random enrollment clips" in md
  assert "| adaptive_eb@20 |" in md
  for name in ("adaptive_vs_random.png", "adaptive_vs_random_pooled.png"):
    assert os.path.getsize(os.path.join(workdir, "eval", name)) > 10_000
  bad = config.copy_and_resolve_references()
  bad.eval.adaptive_sizes = (7,)
  with pytest.raises(ValueError, match="adaptive_sizes"):
    folds.adaptive_sizes(bad.eval)


def test_finetune_l2_holds_the_head_near_the_mapped_one():
  """The L2 pull: with a strong l2 the fine-tuned head stays by the mapped
  head; without it, the head moves much further (same steps and clips)."""
  z, y, mask, k0, b0 = _finetune_case(1, 2, 12)
  moved = {}
  for l2 in (0.0, 1.0, 100.0):
    k1, b1 = baselines.finetune(k0, b0, z, y, mask, 100, 1e-2, l2)
    moved[l2] = float(np.sqrt(((k1 - k0) ** 2).sum() + ((b1 - b0) ** 2).sum()))
  assert moved[100.0] < 0.2 * moved[1.0] < 0.2 * moved[0.0]


def _null_table(n_rows=200, planted=0.0, runs=10, seed=0):
  """A table of n_rows rows that differ from the aggregate by noise alone
  (independent null comparisons), and a row "planted" above it by
  `planted`."""
  rng = np.random.default_rng(seed)
  keys = [(s, f) for s in range(2) for f in range(runs // 2)]
  base = {k: rng.uniform(0.2, 0.4) for k in keys}
  cells = {"aggregate": {k: {"ccc_ind": [base[k]]} for k in keys}}
  for r in range(n_rows):
    cells[f"null_{r:03d}@5"] = {k: {"ccc_ind": [base[k] + 0.05 * rng.normal()]}
                                for k in keys}
  cells["planted@5"] = {k: {"ccc_ind": [base[k] + planted
                                        + 0.05 * rng.normal()]} for k in keys}
  return _summarized(cells, 2, runs // 2)


def test_marks_are_corrected_for_the_number_of_comparisons():
  """200 independent null comparisons: ~5% of them have a raw p < 0.05
  (the marks an uncorrected table would print), almost none an adjusted
  one; a strong planted effect keeps its mark; the table says which
  correction, the JSON keeps raw and adjusted p."""
  raw_marks, marks = [], []
  for seed in range(5):
    res, md = _null_table(planted=0.3, seed=seed)
    nulls = [v["ccc_ind"]["act"] for r, v in res["rows"].items()
             if r.startswith("null_")]
    raw_marks.append(np.mean([c["t_p"] < 0.05 for c in nulls]))
    marks.append(sum("*^" in line or "*v" in line
                     for line in md.splitlines() if line.startswith(
                         "| null_")))
    planted = res["rows"]["planted@5"]["ccc_ind"]["act"]
    assert planted["t_p_adjusted"] < 0.05 <= min(
        c["t_p_adjusted"] for c in nulls)
    assert "*^ |" in md.split("| planted@5 |")[1].split("\n")[0]
    # Adjusted p: Benjamini-Hochberg over the table's 201 comparisons.
    ps = [v["ccc_ind"]["act"]["t_p"] for r, v in res["rows"].items()
          if r != "aggregate"]
    np.testing.assert_allclose(
        [v["ccc_ind"]["act"]["t_p_adjusted"] for r, v in res["rows"].items()
         if r != "aggregate"], stats.false_discovery_control(ps))
    assert res["tests"]["correction"]["comparisons"]["t_p"] == 201
    assert "after Benjamini-Hochberg" in md
  assert 0.025 < np.mean(raw_marks) < 0.08  # the nominal rate, uncorrected
  assert sum(marks) <= 1  # corrected: ~none in 5 tables of 200 nulls


def test_rating_distributions_recomputed_independently(trained_tiny,
                                                       protocol):
  """Seed 0's rating-distribution cells recomputed here with scipy from the
  trained models: the clips scored (>= min_ratings ratings); aggregate_sd
  (the consensus model's prediction, the s.d. of the source's training
  ratings about it, a Gaussian truncated to the scale and discretised on
  its 7 levels) and heads_kde (every head's prediction, weighted by its
  annotator's training ratings, with the width and shrink the protocol
  chose on the source) by their NLL. Then the claims on every seed: the individual
  model's distribution beats the clip-independent one (NLL, JSD) and
  predicts disagreement better than one global s.d."""
  config, workdir, prepared = trained_tiny
  part = protocol["distributions"]
  table = pipeline.load_table(prepared.target, "full")
  src = pipeline.load_table(prepared.source, "train")
  clips = np.flatnonzero(np.bincount(table.pair_clip) >=
                         config.eval.distribution.min_ratings)
  assert part["facts"]["clips"] == len(clips) > 100
  keep = np.isin(table.pair_clip, clips)
  y, rc = table.pair_values[keep], table.pair_clip[keep]
  levels = np.linspace(-1, 1, 7)
  assert part["facts"]["target_scale"] == "Likert, 7 levels"
  level = np.abs(y[..., None] - levels).argmin(-1)  # [R, D]
  edges = np.concatenate([[-1], (levels[1:] + levels[:-1]) / 2, [1]])

  def pmf(mu, s):  # truncated Gaussians' level masses [..., 7]
    mu, s = np.clip(mu, -1, 1)[..., None], np.asarray(s)[..., None]
    cdf = stats.norm.cdf((edges - mu) / s)
    return np.diff(cdf, axis=-1) / (cdf[..., -1:] - cdf[..., :1])

  g_ag, p_ag = train.load_best(config, workdir, "aggregate", prepared, 0)
  agg_src = train.consensus_outputs(g_ag, p_ag, src.embeddings)
  sd = np.sqrt(((src.pair_values - agg_src[src.pair_clip]) ** 2).mean(0))
  agg = train.consensus_outputs(g_ag, p_ag, table.embeddings)
  p_agg = pmf(agg[rc], sd)  # [R, D, 7]
  g_ia, p_ia = train.load_best(config, workdir, "individual", prepared, 0)
  kernel, bias = train.head_arrays(p_ia)
  z = train.trunk_features(g_ia, p_ia, table.embeddings)
  w = np.bincount(src.pair_annotator, minlength=len(kernel)).astype(float)
  w /= w.sum()
  width = np.asarray(part["tuned"][0]["heads_kde"]["width"])
  shrink = np.asarray(part["tuned"][0]["heads_kde"]["shrink"])
  heads = np.einsum("cdh,adh->cad", z, kernel) + bias  # [C, A, D]
  mean = np.einsum("a,cad->cd", w, heads)[:, None]
  heads = mean + shrink * (heads - mean)  # toward the heads' mean
  p_kde = np.stack([np.einsum("a,ra->r", w, pmf(
      heads[rc][:, :, d], width[d])[np.arange(len(rc)), :, level[:, d]])
                    for d in range(2)], 1)
  for j, d in enumerate(table_dims(prepared)):
    got = {row: part["rows"][row]["nll"][d]["runs"][0]
           for row in ("aggregate_sd", "heads_kde")}
    assert got["aggregate_sd"] == pytest.approx(-np.log(
        p_agg[np.arange(len(rc)), j, level[:, j]]).mean(), abs=2e-4)
    assert got["heads_kde"] == pytest.approx(-np.log(p_kde[:, j]).mean(),
                                             abs=2e-4)
    rows = part["rows"]
    for s in range(config.eval.seeds):
      at = lambda row, m, s=s: rows[row][m][d]["runs"][s]
      assert at("heads_kde", "nll") < at("source_distribution", "nll")
      assert at("heads_kde", "jsd") < at("source_distribution", "jsd")
      assert at("heads_kde", "sd_ccc") > at("aggregate_sd", "sd_ccc")
  md = open(os.path.join(workdir, "eval", "results.md")).read()
  assert "## Rating distributions" in md and "| heads_kde vs |" in md
  for png in ("distribution_examples.png", "sd_predicted_vs_actual.png"):
    assert os.path.getsize(os.path.join(workdir, "eval", png)) > 10_000


def table_dims(prepared):
  return pipeline.read_meta(prepared.target).dims


@pytest.mark.slow
def test_export_reuses_the_source_tuning_of_seed_0s_protocol(
    trained_tiny, protocol, tmp_path):
  """Export used to tune the posterior, the blend and the KDE again for
  the model the protocol had just tuned them for (seed 0's). Now it reads
  eval/source_tuning.json, and the bundle holds what a fresh export
  computes; another model's tuning is not reused."""
  del protocol  # it wrote the tuning
  from annojax import export  # pylint: disable=g-import-not-at-top
  from annojax.protocol import rating_distributions  # pylint: disable=g-import-not-at-top
  config, workdir, prepared = trained_tiny
  saved = os.path.join(workdir, source.TUNING)
  assert os.path.exists(saved)
  calls = []

  def count(real):
    def spy(*args, **kwargs):
      calls.append(real.__name__)
      return real(*args, **kwargs)
    return spy
  with pytest.MonkeyPatch.context() as mp:
    for mod, name in ((source, "tune_on_source"), (source, "tune_blend"),
                      (rating_distributions, "tune_heads")):
      mp.setattr(mod, name, count(getattr(mod, name)))
    reused = export.load(export.export(config, workdir, prepared,
                                       path=str(tmp_path / "reused"))).info
    assert calls == []
    os.rename(saved, saved + ".away")
    try:
      fresh = export.load(export.export(config, workdir, prepared,
                                        path=str(tmp_path / "fresh"))).info
    finally:
      os.rename(saved + ".away", saved)
    assert sorted(calls) == ["tune_blend", "tune_heads", "tune_on_source"]
  for key in ("posterior", "blend", "distribution"):
    assert json.dumps(reused[key], sort_keys=True) == json.dumps(
        fresh[key], sort_keys=True), key
  # Other parameters (another model in the workdir): a different key.
  graphdef, params = context.replicate_model(config, workdir, prepared, 0,
                                             "individual")
  agg = context.replicate_model(config, workdir, prepared, 0, "aggregate")
  key = source.tuning_key(config, prepared, params, agg[1])
  assert source.load_tuning(workdir, key)
  moved = jax.tree.map(lambda x: x + 1e-3, params)
  assert not source.load_tuning(workdir, source.tuning_key(
      config, prepared, moved, agg[1]))
  del graphdef


@pytest.mark.slow
def test_the_terminal_gets_a_headline_not_the_whole_table(trained_tiny,
                                                          protocol):
  """results.md (hundreds of lines) was printed whole to stdout."""
  _, workdir, _ = trained_tiny
  path = os.path.join(workdir, "eval", "results.md")
  text = tables.headline(protocol, path)
  lines = text.splitlines()
  assert len(lines) <= 8
  assert lines[0].startswith("Cross-corpus evaluation (")
  rows = protocol["rows"]
  for name in ("aggregate", "blended@all", "most_similar@all"):
    line = next(l for l in lines if l.split()[0] == name)
    want = [f"{rows[name]['ccc_ind'][d]['mean']:+.3f}"
            for d in protocol["protocol"]["columns"]]
    assert line.split()[1:] == want
  with open(path) as f:
    n = len(f.read().splitlines())
  assert lines[-1] == f"every row, test and table ({n} lines): {path}"
