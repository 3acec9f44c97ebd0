"""Combines protocol results of several NSC partitions into one table.

  python bench/nsc_table.py RESULTS.json [...] [--raw=RESULTS.json]
      [--out=bench/results/nsc.md] [--plot=bench/results/nsc_adaptive.png]

Each results.json is one listener x speaker partition (configs/nsc.py,
data.partition_seed) with its evaluation seeds. Replicates = (partition,
seed) pairs: the per-fold columns average every (partition, seed, fold) run,
the pooled columns every replicate's pooled CCC_ind (each annotator's
out-of-fold predictions over the seed's folds). Marks: `*` paired t-test
vs the aggregate over the pooled replicates, p < 0.05 after the
Benjamini-Hochberg correction over the table's tests (report.marks); `^`
the row is above the aggregate, `v` below (only with `*`).
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from annojax import plots  # pylint: disable=g-import-not-at-top
from annojax.protocol import adaptive_compare  # pylint: disable=g-import-not-at-top
from annojax.protocol import rows as rows_lib  # pylint: disable=g-import-not-at-top
from annojax.protocol import tables  # pylint: disable=g-import-not-at-top
import report  # pylint: disable=g-import-not-at-top

DIMS = ("activation", "valence")


def _runs(results, table, row, dim):
  src = results if table == "rows" else results["pooled"]
  return np.array(src["rows"][row]["ccc_ind"][dim]["runs"], np.float64)


def combine(paths):
  res = [json.load(open(p)) for p in paths]
  rows = list(res[0]["rows"])
  out = {}
  for row in rows:
    out[row] = {}
    for d in DIMS:
      fold = np.concatenate([_runs(r, "rows", row, d) for r in res])
      pooled = np.concatenate([_runs(r, "pooled", row, d) for r in res])
      base = np.concatenate([_runs(r, "pooled", "aggregate", d)
                             for r in res])
      out[row][d] = dict(fold=fold, pooled=pooled, base=base)
  return res, out


def _adaptive_sizes(table):
  """The enrollment sizes that have adaptive rows."""
  return [int(k.partition("@")[2]) for k in table
          if k.startswith(rows_lib.ADAPTIVE + "most_similar@")]


def markdown(res, table, raw=None):
  order = tables.row_order(table)
  keys = [(row, d) for row in order for d in DIMS]
  pairs = [(table[row][d]["pooled"], table[row][d]["base"])
           for row, d in keys]
  found, sentence = report.marks(pairs)
  mark = dict(zip(keys, found))
  n_rep = sum(r["protocol"]["seeds"] for r in res)
  n_runs = sum(r["protocol"]["runs"] for r in res)
  lines = [f"NSC, {len(res)} listener x speaker partitions x "
           f"{res[0]['protocol']['seeds']} seeds = {n_rep} replicates "
           f"({n_runs} per-fold runs); pre-trained heads per partition: "
           + ", ".join(str(r["protocol"]["pretrained_heads"]) for r in res)
           + "; new listeners: " + ", ".join(
               str(r["protocol"]["target_annotators"]) for r in res) + ".",
           "CCC_ind, mean +- s.d.: per fold over runs; pooled over "
           "replicates. Pooled columns: "
           f"{sentence} (paired over the pooled replicates).",
           ""]
  head = "| row | per fold act. | per fold val. | pooled act. | pooled val. |"
  if raw:
    head += " raw features, pooled act. | val. |"
  lines += [head, "|" + "---|" * (5 + (2 if raw else 0))]
  for row in order:
    cells = [report.mean_sd(table[row][d]["fold"]) for d in DIMS]
    cells += [report.mean_sd(table[row][d]["pooled"]) + mark[row, d]
              for d in DIMS]
    if raw:
      for d in DIMS:
        cells.append(report.mean_sd(_runs(raw, "pooled", row, d)))
    lines.append(f"| {row} | " + " | ".join(cells) + " |")
  sizes = _adaptive_sizes(table)
  for kind, unit in (("rows", "per fold, paired over runs"),
                     ("pooled", "pooled, paired over replicates")):
    if sizes:
      cmp = adaptive_compare.compare_adaptive(
          lambda row, d, kind=kind: np.concatenate(
              [_runs(r, kind, row, d) for r in res]), sizes, DIMS)
      lines += [""] + adaptive_compare.adaptive_markdown(cmp, DIMS, unit)
  warnings = [w for r in res for w in r["protocol"]["warnings"]]
  lines += [""] + [f"Warning: {w}." for w in warnings]
  return "\n".join(lines) + "\n"


def main():
  p = argparse.ArgumentParser()
  p.add_argument("results", nargs="+")
  p.add_argument("--raw", default="")
  p.add_argument("--out", default="")
  p.add_argument("--plot", default="",
                 help="PNG: pooled CCC_ind vs rated clips, adaptive vs "
                      "random (when the runs have adaptive rows)")
  args = p.parse_args()
  res, table = combine(args.results)
  sizes = _adaptive_sizes(table)
  if args.plot and sizes:
    rows = {row: {"ccc_ind": {d: {"mean": np.nanmean(table[row][d][
        "pooled"])} for d in DIMS}} for row in table}
    plots.adaptive_vs_random(rows, "ccc_ind", DIMS, sizes, args.plot,
                             "NSC pooled: ")
  raw = json.load(open(args.raw)) if args.raw else None
  report.emit(markdown(res, table, raw), args.out)


if __name__ == "__main__":
  main()
