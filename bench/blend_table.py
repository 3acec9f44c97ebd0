"""The blended enrollment rule against the consensus and the individual rules.

  python bench/blend_table.py RESULTS.json [...] [--unit=auto|pooled|seeds|runs]
      [--out=bench/results/blend_<name>.md]

At each enrollment size k: blended@k; the aggregate; aggregate_rescaled
(the consensus at the raters' typical scale); the best individual rule at
that k (by mean over replicates, among most_similar, mixture, eb,
linear_fit, calibrated, finetune; named). Replicates: --unit=pooled, each
(results file, seed)'s pooled CCC_ind (NSC: 3 partitions x 3 seeds = 9);
--unit=seeds, each seed's mean over its folds (independent
replicates: each seed pre-trains its own models); --unit=runs, each
(seed, fold) run (folds of one seed share its models: for configs with
too few seeds to test); --unit=auto (default) takes seeds where every
file has >= 3 seeds, else runs. Three families
of paired t-tests, each corrected over its own cells (report.marks):
blended vs the aggregate, vs aggregate_rescaled, vs the best individual
rule. The learned weights (mean over seeds at each tuned size) follow.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from annojax import blend  # pylint: disable=g-import-not-at-top
import report  # pylint: disable=g-import-not-at-top

INDIVIDUAL = ("most_similar", "mixture", "eb", "linear_fit", "calibrated",
              "finetune")
BLEND_KEY = ("blend (weights per enrollment size per seed; source held-out "
             "annotators)")


def replicates(results, row, dim, unit):
  """pooled: each seed's pooled value; runs: each (seed, fold) run; seeds:
  each seed's mean over its folds (the independent replicates)."""
  out = []
  for r in results:
    cell = (r["pooled"] if unit == "pooled" else r)["rows"][row]["ccc_ind"][
        dim]
    runs = np.asarray(cell["runs"], np.float64)
    if unit == "seeds":
      seed = np.asarray(cell["run_keys"])[:, 0]
      runs = np.array([runs[seed == s].mean() for s in np.unique(seed)])
    out.append(runs)
  return np.concatenate(out)


def sizes(results, row: str = "blended"):
  """The enrollment sizes k of a row's row@k cells, in table order."""
  return [r.partition("@")[2] for r in results[0]["rows"]
          if r.startswith(f"{row}@")]


def table(results, unit):
  dims = results[0]["protocol"]["columns"]
  rows = []
  for k in sizes(results):
    for d in dims:
      get = lambda row, d=d: replicates(results, row, d, unit)
      cands = [r for r in INDIVIDUAL if f"{r}@{k}" in results[0]["rows"]]
      best = max(cands, key=lambda r: np.nanmean(get(f"{r}@{k}")))
      rows.append((k, d, get(f"blended@{k}"), get("aggregate"),
                   get("aggregate_rescaled"), best, get(f"{best}@{k}")))
  m_agg, s_agg = report.marks([(r[2], r[3]) for r in rows], "the aggregate")
  m_res, s_res = report.marks([(r[2], r[4]) for r in rows],
                              "aggregate_rescaled")
  m_ind, s_ind = report.marks([(r[2], r[6]) for r in rows],
                              "the best individual rule at that k")
  if all(np.array_equal(r[2], r[4]) for r in rows):
    s_res = "no test: blended equals aggregate_rescaled in every replicate"
  n = len(rows[0][2])
  lines = [f"Replicates: {n} ({unit}); CCC_ind mean +- s.d. over them. "
           f"Marks on blended: vs the aggregate ({s_agg}); vs "
           f"aggregate_rescaled, in the next column ({s_res}); vs the best "
           f"individual rule at k, in the last ({s_ind}).", "",
           "| k | dim | blended | vs aggregate | vs rescaled | aggregate | "
           "aggregate_rescaled | best individual at k | vs best |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r, a, b, c in zip(rows, m_agg, m_res, m_ind):
    k, d, bl, ag, rs, best, bi = r
    lines.append(
        f"| {k} | {d} | {report.mean_sd(bl)} | {a or 'n.s.'} | "
        f"{b or 'n.s.'} | {report.mean_sd(ag)} | {report.mean_sd(rs)} | "
        f"{best} {report.mean_sd(bi)} | {c or 'n.s.'} |")
  return "\n".join(lines)


def weights(results):
  """Mean learned weights per tuned size over every seed of every file."""
  learned = [blend.Blend.from_json(b) for r in results
             for b in r["protocol"].get(BLEND_KEY, [])]
  if not learned:
    return ""
  by_size = {}
  for b in learned:
    for s, w, g in zip(b.sizes, b.weights, b.gate):
      by_size.setdefault(s, []).append((w, g))
  lines = ["", f"Weights learned on the source's held-out raters (mean over "
           f"{len(learned)} seeds; `moved`: seeds with any weight):", "",
           "| tuned size | " + " | ".join(blend.RULES) +
           " | seeds moved | gates |", "|---|" + "---|" * (len(blend.RULES)
                                                          + 2)]
  for s in sorted(by_size):
    w = np.array([x[0] for x in by_size[s]])
    gates = sorted({x[1] for x in by_size[s]})
    lines.append(f"| {s} | " + " | ".join(f"{v:.2f}" for v in w.mean(0)) +
                 f" | {int((w.sum(1) > 0).sum())} of {len(w)} | "
                 f"{', '.join(gates)} |")
  return "\n".join(lines)


def diagnostics(paths, results):
  return "\n".join(
      f"- {os.path.basename(os.path.dirname(os.path.dirname(p)))}: "
      f"{r['heads_distinguishable']['sentence']}"
      for p, r in zip(paths, results) if "heads_distinguishable" in r)


def arguments(title: str, more=None):
  """(args, results): the table scripts' command line (results files,
  --unit, --title, --out; `more` adds its own) and the results read, with
  --unit=auto resolved: seeds where every file has >= 3, else runs."""
  p = argparse.ArgumentParser()
  p.add_argument("results", nargs="+")
  p.add_argument("--unit", choices=("auto", "pooled", "runs", "seeds"),
                 default="auto", help="auto: seeds where every file has >= "
                 "3 seeds (a test needs 3), else runs")
  p.add_argument("--title", default=title)
  p.add_argument("--out", default="")
  if more:
    more(p)
  args = p.parse_args()
  results = [json.load(open(f)) for f in args.results]
  if args.unit == "auto":
    args.unit = ("seeds" if min(r["protocol"]["seeds"] for r in results) >= 3
                 else "runs")
  return args, results


def main():
  args, results = arguments("The blended rule")
  text = "\n".join([f"# {args.title}", "", table(results, args.unit),
                    weights(results), "", "Can the test ratings tell the "
                    "heads apart (each results file)?", "",
                    diagnostics(args.results, results)]) + "\n"
  report.emit(text, args.out)


if __name__ == "__main__":
  main()
