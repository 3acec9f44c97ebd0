"""What a corpus's labels look like, before any model: `--mode=stats`.

  python -m annojax.main --config=configs/whiser.py --workdir=W --mode=stats

reads the configured corpora's ratings only (no embeddings, so it runs on
label releases whose audio is not at hand, e.g. WHiSER) and writes
W/stats/label_stats.{md,json} and W/stats/scale_use.png:

- size: ratings, clips, annotators, speakers; ratings per annotator and
  raters per clip (min / median / mean / max);
- scale use per dimension on the corpus's own scale: how often each value
  was given (the distinct values when there are few, else 10 bins), mean and
  s.d.;
- agreement, per annotator with >= `min_ratings` ratings on clips that
  others rated too: CCC and Pearson with the leave-one-out consensus (the
  mean of the clip's OTHER raters), mean and median over annotators; each
  annotator's bias (mean of rating minus that consensus) and the s.d. of
  those biases across annotators, on the corpus scale; scale use per
  annotator: the ratio of an annotator's rating s.d. to the s.d. of the
  consensus on the same clips (median), and the s.d. across annotators of
  their own rating s.d. (corpus scale);
- best peer: per annotator, the highest CCC with one other annotator on the
  clips both rated (peers sharing >= `MIN_COMMON` clips), mean over
  annotators, and how many such peers an annotator has (median);
- every rating row the reader dropped or merged, by reason.
"""

from __future__ import annotations

import json
import os

from absl import logging
import numpy as np

from annojax import metrics
from annojax.corpora import ratings as ratings_lib
from annojax.corpora import readers
from annojax.corpora import synthetic

MAX_DISTINCT = 15  # up to this many distinct values: count each one
MIN_COMMON = 10  # clips two annotators must share to count as peers


def _summary(x) -> dict:
  x = np.asarray(x, np.float64)
  return {"min": float(x.min()), "median": float(np.median(x)),
          "mean": float(x.mean()), "max": float(x.max())}


def _scale_use(raw: np.ndarray, scale) -> dict:
  """{value or bin label: count} of one dimension on the corpus scale."""
  raw = raw[np.isfinite(raw)]
  values, counts = np.unique(np.round(raw, 4), return_counts=True)
  if len(values) <= MAX_DISTINCT:
    return {f"{v:g}": int(c) for v, c in zip(values, counts)}
  counts, edges = np.histogram(raw, bins=10, range=scale)
  return {f"{lo:.3g}-{hi:.3g}": int(c)
          for lo, hi, c in zip(edges[:-1], edges[1:], counts)}


def leave_one_out(table: ratings_lib.Ratings) -> tuple[np.ndarray, np.ndarray]:
  """Per rating row, the mean of the clip's OTHER ratings [N, D] (NaN where
  a dimension has no other rating), on the table's [-1, 1] scale."""
  clips, g = np.unique(table.clip, return_inverse=True)
  v = np.asarray(table.values, np.float64)
  have = np.isfinite(v)
  sums = np.zeros((len(clips), v.shape[1]))
  counts = np.zeros_like(sums)
  np.add.at(sums, g, np.where(have, v, 0.0))
  np.add.at(counts, g, have)
  others = counts[g] - have
  loo = (sums[g] - np.where(have, v, 0.0)) / np.maximum(others, 1)
  return np.where(others > 0, loo, np.nan), others


def agreement(table: ratings_lib.Ratings, min_ratings: int) -> dict:
  """Per dimension: CCC / Pearson with the leave-one-out consensus (mean and
  median over annotators with >= min_ratings usable ratings) and the
  across-annotator s.d. of their bias, on the corpus scale."""
  loo, _ = leave_one_out(table)
  half_range = (table.scale[1] - table.scale[0]) / 2
  out = {}
  for d, name in enumerate(table.dims):
    ok = np.isfinite(loo[:, d]) & np.isfinite(table.values[:, d])
    ann = table.annotator[ok]
    ids, counts = np.unique(ann, return_counts=True)
    keep = np.isin(ann, ids[counts >= min_ratings])
    if not keep.any():
      out[name] = {"annotators": 0}
      continue
    y, c, a = table.values[ok, d][keep], loo[ok, d][keep], ann[keep]
    ccc, _ = metrics.ccc_per_group(y[:, None], c[:, None], a)
    pearson, bias, sd, ratio = [], [], [], []
    for who in np.unique(a):
      m = a == who
      sy, sc = y[m].std(), c[m].std()
      pearson.append(np.corrcoef(y[m], c[m])[0, 1] if sy > 0 and sc > 0
                     else 0.0)
      bias.append((y[m] - c[m]).mean() * half_range)
      sd.append(sy * half_range)
      if sc > 0:
        ratio.append(sy / sc)
    out[name] = {
        "annotators": int(len(pearson)),
        "ccc_mean": float(ccc[:, 0].mean()),
        "ccc_median": float(np.median(ccc[:, 0])),
        "pearson_mean": float(np.mean(pearson)),
        "bias_sd": float(np.std(bias)),
        "sd_ratio_median": float(np.median(ratio)) if ratio else float("nan"),
        "scale_sd": float(np.std(sd)),
    }
  return out


def best_peer(table: ratings_lib.Ratings, min_common: int = MIN_COMMON
              ) -> dict:
  """Per dimension: each annotator's best CCC with a single other annotator
  on the clips both rated (peers sharing >= min_common clips); mean and
  median over the annotators that have a peer, and peers per annotator."""
  ann_ids, a = np.unique(table.annotator, return_inverse=True)
  _, c = np.unique(table.clip, return_inverse=True)
  out = {}
  for d, name in enumerate(table.dims):
    v = table.values[:, d]
    ok = np.isfinite(v)
    grid = np.full((len(ann_ids), c.max() + 1), np.nan)
    grid[a[ok], c[ok]] = v[ok]
    rated = np.isfinite(grid)
    best, peers = [], []
    for i in range(len(ann_ids)):
      cols = np.flatnonzero(rated[i])
      both = rated[:, cols]  # [A, |cols|] peers' ratings on i's clips
      n = both.sum(1)
      n[i] = 0
      cand = np.flatnonzero(n >= min_common)
      peers.append(len(cand))
      if not len(cand):
        continue
      y = np.where(both[cand], grid[i, cols][None], np.nan)
      p = grid[cand][:, cols]
      my, mp = np.nanmean(y, 1, keepdims=True), np.nanmean(p, 1,
                                                             keepdims=True)
      cov = np.nanmean((y - my) * (p - mp), 1)
      best.append(np.max(metrics.ccc_from_moments(
          cov, np.nanvar(y, 1), np.nanvar(p, 1), my[:, 0], mp[:, 0])))
    out[name] = {
        "annotators": len(best), "min_common": min_common,
        "peers_median": float(np.median(peers)),
        "best_ccc_mean": float(np.mean(best)) if best else float("nan"),
        "best_ccc_median": float(np.median(best)) if best else float("nan"),
    }
  return out


def describe(table: ratings_lib.Ratings, min_ratings: int = 30) -> dict:
  _, per_annotator = np.unique(table.annotator, return_counts=True)
  _, per_clip = np.unique(table.clip, return_counts=True)
  raw = ratings_lib.unscale(table.values, *table.scale)
  return {
      "source": table.source,
      "scale": list(table.scale),
      "ratings": len(table),
      "clips": int(len(per_clip)),
      "annotators": int(len(per_annotator)),
      "speakers": int(len(np.unique(table.speaker))),
      "ratings_per_annotator": _summary(per_annotator),
      "raters_per_clip": _summary(per_clip),
      "scale_use": {d: _scale_use(raw[:, j], table.scale)
                    for j, d in enumerate(table.dims)},
      "mean": {d: float(np.nanmean(raw[:, j]))
               for j, d in enumerate(table.dims)},
      "sd": {d: float(np.nanstd(raw[:, j])) for j, d in enumerate(table.dims)},
      "agreement_min_ratings": min_ratings,
      "agreement": agreement(table, min_ratings),
      "best_peer": best_peer(table),
      "dropped": dict(table.dropped),
  }


def tables(config) -> dict[str, ratings_lib.Ratings]:
  """{corpus name: ratings} of the configured corpora (files: those with a
  path; the target may be left empty here)."""
  cfg = config.data
  if cfg.corpus == "synthetic":
    return {c.name: c.ratings for c in synthetic.make_pair(cfg.synthetic)}
  out = {}
  for spec in readers.resolved(cfg.files).values():
    if not spec.path:
      continue
    out[spec.name] = ratings_lib.validate(readers.read_used(spec))
  if not out:
    raise ValueError("no corpus to describe: set config.data.files.source."
                     "path (and/or target.path)")
  return out


def markdown(stats: dict) -> str:
  lines = []
  for name, s in stats.items():
    lines += [f"## {name}", "", f"`{s['source']}`, scale "
              f"{s['scale'][0]:g}-{s['scale'][1]:g}", "",
              "| ratings | clips | annotators | speakers |", "|---|---|---|---|",
              f"| {s['ratings']} | {s['clips']} | {s['annotators']} | "
              f"{s['speakers']} |", "",
              "| per | min | median | mean | max |", "|---|---|---|---|---|"]
    for key, label in (("ratings_per_annotator", "ratings per annotator"),
                       ("raters_per_clip", "raters per clip")):
      v = s[key]
      lines.append(f"| {label} | {v['min']:g} | {v['median']:g} | "
                   f"{v['mean']:.1f} | {v['max']:g} |")
    lines += ["", f"Agreement with the leave-one-out consensus (annotators "
              f"with >= {s['agreement_min_ratings']} ratings):", "",
              "| dim | mean | s.d. | annotators | CCC mean | CCC median | "
              "Pearson mean | bias s.d. |", "|---|---|---|---|---|---|---|---|"]
    for d, a in s["agreement"].items():
      if not a["annotators"]:
        lines.append(f"| {d} | {s['mean'][d]:.2f} | {s['sd'][d]:.2f} | 0 | "
                     "- | - | - | - |")
        continue
      lines.append(f"| {d} | {s['mean'][d]:.2f} | {s['sd'][d]:.2f} | "
                   f"{a['annotators']} | {a['ccc_mean']:.3f} | "
                   f"{a['ccc_median']:.3f} | {a['pearson_mean']:.3f} | "
                   f"{a['bias_sd']:.3f} |")
    lines += ["", f"Scale use per annotator and the best single peer (peers "
              f"share >= {MIN_COMMON} clips):", "",
              "| dim | rating s.d. / consensus s.d. (median) | s.d. of "
              "annotators' s.d. | best-peer CCC mean | with a peer | peers "
              "(median) |", "|---|---|---|---|---|---|"]
    for d, a in s["agreement"].items():
      b = s["best_peer"][d]
      lines.append(f"| {d} | {a.get('sd_ratio_median', float('nan')):.2f} | "
                   f"{a.get('scale_sd', float('nan')):.3f} | "
                   f"{b['best_ccc_mean']:.3f} | {b['annotators']} | "
                   f"{b['peers_median']:g} |")
    lines += ["", "Scale use (count of each value given):", ""]
    for d, use in s["scale_use"].items():
      lines.append(f"- {d}: " + ", ".join(f"{k}: {v}" for k, v in use.items()))
    lines += ["", "Rating rows dropped or merged: " + (
        "; ".join(f"{k}: {v}" for k, v in s["dropped"].items()) or "none"),
              ""]
  return "\n".join(lines)


def run(config, workdir: str) -> dict:
  stats = {name: describe(t, config.data.min_ratings)
           for name, t in tables(config).items()}
  out = os.path.join(workdir, "stats")
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "label_stats.json"), "w") as f:
    json.dump(stats, f, indent=2)
  text = markdown(stats)
  with open(os.path.join(out, "label_stats.md"), "w") as f:
    f.write(text)
  from annojax import plots  # pylint: disable=g-import-not-at-top
  plots.scale_use(stats, os.path.join(out, "scale_use.png"))
  print(text)
  logging.info("label statistics in %s", out)
  return stats
