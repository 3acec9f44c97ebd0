"""Protocol rows registered by name: a toy row (README's example) runs
through the loop into results.json and results.md; config.eval.rows selects
rows; the rows of each loss."""

import copy
import json
import os
import re
import sys

import numpy as np
import pytest

from annojax.data import pipeline
from annojax.protocol import folds
from annojax.protocol import loop
from annojax.protocol import rows
from tests import reference_metrics as ref
from tests.conftest import ROOT


def _readme_row() -> str:
  """The example row of README's "Adding a protocol row", as written."""
  with open(os.path.join(ROOT, "README.md")) as f:
    text = f.read()
  section = text[text.index("### Adding a protocol row"):]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def registry(monkeypatch):
  """The registry, restored after the test."""
  monkeypatch.setattr(rows, "REGISTRY", dict(rows.REGISTRY))
  return rows.REGISTRY


@pytest.fixture
def workdir_copy(trained_tiny, tmp_path):
  """The trained tiny workdir's models behind a new workdir (links), so the
  toy protocol writes its own eval/."""
  _, workdir, _ = trained_tiny
  for name in os.listdir(workdir):
    if name != "eval":
      os.symlink(os.path.join(workdir, name), tmp_path / name)
  return str(tmp_path)


def test_toy_rows_reach_results_json_and_md(trained_tiny, workdir_copy,
                                            registry, tmp_path_factory,
                                            monkeypatch):
  config, _, prepared = trained_tiny
  config = copy.deepcopy(config)
  # README's example, imported as a module of the user's own.
  mod_dir = tmp_path_factory.mktemp("rows")
  (mod_dir / "readme_rows.py").write_text(_readme_row())
  monkeypatch.syspath_prepend(str(mod_dir))
  monkeypatch.delitem(sys.modules, "readme_rows", raising=False)
  seen = []

  @rows.register("aggregate_copy", doc="the aggregate, copied (toy)")
  def aggregate_copy(ctx):
    return ctx.aggregate.copy()

  @rows.register("pool_sizes", per_k=True, doc="records its sets (toy)")
  def pool_sizes(ctx, e):
    seen.append((ctx.seed.seed, ctx.fold, e.mask.sum(1), [
        len(p) for p in ctx.run.pool_by_ann]))
    return ctx.aggregate

  config.eval.rows = ("aggregate_copy", "mean_shift", "pool_sizes")
  config.eval.row_modules = ("readme_rows",)
  try:
    res = loop.run_protocol(config, workdir_copy, prepared)
  finally:
    sys.modules.pop("readme_rows", None)
  ev = config.eval
  sizes = ["5", "20", "all"]
  assert set(res["rows"]) == {"aggregate", "aggregate_copy"} | {
      f"{r}@{k}" for r in ("mean_shift", "pool_sizes") for k in sizes}
  # No adaptive rows: neither toy row asked for them.
  assert res["adaptive_vs_random"] == {"per_fold": {}, "pooled": {}}
  # The copy is the aggregate, run by run; no difference, no test.
  agg, cp = (res["rows"][r]["ccc_ind"]["activation"]
             for r in ("aggregate", "aggregate_copy"))
  assert cp["runs"] == agg["runs"] and cp["difference"] == 0.0
  # Each per-k row got k clips of each annotator's pool (all at k = all).
  assert len(seen) == len(sizes) * ev.seeds * ev.folds
  for i, (_, _, got, pool) in enumerate(seen):
    k = ev.enroll_sizes[i % len(sizes)]
    np.testing.assert_array_equal(got, [p if k == 0 else min(k, p)
                                        for p in pool])
  # README's row, recomputed for run (seed 0, fold 0) at k = all.
  table = pipeline.load_table(prepared.target, "full")
  run = folds.fold_runs(table, 0, ev)[0]
  agg_clip = _aggregate_clip(config, workdir_copy, prepared, table)
  test = run.test_rows
  ann = table.pair_annotator[test]
  shift = {a: (table.pair_values[p] - agg_clip[table.pair_clip[p]]).mean(0)
           for a, p in zip(run.annotators, run.pool_by_ann)}
  pred = agg_clip[table.pair_clip[test]] + np.array([shift[a] for a in ann])
  got = [res["rows"]["mean_shift@all"]["ccc_ind"][d]["runs"][0]
         for d in ("activation", "valence")]
  np.testing.assert_allclose(got, ref.ccc_ind(pred, table.pair_values[test],
                                              ann), rtol=1e-4, atol=1e-5)
  # results.json on disk, and results.md with the rows and their legend.
  out = os.path.join(workdir_copy, "eval")
  with open(os.path.join(out, "results.json")) as f:
    assert set(json.load(f)["rows"]) == set(res["rows"])
  with open(os.path.join(out, "results.md")) as f:
    md = f.read()
  for row in ("aggregate_copy", "mean_shift@5", "mean_shift@all"):
    assert f"| {row} |" in md
  assert ("- mean_shift: the aggregate shifted by each annotator's mean "
          "offset from it on the k clips") in md
  assert "- aggregate_copy: the aggregate, copied (toy)" in md
  # Table order: baselines, then each rule (in the order registered: the
  # test's, then the module's) at every k.
  order = [line.split(" | ")[0][2:] for line in md.splitlines()
           if line.startswith("| ") and "+-" in line]
  assert order[:8] == ["aggregate", "aggregate_copy", "pool_sizes@5",
                       "pool_sizes@20", "pool_sizes@all", "mean_shift@5",
                       "mean_shift@20", "mean_shift@all"]


def _aggregate_clip(config, workdir, prepared, table):
  from annojax import train  # pylint: disable=g-import-not-at-top
  g, p = train.load_best(config, workdir, "aggregate", prepared, 0)
  k, b = train.head_arrays(p)
  return np.einsum("cdh,dh->cd", train.trunk_features(g, p, table.embeddings),
                   k[0]) + b[0]


# The rating-distribution rows (protocol/rating_distributions.py, imported
# by the loop: registered after rows.py's own).
DISTRIBUTION_ROWS = ["aggregate_sd", "aggregate_spread", "source_distribution",
                     "heads_kde"]


def test_rows_selection_per_loss_and_mistakes(registry):
  del registry
  heads = {"aggregate", "heads"}  # a workdir of the paper's models
  ratings = [r.name for r in rows.select((), False, heads)]
  assert ratings == [
      "aggregate", "aggregate_rescaled", "mean_heads", "random_head",
      "oracle", "oracle_chance", "oracle_calibrated", "most_similar",
      "mixture", "eb", "linear_fit", "calibrated", "finetune", "blended",
  ] + DISTRIBUTION_ROWS
  # An embedding family trained beside them adds its four rows; a workdir
  # whose individual model is that family has no heads rows.
  family = ["embedding_copy", "embedding_fit", "embedding_mean_listener",
            "embedding_all_listeners"]
  assert [r.name for r in rows.select((), False, heads | {"embedding"})
          ] == ratings[:-4] + family + DISTRIBUTION_ROWS
  assert [r.name for r in rows.select((), False, {"aggregate", "embedding"})
          ] == ["aggregate", "aggregate_rescaled", "oracle_calibrated",
                "linear_fit", "calibrated"] + family + DISTRIBUTION_ROWS[:3]
  # A distribution row brings its tests' reference, aggregate_sd.
  assert [r.name for r in rows.select(("heads_kde",), False)] == [
      "aggregate", "aggregate_sd", "heads_kde"]
  # Class heads: their own rows only (no rescaling, linear fit, mixture...).
  assert [r.name for r in rows.select((), categorical=True)] == [
      "aggregate", "mean_heads", "random_head", "oracle", "oracle_chance",
      "most_similar"]
  # A selection keeps registration order and always has the aggregate.
  assert [r.name for r in rows.select(("eb", "most_similar"), False)] == [
      "aggregate", "most_similar", "eb"]
  with pytest.raises(ValueError, match="did you mean 'most_similar'"):
    rows.select(("most_similr",), False)
  with pytest.raises(ValueError, match="'mixture' is for ratings heads"):
    rows.select(("mixture",), True)
  with pytest.raises(ValueError, match="adaptive rows are per_k"):
    rows.register("x", doc="", adaptive=True)
  with pytest.raises(ValueError, match="without '@'"):
    rows.register("x@5", doc="")
