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


def marks(pairs, against: str = "the aggregate") -> tuple[list[str], str]:
  """One table's comparisons [(values, baseline)] (replicates, same order)
  -> (a mark per pair, the sentence the table's intro says of them). Mark:
  `*^` / `*v` where the paired t-test's p, adjusted over the table's pairs,
  is < 0.05 and the row is above / below; "" otherwise (also where there is
  no test: identical values, < 3 pairs)."""
  pairs = [(np.asarray(v, np.float64), np.asarray(b, np.float64))
           for v, b in pairs]
  adjusted = metrics.adjust_p([metrics.paired_tests(v, b)["t_p"]
                               for v, b in pairs])
  out = ["*" + ("^" if np.nanmean(v) > np.nanmean(b) else "v")
         if p < metrics.MARK_LEVEL else "" for (v, b), p in
         zip(pairs, adjusted)]
  rule = (f"`*` paired t-test p < {metrics.MARK_LEVEL} vs {against} after "
          f"{metrics.CORRECTION} over the table's "
          f"{int(np.isfinite(adjusted).sum())} tests, `^`/`v` above/below")
  return out, rule


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
  found, sentence = marks(pairs)
  cells = iter(zip(pairs, found))
  lines = [f"{intro} {sentence}.", "",
           "| row | " + " | ".join(dims) + " |", "|---|" + "---|" * len(dims)]
  for row in by_row:
    lines.append(f"| {row} | " + " | ".join(
        mean_sd(v) + m for (v, _), m in (next(cells) for _ in dims)) + " |")
  return "\n".join(lines) + "\n"
