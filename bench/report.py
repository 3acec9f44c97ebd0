"""What the bench scripts that write markdown tables share.

Imported as `report` by scripts run as `python bench/<script>.py` (their
folder is on the import path) after they put the repository root there.
"""

import numpy as np

from annojax import metrics


def emit(text: str, out: str = "") -> None:
  """Prints a report and, when `out` is given, writes it there."""
  print(text)
  if out:
    with open(out, "w") as f:
      f.write(text)


def vs_baseline(values, baseline) -> str:
  """'mean +- s.d.' of a row's replicates, marked `*^` / `*v` where a
  paired t-test against the baseline's replicates (same order) gives
  p < 0.05 and the row is above / below it."""
  values = np.asarray(values, np.float64)
  baseline = np.asarray(baseline, np.float64)
  mark = ""
  if metrics.paired_tests(values, baseline)["t_p"] < 0.05:  # False for nan
    mark = "*" + ("^" if np.nanmean(values) > np.nanmean(baseline) else "v")
  return f"{np.nanmean(values):.3f} +- {np.nanstd(values):.3f}{mark}"


def vs_aggregate_table(by_row, intro: str, dims=("act.", "val.")) -> str:
  """A table of replicates {row: [values [D] per replicate]}, each cell
  vs_baseline against the "aggregate" row's replicates."""
  base = np.array(by_row["aggregate"])
  lines = [intro, "", "| row | " + " | ".join(dims) + " |",
           "|---|" + "---|" * len(dims)]
  for row, vals in by_row.items():
    vals = np.array(vals)
    lines.append(f"| {row} | " + " | ".join(
        vs_baseline(vals[:, d], base[:, d]) for d in range(len(dims))) + " |")
  return "\n".join(lines) + "\n"
