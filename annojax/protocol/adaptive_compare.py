"""Adaptive vs random enrollment clips: each adaptive row against its random
row at the same k, paired by run (adaptive.py chooses the clips)."""

from __future__ import annotations

import numpy as np

from annojax import metrics
from annojax.protocol import folds
from annojax.protocol import rows as rows_lib
from annojax.protocol import summary


def compare_adaptive(runs, sizes, dims) -> dict:
  """Adaptive vs random clips, paired by run, for each rule and size.

  runs(row, dim) -> the row's values over runs (the same runs, in the same
  order, for every row). -> {"<rule>@<k>": {dim: {random, adaptive,
  difference (means), t_p (paired t-test), t_p_adjusted (over every cell
  of the comparison, metrics.adjust_p), n}}}, for every registered rule
  with adaptive rows present."""
  out = {}
  for kind in (r.name for r in rows_lib.REGISTRY.values() if r.adaptive):
    for k in sizes:
      name = f"{kind}@{folds.size_name(k)}"
      entry = {}
      for d in dims:
        try:
          rnd = np.asarray(runs(name, d), np.float64)
          ada = np.asarray(runs(rows_lib.ADAPTIVE + name, d), np.float64)
        except KeyError:  # a rule without adaptive rows
          break
        entry[d] = {"random": float(np.nanmean(rnd)),
                    "adaptive": float(np.nanmean(ada)),
                    "difference": float(np.nanmean(ada - rnd)),
                    "t_p": metrics.paired_tests(ada, rnd)["t_p"],
                    "n": len(rnd)}
      if entry:
        out[name] = entry
  summary.adjust_cells(_cells(out), "t_p")  # the table: one family
  return out


def _cells(comparison: dict) -> list[dict]:
  return [c for e in comparison.values() for c in e.values()]


def _tested(comparison: dict) -> int:
  return int(np.isfinite([c["t_p"] for c in _cells(comparison)]).sum())


def adaptive_markdown(comparison: dict, dims, unit: str,
                      metric: str = "CCC_ind") -> list[str]:
  """The adaptive-vs-random table: means, difference, `*` adjusted
  p < 0.05."""
  n = min((c["n"] for e in comparison.values() for c in e.values()),
          default=0)
  test = (f"`*` paired t-test p < {metrics.MARK_LEVEL} after "
          f"{metrics.CORRECTION} over the table's {_tested(comparison)} "
          "comparisons" if n >= metrics.MIN_PAIRS else
          f"no test (n = {n}, fewer than {metrics.MIN_PAIRS})")
  lines = [f"Adaptive vs random enrollment clips ({unit}): {metric} means, "
           f"adaptive minus random, {test}.", "",
           "| rule@k | " + " | ".join(f"random {d} | adaptive {d} | diff {d}"
                                      for d in dims) + " |",
           "|" + "---|" * (1 + 3 * len(dims))]
  for name, entry in comparison.items():
    cells = []
    for d in dims:
      c = entry[d]
      star = "*" if summary.mark_p(c, "t_p") < metrics.MARK_LEVEL else ""
      cells += [f"{c['random']:.3f}", f"{c['adaptive']:.3f}",
                f"{c['difference']:+.3f}{star}"]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return lines
