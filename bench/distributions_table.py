"""Rating distributions side by side, over replicates of one or more runs.

  python bench/distributions_table.py RESULTS.json [...]
      [--title=...] [--out=bench/results/distributions_<name>.md]

RESULTS.json: protocols with the rating-distribution rows
(bench/distributions.sh). Replicates: every seed of every file (NSC: each
listener partition's seeds). Per metric and dimension: each row's mean +-
s.d. over replicates; marks on the baselines: the individual model
(heads_kde) vs that baseline, paired t-test over replicates, corrected
over the table (report.marks). What the scores were computed on (clips,
ratings per clip, scale) and what was tuned on the source (widths) follow.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
import blend_table  # pylint: disable=g-import-not-at-top
import report  # pylint: disable=g-import-not-at-top

from annojax import distributions  # pylint: disable=g-import-not-at-top

MODEL = "heads_kde"
BASELINES = ("aggregate_sd", "aggregate_spread", "source_distribution")
LABEL = {"nll": "NLL", "jsd": "JSD", "sd_ccc": "s.d. CCC",
         "coverage_50": "cov50", "coverage_90": "cov90"}


def replicates(results, row, metric, d) -> np.ndarray:
  """One value per (file, seed)."""
  return np.concatenate([
      np.asarray(r["distributions"]["rows"][row][metric][d]["runs"])
      for r in results])


def table(results) -> str:
  dims = results[0]["protocol"]["columns"]
  rows = [r for r in BASELINES + (MODEL,)
          if r in results[0]["distributions"]["rows"]]
  cells = [(row, m, d) for m in distributions.METRICS for d in dims
           for row in rows]
  get = {c: replicates(results, *c) for c in cells}
  pairs = [(get[(MODEL, m, d)], get[c]) for c in cells
           for (row, m, d) in [c] if row != MODEL]
  marks, rule = report.marks(pairs, "the baseline (on heads_kde's cell "
                             "of the same column)")
  mark = dict(zip([c for c in cells if c[0] != MODEL], marks))
  n = len(get[cells[0]])
  head = [f"{LABEL[m]} {d[:4]}." for m in distributions.METRICS
          for d in dims]
  lines = [f"Replicates: {n} (every seed of every results file); mean +- "
           "s.d. over them. A mark on a baseline's cell: heads_kde vs that "
           f"baseline ({rule}; `^`: heads_kde higher). NLL, JSD: lower is "
           "better; s.d. CCC: higher; cov50 / cov90: nearer 0.50 / 0.90.",
           "", "| row | " + " | ".join(head) + " |",
           "|" + "---|" * (1 + len(head))]
  for row in rows:
    lines.append(f"| {row} | " + " | ".join(
        report.mean_sd(get[(row, m, d)]) + mark.get((row, m, d), "")
        for m in distributions.METRICS for d in dims) + " |")
  return "\n".join(lines)


def facts(args, results) -> str:
  lines = ["| results | clips (ratings per clip) | target scale | "
           "source scale | KDE weights | heads_kde width | heads_kde shrink "
           "| source_distribution width |",
           "|---|---|---|---|---|---|---|---|"]
  for path, r in zip(args.results, results):
    f, tuned = r["distributions"]["facts"], r["distributions"]["tuned"]
    per = f["ratings_per_clip"]

    def widths(row, key="width"):
      w = [t[row][key] for t in tuned if row in t]
      return ("; ".join(",".join(f"{v:g}" for v in x) for x in w)
              if w else "-")
    lines.append(
        f"| {path} | {f['clips']} (median {per['median']:g}, "
        f"{per['min']}-{per['max']}) | {f['target_scale']} | "
        f"{f['source_scale']} | {f['weights']} | {widths(MODEL)} | "
        f"{widths(MODEL, 'shrink')} | {widths('source_distribution')} |")
  return "\n".join(lines)


def main():
  args, results = blend_table.arguments("Rating distributions")
  text = "\n".join([
      f"# {args.title}", "", table(results), "",
      "What each results file scored (target clips with enough ratings) "
      "and the kernel widths and heads' shrinks (per seed, per dimension) "
      "chosen on the source's held-out ratings:", "", facts(args, results)]) + "\n"
  report.emit(text, args.out)


if __name__ == "__main__":
  main()
