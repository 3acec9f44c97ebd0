"""What the bench scripts that write markdown tables share.

Imported as `report` by scripts run as `python bench/<script>.py` (their
folder is on the import path) after they put the repository root there.

Marks: a table is one family of comparisons; each cell's paired t-test
p-value is adjusted over every test of its table (Benjamini-Hochberg,
metrics.adjust_p) and the cell is marked where the adjusted p < 0.05.
"""

import numpy as np

from annojax import metrics


def emit(text: str, out: str = "") -> None:
  """Prints a report and, when `out` is given, writes it there."""
  print(text)
  if out:
    with open(out, "w") as f:
      f.write(text)


def marks(pairs) -> list[str]:
  """One table's comparisons [(values, baseline)] (replicates, same order)
  -> a mark per pair: `*^` / `*v` where the paired t-test's p, adjusted
  over the table's pairs, is < 0.05 and the row is above / below; ""
  otherwise (also where there is no test: identical values, < 3 pairs)."""
  pairs = [(np.asarray(v, np.float64), np.asarray(b, np.float64))
           for v, b in pairs]
  adjusted = metrics.adjust_p([metrics.paired_tests(v, b)["t_p"]
                               for v, b in pairs])
  return ["*" + ("^" if np.nanmean(v) > np.nanmean(b) else "v")
          if p < metrics.MARK_LEVEL else "" for (v, b), p in
          zip(pairs, adjusted)]


def tested(pairs) -> int:
  """How many of the pairs have a test (the family's size)."""
  return int(np.isfinite([metrics.paired_tests(v, b)["t_p"]
                          for v, b in pairs]).sum())


def mark_rule(pairs, against: str = "the aggregate") -> str:
  """The sentence a table's intro says about its marks."""
  return (f"`*` paired t-test p < {metrics.MARK_LEVEL} vs {against} after "
          f"{metrics.CORRECTION} over the table's {tested(pairs)} tests, "
          "`^`/`v` above/below")


def mean_sd(values) -> str:
  values = np.asarray(values, np.float64)
  return f"{np.nanmean(values):.3f} +- {np.nanstd(values):.3f}"


def vs_aggregate_table(by_row, intro: str, dims=("act.", "val.")) -> str:
  """A table of replicates {row: [values [D] per replicate]}, each cell
  tested against the "aggregate" row's replicates; the intro ends with
  what the marks mean."""
  base = np.array(by_row["aggregate"])
  pairs = [(np.array(vals)[:, d], base[:, d]) for vals in by_row.values()
           for d in range(len(dims))]
  cells = iter(zip(pairs, marks(pairs)))
  lines = [f"{intro} {mark_rule(pairs)}.", "",
           "| row | " + " | ".join(dims) + " |", "|---|" + "---|" * len(dims)]
  for row in by_row:
    lines.append(f"| {row} | " + " | ".join(
        mean_sd(v) + m for (v, _), m in (next(cells) for _ in dims)) + " |")
  return "\n".join(lines) + "\n"
