"""Statistics of the protocol: a row's metrics on one run's test pairs, and
their summary over runs with paired tests against the aggregate.

Metrics (METHOD.md): CCC_ind and CCC_con (mean prediction vs the consensus
of ALL the clip's ratings) per dimension; for categorical heads agreement
and log-likelihood per annotator, one column. Tests against the aggregate
row pair runs by their (seed, fold) key: a paired t-test and Wilcoxon over
runs, and a paired t-test over seeds (each seed's mean over its folds);
each test's p-values adjusted over the table (Benjamini-Hochberg: the
table's marks control the false discovery rate), raw and adjusted kept.
"""

from __future__ import annotations

import numpy as np

from annojax import metrics

DIMENSIONAL_METRICS = ("ccc_ind", "ccc_con")
CATEGORICAL_METRICS = ("agreement_ind", "loglik_ind")


def score_row(pred, table, rows, categorical=False) -> dict:
  """A row's metrics on test pairs `rows` (indices into the target table)
  -> {metric: [one value per column]}."""
  y = table.pair_values[rows]
  ann = table.pair_annotator[rows]
  if categorical:  # one column, "all": means over annotators
    return {k: [v] for k, v in metrics.categorical_ind(pred, y, ann).items()}
  clip = table.pair_clip[rows]
  # CCC_con's label: the consensus of ALL the clip's ratings (also those
  # of annotators outside this run), constant within the clip.
  return {"ccc_ind": metrics.ccc_ind(pred, y, ann),
          "ccc_con": metrics.ccc_con(pred, table.consensus[clip], clip)}


def _cell(vals, base, by_seed, base_seed, keys, with_tests) -> dict:
  """One (row, metric, column): mean / std over runs, and its tests."""
  cell = {"mean": float(np.nanmean(vals)),
          "std": float(np.nanstd(vals)),
          "runs": vals.tolist(),
          "run_keys": [list(k) for k in keys]}
  if with_tests:
    # mean paired difference vs the aggregate: the marks' direction
    cell["difference"] = float(np.nanmean(vals - base))
    cell.update(metrics.paired_tests(vals, base))
    cell["seed_t_p"] = metrics.paired_tests(by_seed, base_seed)["t_p"]
  return cell


def _test_units(n_runs: int, n_seeds: int) -> dict:
  return {
      "runs": {"unit": "run = one (seed, fold); each seed has its own "
                       "pre-trained models and speaker folds",
               "n": n_runs, "tests": "paired t-test (*), Wilcoxon "
                                     "(JSON), vs aggregate"},
      "seeds": {"unit": "seed = mean over its folds (independent "
                        "replicates)", "n": n_seeds,
                "tests": ("paired t-test (+), vs aggregate"
                          if n_seeds >= metrics.MIN_PAIRS else
                          f"none: fewer than {metrics.MIN_PAIRS} seeds")}}


def summarize(cells: dict[str, dict], dims,
              metric_names=DIMENSIONAL_METRICS,
              reference: str = "aggregate") -> dict:
  """Mean/std over runs + paired tests vs the aggregate row (or another
  reference row).

  cells[row] maps a run key (seed, fold) to that run's metrics. Runs are
  paired with the aggregate's by key (never by position), every row must
  have exactly the aggregate's runs, and a key can occur only once, so no
  run counts twice. Two tests per cell: over runs (unit: one (seed, fold)
  run, n = runs) and over seeds (unit: a seed's mean over its folds,
  n = seeds; seeds are independent replicates, folds within a seed share
  the pre-trained models).
  """
  base_runs = cells[reference]
  keys = sorted(base_runs)
  seed_of = np.array([k[0] for k in keys])
  seeds = np.unique(seed_of)
  for row, runs in cells.items():
    if sorted(runs) != keys:
      raise ValueError(f"row {row!r} has runs {sorted(runs)}, the "
                       f"{reference} row {keys}: runs cannot be paired")
  rows = {}
  for row, runs in cells.items():
    entry = {}
    for metric in metric_names:
      vals = np.array([runs[k][metric] for k in keys], np.float64)
      base = np.array([base_runs[k][metric] for k in keys], np.float64)
      by_seed, base_seed = (
          np.array([np.nanmean(v[seed_of == s], 0) for s in seeds])
          for v in (vals, base))
      entry[metric] = {d: _cell(vals[:, j], base[:, j], by_seed[:, j],
                                base_seed[:, j], keys, row != reference)
                       for j, d in enumerate(dims)}
    rows[row] = entry
  tests = _test_units(len(keys), len(seeds))
  tests["correction"] = adjust_table(rows, reference)
  return {"rows": rows, "tests": tests}


TESTS = ("t_p", "wilcoxon_p", "seed_t_p")


def adjust_table(rows: dict, reference: str = "aggregate") -> dict:
  """Adds <test>_adjusted beside each p-value of the table: adjusted over
  the family of every comparison of that test in the table (each row but
  the aggregate x metric x column; metrics.adjust_p). -> what was done."""
  cells = [c for row, e in rows.items() if row != reference
           for by_dim in e.values() for c in by_dim.values()]
  return {"method": metrics.CORRECTION,
          "family": "every comparison of the same test in this table",
          "comparisons": {test: adjust_cells(cells, test) for test in TESTS}}


def adjust_cells(cells: list[dict], test: str) -> int:
  """Adds <test>_adjusted to each cell that has <test>: adjusted over these
  cells, one family (metrics.adjust_p). -> the family's number of tests."""
  adjusted = metrics.adjust_p([c.get(test, np.nan) for c in cells])
  for c, p in zip(cells, adjusted):
    if test in c:
      c[f"{test}_adjusted"] = float(p)
  return int(np.isfinite(adjusted).sum())


def mark_p(cell: dict, test: str) -> float:
  """The p-value a mark is drawn from: <test>_adjusted (the raw p in results
  from before the correction; 1 where the cell has no test)."""
  return cell.get(f"{test}_adjusted", cell.get(test, 1.0))
