"""Heads or embeddings? The annotator families side by side at every k.

  python bench/families_table.py RESULTS.json [...]
      [--unit=auto|pooled|seeds|runs]
      [--out=bench/results/families_<name>.md]

RESULTS.json: protocols run with the embedding families trained beside the
heads (config.train.models = individual, aggregate, embedding, lowrank).
At each enrollment size k and dimension: the best heads rule at k (by mean
over replicates, among most_similar, mixture, eb, blended; named), the
paper's top-1 copy (most_similar), each embedding family's copy and fit
(lowrank: mean + U e_a heads; embedding: the nonlinear decoder), and
aggregate_rescaled. Replicates as bench/blend_table.py (--unit). Three
families of paired t-tests, each corrected over its own cells
(report.marks): embedding_fit vs the best heads rule; lowrank_fit vs the
best heads rule; embedding_copy vs most_similar (the same rule on the
other model). Then the rows without enrollment (LDNet's mean_listener and
all_listeners, the heads' mean) against the aggregate, and the parameters
each family spends per annotator.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import blend_table  # pylint: disable=g-import-not-at-top
import report  # pylint: disable=g-import-not-at-top

HEADS = ("most_similar", "mixture", "eb", "blended")
FAMILY_ROWS = ("lowrank_copy", "lowrank_fit", "embedding_copy",
               "embedding_fit")
NO_ENROLLMENT = ("aggregate_rescaled", "mean_heads", "lowrank_mean_listener",
                 "lowrank_all_listeners", "embedding_mean_listener",
                 "embedding_all_listeners")


def table(results, unit):
  dims = results[0]["protocol"]["columns"]
  rows = []
  for k in blend_table.sizes(results, "embedding_fit"):
    for d in dims:
      get = lambda row, d=d: blend_table.replicates(results, row, d, unit)
      cands = [r for r in HEADS if f"{r}@{k}" in results[0]["rows"]]
      best = max(cands, key=lambda r: np.nanmean(get(f"{r}@{k}")))
      rows.append((k, d, best, get(f"{best}@{k}"), get(f"most_similar@{k}"),
                   *[get(f"{r}@{k}") for r in FAMILY_ROWS],
                   get("aggregate_rescaled")))
  m_emb, s_emb = report.marks([(r[8], r[3]) for r in rows],
                              "the best heads rule at k")
  m_low, s_low = report.marks([(r[6], r[3]) for r in rows],
                              "the best heads rule at k")
  m_copy, s_copy = report.marks([(r[7], r[4]) for r in rows],
                                "most_similar (the heads' copy)")
  n = len(rows[0][3])
  lines = [f"Replicates: {n} ({unit}); CCC_ind mean +- s.d. over them. "
           f"Marks on embedding_fit: vs the best heads rule ({s_emb}); on "
           f"lowrank_fit: the same test ({s_low}); on embedding_copy: vs "
           f"most_similar ({s_copy}).", "",
           "| k | dim | best heads rule | most_similar | lowrank_copy | "
           "lowrank_fit | embedding_copy | embedding_fit | "
           "aggregate_rescaled |", "|---|---|---|---|---|---|---|---|---|"]
  for r, me, ml, mc in zip(rows, m_emb, m_low, m_copy):
    k, d, best, b, ms, lc, lf, ec, ef, ar = r
    lines.append(
        f"| {k} | {d} | {best} {report.mean_sd(b)} | {report.mean_sd(ms)} | "
        f"{report.mean_sd(lc)} | {report.mean_sd(lf)}{ml} | "
        f"{report.mean_sd(ec)}{mc} | {report.mean_sd(ef)}{me} | "
        f"{report.mean_sd(ar)} |")
  return "\n".join(lines)


def without_enrollment(results, unit):
  dims = results[0]["protocol"]["columns"]
  by_row = {r: np.stack([blend_table.replicates(results, r, d, unit)
                         for d in dims], 1)
            for r in ("aggregate",) + NO_ENROLLMENT}
  return report.vs_aggregate_table(
      by_row, "Without enrollment: LDNet's inference modes (mean_listener, "
      "an embedding trained on each clip's mean rating; all_listeners, the "
      "mean of every annotator's prediction) beside the heads' mean and the "
      "rescaled aggregate, CCC_ind.", dims=tuple(d[:4] + "." for d in dims))


def parameters(hidden, dims=2, rank=16, units=64):
  """Parameters per annotator, and shared by the family's heads module."""
  return ("| family | per annotator | shared by the heads module |\n"
          "|---|---|---|\n"
          f"| heads | {dims * (hidden + 1)} | 0 |\n"
          f"| lowrank | {rank} | {dims * (hidden + 1) * (rank + 1) + rank} |\n"
          f"| embedding | {rank} | "
          f"{dims * (hidden * units + rank * units + 2 * units + 1) + rank} "
          f"|\n")


def main():
  args, results = blend_table.arguments(
      "Heads or embeddings?", lambda p: p.add_argument(
          "--hidden", type=int, default=256,
          help="config.model.hidden (the parameter count)"))
  text = "\n".join([
      f"# {args.title}", "", table(results, args.unit), "",
      without_enrollment(results, args.unit),
      f"Parameters (hidden {args.hidden}, r = 16, decoder 64 units; the "
      "mean listener's r in the shared column):", "",
      parameters(args.hidden), "Can the test ratings tell the heads apart "
      "(each results file)?", "",
      blend_table.diagnostics(args.results, results)]) + "\n"
  report.emit(text, args.out)


if __name__ == "__main__":
  main()
