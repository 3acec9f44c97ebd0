"""Per-listener calibration of the aggregate on NSC, shrunk: does any help?

  python bench/nsc_calibration.py WORKDIR [...] [--shrinks=2,5,20,100]
      [--out=bench/results/nsc_calibration.md]

WORKDIRs: NSC partitions trained by bench/nsc.sh (e.g. /tmp/annojax_nsc/p0;
the partition seed is read from each one's config.json). A new listener's
enrollment clips are all the training-speaker clips they rated (k = all,
~6-10). The aggregate's predictions x are calibrated to the listener's
ratings y on those clips (baselines.calibrate with a prior): with n clips
and w = n / (n + shrink),

  a = w sd(y) / sd(x) + (1 - w) a0,   mean = w mean(y) + (1 - w) (a0 mean(x) + c0)

so shrink -> 0 is the listener's own mean and s.d., shrink -> infinity the
prior. Two priors: identity (a0 = 1, c0 = 0: the aggregate itself, the
protocol's `calibrated@k`) and the SOURCE raters' typical scale (a0, c0:
baselines.typical_calibration on the source's held-out raters, as the
protocol's `aggregate_rescaled` row, which is this prior alone; no target
rating is used). Pooled CCC_ind per replicate (partition x seed),
paired t-test against the aggregate over replicates.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from annojax import baselines  # pylint: disable=g-import-not-at-top
from annojax import enroll  # pylint: disable=g-import-not-at-top
from annojax import metrics  # pylint: disable=g-import-not-at-top
from annojax import train  # pylint: disable=g-import-not-at-top
from annojax.data import pipeline  # pylint: disable=g-import-not-at-top
from annojax.protocol import folds  # pylint: disable=g-import-not-at-top
from annojax.protocol import source  # pylint: disable=g-import-not-at-top
import nsc_runs  # pylint: disable=g-import-not-at-top
import report  # pylint: disable=g-import-not-at-top

DIMS = ("activation", "valence")


def replicate(config, workdir, prepared, seed, shrinks, table, held,
              held_packed):
  """{row: pooled CCC_ind [D]} of one seed of one partition; table, held
  (and its ratings packed by rater) are the partition's, read once."""
  ev = config.eval
  graphdef, params = train.load_best(config, workdir, "aggregate", prepared,
                                     seed)
  k_ag, b_ag = train.head_arrays(params)
  agg, agg_held = (np.einsum("cdh,dh->cd", train.trunk_features(
      graphdef, params, e), k_ag[0]) + b_ag[0]
                   for e in (table.embeddings, held["embeddings"]))
  cidx, y_src, m_src = held_packed
  a0, c0 = baselines.typical_calibration(agg_held[cidx], y_src, m_src)
  n_src = len(cidx)
  priors = {"identity": (np.ones(len(DIMS)), np.zeros(len(DIMS))),
            "source raters": (a0, c0)}
  preds = {}
  for run in folds.fold_runs(table, seed, ev):
    rows = run.test_rows
    pos = np.array([run.pos[a] for a in table.pair_annotator[rows]])
    cidx, y, mask = enroll.pack([table.pair_clip[g] for g in run.pool_by_ann],
                                [table.pair_values[g]
                                 for g in run.pool_by_ann])
    x = agg[cidx]
    agg_test = agg[table.pair_clip[rows]]
    preds.setdefault("aggregate", []).append((rows, agg_test))
    preds.setdefault("source raters' scale alone (aggregate_rescaled)",
                     []).append(
        (rows, a0 * agg_test + c0))
    for prior, (pa, pc) in priors.items():
      for s in shrinks:
        a, c = baselines.calibrate(x, y, mask, s, (pa, pc))
        preds.setdefault(f"toward {prior}, shrink {s:g}", []).append(
            (rows, a[pos] * agg_test + c[pos]))
  out = {}
  for row, parts in preds.items():
    r = np.concatenate([p for p, _ in parts])
    out[row] = metrics.ccc_ind(np.concatenate([v for _, v in parts]),
                               table.pair_values[r], table.pair_annotator[r])
  return out, (a0, c0, n_src)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("workdirs", nargs="+")
  ap.add_argument("--shrinks", default="0,2,5,20,100")
  ap.add_argument("--out", default="")
  args = ap.parse_args()
  shrinks = [float(x) for x in args.shrinks.split(",")]
  by_row, priors = {}, []
  for config, workdir, prepared in nsc_runs.partitions(args.workdirs):
    table = pipeline.load_table(prepared.target, "full")
    held = source.source_held_out(prepared)
    held_packed = source.packed_by_annotator(
        held["pair_clip"], held["pair_annotator"], held["pair_values"])
    for seed in range(config.eval.seeds):
      rows, prior = replicate(config, workdir, prepared, seed, shrinks,
                              table, held, held_packed)
      priors.append(prior)
      for row, v in rows.items():
        by_row.setdefault(row, []).append(v)
  a0 = np.mean([p[0] for p in priors], 0)
  c0 = np.mean([p[1] for p in priors], 0)
  report.emit(report.vs_aggregate_table(
      by_row,
      f"NSC, the aggregate calibrated per listener on all their enrollment "
      f"clips, shrunk toward a prior (bench/nsc_calibration.py), "
      f"{len(by_row['aggregate'])} replicates (partition x seed). Pooled "
      "CCC_ind, mean +- s.d. over replicates. Source raters' scale a0 / c0 "
      f"(mean over replicates, from {int(np.mean([p[2] for p in priors]))} "
      f"held-out raters each): act. {a0[0]:.2f} / {c0[0]:+.3f}, val. "
      f"{a0[1]:.2f} / {c0[1]:+.3f}."), args.out)


if __name__ == "__main__":
  main()
