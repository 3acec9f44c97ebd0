"""The cross-corpus protocol on the trained tiny workdir."""

import os

import numpy as np

from annojax import evaluate


def test_protocol_rows_and_claims(trained_tiny):
  config, workdir, prepared = trained_tiny
  res = evaluate.run_protocol(config, workdir, prepared)
  rows = res["rows"]
  for d in ("activation", "valence"):
    def m(row, metric="ccc_ind"):
      return rows[row][metric][d]["mean"]
    # The method's claims on the synthetic default.
    assert m("most_similar@all") > m("aggregate") + 0.1
    assert m("most_similar@all") > m("random_head") + 0.1
    assert m("most_similar@5") > m("random_head")
    assert m("oracle") >= m("most_similar@all") - 0.02
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
              "linear_fit@all", "finetune@20", "oracle"):
    assert f"| {row} |" in md
  assert os.path.getsize(os.path.join(out, "ccc_ind_vs_k.png")) > 10_000


def test_runs_are_speaker_independent(trained_tiny):
  from annojax.data import pipeline  # pylint: disable=g-import-not-at-top
  _, _, prepared = trained_tiny
  table = pipeline.load_table(prepared.target, "full")
  folds = evaluate.speaker_folds(table.speakers, 5)
  assert sorted(np.concatenate(folds)) == sorted(np.unique(table.speakers))
  for f, test_spk in enumerate(folds):
    run = evaluate._Run(table, table.speakers, test_spk, 0, f, 2)
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
  a, c = evaluate._linear_fit(x, y, mask, ridge=1.0)
  # Ridge toward (1, 0): augment the design with the prior as pseudo-rows.
  design = np.concatenate([np.c_[x[0, :, 0], np.ones(6)], np.eye(2)])
  target = np.concatenate([y[0, :, 0], [1.0, 0.0]])
  want = np.linalg.lstsq(design, target, rcond=None)[0]
  np.testing.assert_allclose([a[0, 0], c[0, 0]], want, rtol=1e-6)


def test_finetune_lowers_enrollment_error():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(3, 10, 2, 8)).astype(np.float32)
  y = rng.uniform(-1, 1, (3, 10, 2)).astype(np.float32)
  mask = np.ones((3, 10), np.float32)
  k0 = rng.normal(size=(3, 2, 8)).astype(np.float32) * 0.1
  b0 = np.zeros((3, 2), np.float32)
  k1, b1 = evaluate._finetune(k0, b0, z, y, mask, 50, 1e-2, 0.0)

  def err(k, b):
    return ((np.einsum("nkdh,ndh->nkd", z, k) + b[:, None] - y) ** 2).mean()
  assert err(np.asarray(k1), np.asarray(b1)) < 0.8 * err(k0, b0)
