"""Heads on the consensus model, on NSC: do they beat the aggregate?

  python bench/nsc_consensus_heads.py WORKDIR [...] [--lambdas=3,30,300]
      [--out=bench/results/nsc_consensus_heads.md]

WORKDIRs: NSC partitions trained by bench/nsc.sh (e.g. /tmp/annojax_nsc/p0;
the partition seed is read from each one's config.json). For each seed's
AGGREGATE model, a head per pre-training listener is fit in closed form on
the aggregate's trunk features, pulled toward the aggregate's own head:

  head_a = argmin_w  sum (y - [z, 1] . w)^2 + lambda ||w - w_aggregate||^2

(over the listener's source training ratings), so lambda -> infinity gives
the aggregate for every listener and lambda -> 0 each listener's own fit.
On those heads, as in the protocol: the mean of the heads, the posterior
mixture and the empirical-Bayes head at k = all (every training-speaker
clip the new listener rated), with the temperature and noise tuned on the
source's held-out raters (posterior.tune). Pooled CCC_ind per replicate
(partition x seed), paired t-test against the aggregate over replicates.
This is the "prior centred on the aggregate model" of the sparse-heads
issue, without retraining: the trunk is the consensus model's.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from annojax import enroll  # pylint: disable=g-import-not-at-top
from annojax import metrics  # pylint: disable=g-import-not-at-top
from annojax import posterior  # pylint: disable=g-import-not-at-top
from annojax import train  # pylint: disable=g-import-not-at-top
from annojax.data import pipeline  # pylint: disable=g-import-not-at-top
from annojax.protocol import folds  # pylint: disable=g-import-not-at-top
from annojax.protocol import source  # pylint: disable=g-import-not-at-top
import nsc_runs  # pylint: disable=g-import-not-at-top
import report  # pylint: disable=g-import-not-at-top


def pulled_heads(z, pair_clip, pair_annotator, pair_values, w0, lam, a_n):
  """Ridge heads [A, D, H], [A, D] pulled toward w0 [D, H + 1] (a head
  without ratings is w0)."""
  d_n, h1 = w0.shape
  theta = np.broadcast_to(w0, (a_n, d_n, h1)).copy()
  for a in range(a_n):
    r = pair_annotator == a
    for d in range(d_n):
      x = np.concatenate([z[pair_clip[r], d], np.ones((r.sum(), 1))], 1)
      theta[a, d] = np.linalg.solve(x.T @ x + lam * np.eye(h1),
                                    x.T @ pair_values[r, d] + lam * w0[d])
  theta = theta.astype(np.float32)
  return theta[..., :-1], theta[..., -1]


def replicate(config, workdir, prepared, seed, lambdas, table, src, held):
  """{row: pooled CCC_ind [D]} of one seed of one partition; the target
  table, the source training table and its held-out material are the
  partition's, read once."""
  ev = config.eval
  graphdef, params = train.load_best(config, workdir, "aggregate", prepared,
                                     seed)
  k_ag, b_ag = train.head_arrays(params)
  w0 = np.concatenate([k_ag[0], b_ag[0][:, None]], 1)
  z_t, z_s, z_h = (train.trunk_features(graphdef, params, e) for e in (
      table.embeddings, src.embeddings, held["embeddings"]))
  agg = np.einsum("cdh,dh->cd", z_t, k_ag[0]) + b_ag[0]
  runs = folds.fold_runs(table, seed, ev)
  preds = {"aggregate": [(r.test_rows, agg[table.pair_clip[r.test_rows]])
                         for r in runs]}
  for lam in lambdas:
    kernel, bias = pulled_heads(
        z_s, src.pair_clip, src.pair_annotator, src.pair_values, w0, lam,
        pipeline.read_meta(prepared.source).num_annotators)
    tuned = posterior.tune(z_h, held["pair_clip"], held["pair_annotator"],
                           held["pair_values"], kernel, bias,
                           ev.mixture_temperatures, seed=seed)
    prior = posterior.fit_prior(kernel, bias, ev.eb_rank)
    mean = np.einsum("cdh,dh->cd", z_t, kernel.mean(0)) + bias.mean(0)
    for run in runs:
      rows = run.test_rows
      pos = np.array([run.pos[a] for a in table.pair_annotator[rows]])
      scores, cidx, y_e, m_e = enroll.enrollment_scores(
          z_t, [table.pair_clip[p] for p in run.pool_by_ann],
          [table.pair_values[p] for p in run.pool_by_ann], kernel, bias)
      for name, (k_n, b_n) in (
          ("mixture@all", posterior.mixture_heads(
              scores, m_e.sum(1), kernel, bias, tuned.temperature)),
          ("eb@all", posterior.eb_heads(z_t[cidx], y_e, m_e, prior,
                                        tuned.noise))):
        preds.setdefault(f"{name}, lambda {lam:g}", []).append(
            (rows, train.pair_predictions(z_t, k_n, b_n,
                                          table.pair_clip[rows], pos)))
      preds.setdefault(f"mean of heads, lambda {lam:g}", []).append(
          (rows, mean[table.pair_clip[rows]]))
  out = {}
  for row, parts in preds.items():
    rows = np.concatenate([r for r, _ in parts])
    out[row] = metrics.ccc_ind(np.concatenate([p for _, p in parts]),
                               table.pair_values[rows],
                               table.pair_annotator[rows])
  return out


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("workdirs", nargs="+")
  ap.add_argument("--lambdas", default="3,30,300")
  ap.add_argument("--out", default="")
  args = ap.parse_args()
  lambdas = [float(x) for x in args.lambdas.split(",")]
  by_row = {}
  for config, workdir, prepared in nsc_runs.partitions(args.workdirs):
    data = (pipeline.load_table(prepared.target, "full"),
            pipeline.load_table(prepared.source, "train"),
            source.source_held_out(prepared))
    for seed in range(config.eval.seeds):
      for row, v in replicate(config, workdir, prepared, seed, lambdas,
                              *data).items():
        by_row.setdefault(row, []).append(v)
  report.emit(report.vs_aggregate_table(
      by_row,
      f"NSC, heads on the aggregate model's trunk pulled toward its head "
      f"(bench/nsc_consensus_heads.py), {len(by_row['aggregate'])} "
      "replicates (partition x seed). Pooled CCC_ind, mean +- s.d. over "
      "replicates;"), args.out)


if __name__ == "__main__":
  main()
