"""How real do the simulated raters look? Label statistics side by side.

  python bench/realism.py [--out=bench/results/realism.md]

For the embedded synthetic default (source population and target corpus),
NSC (../shared/data/nsc, all 114 listeners, aktiv / angenehm) and WHiSER
(../shared/data/whiser, MSP-Podcast label format): ratings per annotator,
agreement with the leave-one-out consensus (CCC, Pearson), the best single
peer's CCC on co-rated clips, and the spread of biases and scales across
annotators. Bias and scale figures are on [-1, 1] (each corpus's scale
rescaled), so corpora with different scales compare. The best-peer figure
depends on the design (how many peers share how many clips: the best of
many noisy estimates is inflated), so each real corpus also gets a
synthetic row "at its design": the default simulator's raters with that
corpus's numbers of annotators, clips and raters per clip. Real corpora that are
absent are skipped. The statistics are annojax.label_stats's (the same as
--mode=stats writes).
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from annojax import label_stats  # pylint: disable=g-import-not-at-top
from annojax.corpora import listening_test  # pylint: disable=g-import-not-at-top
from annojax.corpora import msp_podcast  # pylint: disable=g-import-not-at-top
from annojax.corpora import ratings as ratings_lib  # pylint: disable=g-import-not-at-top
from annojax.corpora import readers  # pylint: disable=g-import-not-at-top
from annojax.corpora import synthetic  # pylint: disable=g-import-not-at-top
import report  # pylint: disable=g-import-not-at-top

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
AV = ("activation", "valence")


def corpora(synthetic_cfg=None) -> dict:
  """{name: (validated Ratings, min ratings for agreement)}."""
  cfg = synthetic_cfg or synthetic.default_config()
  src, tgt = synthetic.make_pair(cfg)
  out = {"synthetic source": (src.ratings, 30),
         "synthetic target": (tgt.ratings, 30)}
  nsc = os.path.join(SHARED, "nsc", "SC_ratings.csv")
  if os.path.isfile(nsc):
    out["NSC"] = (ratings_lib.validate(listening_test.read(
        nsc, {"activation": "aktiv", "valence": "angenehm"})), 10)
    out["synthetic at NSC's design"] = (_at_design(cfg, out["NSC"][0]), 10)
  whiser = os.path.join(SHARED, "whiser")
  if os.path.isdir(whiser):
    out["WHiSER"] = (ratings_lib.validate(readers.select_dims(
        msp_podcast.read(whiser, splits="all"), AV)), 30)
    out["synthetic at WHiSER's design"] = (_at_design(cfg, out["WHiSER"][0]),
                                           30)
  return out


def _at_design(cfg, table):
  """The simulator's target raters with `table`'s numbers of annotators,
  clips and (median) raters per clip."""
  cfg = cfg.copy_and_resolve_references()
  _, per_clip = np.unique(table.clip, return_counts=True)
  t = cfg.target
  t.num_annotators = len(np.unique(table.annotator))
  t.num_clips = len(per_clip)
  t.raters_per_clip = int(np.median(per_clip))
  t.num_speakers = min(t.num_clips, 50)
  cfg.source.num_clips = 100  # unused here; keep the draw cheap
  return synthetic.make_pair(cfg)[1].ratings


def row_stats(table, min_ratings) -> dict:
  s = label_stats.describe(table, min_ratings)
  half = (table.scale[1] - table.scale[0]) / 2
  out = {"per_annotator": s["ratings_per_annotator"]["median"],
         "raters_per_clip": s["raters_per_clip"]["median"]}
  for d in AV:
    a, b = s["agreement"][d], s["best_peer"][d]
    out[d] = {"loo_ccc": a["ccc_mean"], "loo_pearson": a["pearson_mean"],
              "best_peer": b["best_ccc_mean"], "peers": b["peers_median"],
              "bias_sd": a["bias_sd"] / half, "scale_sd": a["scale_sd"] / half,
              "sd_ratio": a["sd_ratio_median"]}
  return out


def markdown(stats: dict) -> str:
  lines = ["| corpus | ratings / annotator | raters / clip | LOO CCC a / v | "
           "LOO Pearson a / v | best-peer CCC a / v (peers) | bias s.d. a / v"
           " | rating s.d. s.d. a / v | s.d. / consensus s.d. a / v |",
           "|---|---|---|---|---|---|---|---|---|"]
  for name, s in stats.items():
    a, v = s["activation"], s["valence"]
    lines.append(
        f"| {name} | {s['per_annotator']:g} | {s['raters_per_clip']:g} | "
        f"{a['loo_ccc']:.2f} / {v['loo_ccc']:.2f} | "
        f"{a['loo_pearson']:.2f} / {v['loo_pearson']:.2f} | "
        f"{a['best_peer']:.2f} / {v['best_peer']:.2f} ({a['peers']:g}) | "
        f"{a['bias_sd']:.2f} / {v['bias_sd']:.2f} | "
        f"{a['scale_sd']:.2f} / {v['scale_sd']:.2f} | "
        f"{a['sd_ratio']:.2f} / {v['sd_ratio']:.2f} |")
  return "\n".join(lines) + "\n"


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--out", default="")
  args = p.parse_args()
  stats = {name: row_stats(t, m) for name, (t, m) in corpora().items()}
  report.emit(markdown(stats), args.out)


if __name__ == "__main__":
  main()
