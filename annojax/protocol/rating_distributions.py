"""The protocol's rating-distribution rows: how spread out will a target
clip's ratings be, and what is their distribution (annojax/distributions.py).

A distribution row (rows.register(..., output=rows.DISTRIBUTION)) is a
function of a SeedClips returning a distributions.Mixture over its clips:
the target clips with >= config.eval.distribution.min_ratings ratings.
Distributions need no enrollment, so they are scored once per seed on all
those clips (every target clip is unseen in pre-training); seeds are the
replicates of the paired tests, against aggregate_sd (the consensus with
one global s.d.: a model of no disagreement). Whatever a row tunes (a
kernel width, a ridge) it tunes on the SOURCE's held-out clips, never on
the target.

Rows: heads_kde (the individual model: a KDE over every pre-trained head's
prediction, weighted by the annotators' share of the source's training
ratings (config.eval.distribution.weights = "activity"; "uniform": every
annotator once), the heads moved toward their mean by a shrink chosen
with the width); aggregate_sd; aggregate_spread (the consensus with a
per-clip s.d. from a spread output trained on the source clips' rating
s.d.s); source_distribution (the source's ratings, the same for every
clip).
"""

from __future__ import annotations

import dataclasses

from absl import logging
import numpy as np

from annojax import distributions as dist
from annojax import metrics
from annojax.protocol import context
from annojax.protocol import rows as rows_lib
from annojax.protocol import summary

REFERENCE = rows_lib.DISTRIBUTION_REFERENCE
MODEL_ROW = "heads_kde"  # compared with every other row in the JSON
_QUANTILE_POINTS = 256  # the source distribution's kernels


@dataclasses.dataclass(frozen=True)
class Rated:
  """Clips and their ratings: rating_clip [R] indexes the clips."""
  clips: np.ndarray        # [C] indices into a table's clips
  rating_clip: np.ndarray  # [R] position in `clips`
  y: np.ndarray            # [R, D]


def rated_clips(pair_clip, pair_values, num_clips: int, min_ratings: int,
                limit: int = 0, seed: int = 0) -> Rated:
  """The clips (of num_clips) with >= min_ratings ratings (at most `limit`,
  drawn at random; 0: all), with their ratings (pair_clip [R]: each
  rating's clip, pair_values [R, D])."""
  n = np.bincount(pair_clip, minlength=num_clips)
  clips = np.flatnonzero(n >= min_ratings)
  if limit and len(clips) > limit:
    clips = np.sort(np.random.default_rng(seed).choice(clips, limit,
                                                       replace=False))
  keep = np.isin(pair_clip, clips)
  return Rated(clips, np.searchsorted(clips, pair_clip[keep]),
               pair_values[keep])


def source_tune_clips(held: dict, cfg, seed: int = 0) -> Rated:
  """The source's held-out clips (source.source_held_out) the rows tune on:
  every clip with a rating, at most cfg.tune_clips."""
  return rated_clips(held["pair_clip"], held["pair_values"],
                     len(held["embeddings"]), 1, cfg.tune_clips, seed)


def tune_heads(cfg, tune: Rated, z_held, kernel, bias, weights,
               scale: dist.Scale) -> dict:
  """heads_kde's width and shrink per dimension, chosen by the NLL of the
  source's held-out ratings on the `tune` clips (source_tune_clips; z_held:
  the trunk on every held-out clip) -> {width, shrink, nll} [D] (the
  protocol, per seed, and the export bundle)."""
  return dist.choose_width_and_shrink(
      lambda h, k: dist.Mixture.heads(z_held[tune.clips], kernel, bias,
                                      weights, h, k),
      scale, tune.rating_clip, tune.y, cfg.widths, cfg.shrinks)


def unscorable(table, cfg) -> str | None:
  """Why the distribution rows cannot be scored on a target table (no clip
  has cfg.min_ratings ratings), or None."""
  n = np.bincount(table.pair_clip, minlength=len(table.clip_ids))
  if (n >= cfg.min_ratings).any():
    return None
  return (f"no target clip has >= {cfg.min_ratings} ratings (the most any "
          f"has: {int(n.max()) if n.size else 0}), "
          "config.eval.distribution.min_ratings")


def _cannot_score(why: str) -> str:
  return (f"rating distributions: {why}; lower it or leave the distribution "
          "rows out of config.eval.rows")


def applicable(selected, table, cfg, named: bool):
  """`selected` rows without the distribution rows where the target cannot
  score them -> (rows, the reason or None). Rows the user named
  (config.eval.rows) are not left out: a ValueError says why."""
  if not any(r.output == rows_lib.DISTRIBUTION for r in selected):
    return selected, None
  why = unscorable(table, cfg)
  if why is None:
    return selected, None
  if named:
    raise ValueError(_cannot_score(why))
  left = [r.name for r in selected if r.output == rows_lib.DISTRIBUTION]
  reason = (f"rows left out: {', '.join(left)} (rating distributions): "
            f"{why}; lower it to score them")
  return [r for r in selected if r.output != rows_lib.DISTRIBUTION], reason


class SeedClips:
  """What the distribution rows of one seed see: the seed (context.Seed),
  the target clips they are scored on (`rated`), the target's and the
  source's scales, and the source material they tune on."""

  def __init__(self, seed: context.Seed):
    self.seed, self.target = seed, seed.target
    self.cfg = seed.ev.distribution
    table = self.target.table
    self.rated = rated_clips(table.pair_clip, table.pair_values,
                             len(table.clip_ids), self.cfg.min_ratings)
    if not len(self.rated.clips):
      raise ValueError(_cannot_score(unscorable(table, self.cfg)))
    self.scale = dist.detect_scale(table.pair_values)
    self.tuned: dict = {}  # row -> what it chose on the source

  # The source: its held-out clips (tuning) and training ratings.

  @context.cached
  def tune(self) -> Rated:
    """The source's held-out clips the rows tune on (every clip with a
    rating; at most config.eval.distribution.tune_clips)."""
    return source_tune_clips(self.target.held_out, self.cfg, self.seed.seed)

  @context.cached
  def source_scale(self) -> dist.Scale:
    return dist.detect_scale(self.target.source_train.pair_values)

  @context.cached
  def activity(self) -> np.ndarray:
    """Each pre-trained annotator's weight in a KDE of heads [A]."""
    return dist.annotator_weights(
        self.cfg.weights, self.target.source_train.pair_annotator,
        self.seed.num_heads)

  @context.cached
  def train_aggregate(self) -> np.ndarray:
    """The consensus model on the source's training clips [C_train, D]."""
    return self.seed.aggregate_on(self.target.source_train.embeddings)

  def width(self, row: str, make) -> np.ndarray:
    """The kernel width per dimension with the lowest NLL of the source's
    held-out ratings; make(widths) -> the row's mixture on self.tune's
    clips."""
    t = self.tune
    width, nll = dist.choose_width(make, self.source_scale, t.rating_clip,
                                   t.y, self.cfg.widths)
    self.tuned[row] = {"width": width.tolist(),
                       "source_nll": nll.min(0).tolist()}
    return width

  def evaluate(self, mix: dist.Mixture) -> dict:
    r = self.rated
    return dist.evaluate(mix, self.scale, r.rating_clip, r.y, self.cfg.bins)


def _register(name, doc, model, section="baseline"):
  return rows_lib.register(name, doc=doc, kinds=(rows_lib.RATINGS,),
                           section=section, model=model,
                           output=rows_lib.DISTRIBUTION)


@_register("aggregate_sd", model="aggregate",
           doc="the consensus model's prediction with one global s.d. (of "
               "the source's training ratings about it): no disagreement "
               "modelled")
def aggregate_sd(d: SeedClips) -> dist.Mixture:
  t = d.target.source_train
  sd = dist.residual_sd(t.pair_clip, t.pair_values, d.train_aggregate)
  d.tuned["aggregate_sd"] = {"sd": sd.tolist()}
  return dist.Mixture.of(d.seed.aggregate_clip[d.rated.clips][:, None],
                         np.ones(1), sd)


@_register("aggregate_spread", model="aggregate",
           doc="the consensus model's prediction with a per-clip s.d.: a "
               "spread output (linear, on the consensus model's trunk) "
               "trained on the source clips' rating s.d.s, plus the "
               "consensus model's own error")
def aggregate_spread(d: SeedClips) -> dist.Mixture:
  s, t, held = d.seed, d.target.source_train, d.target.held_out
  head, ridge = dist.fit_spread_head(
      s.aggregate_trunk(t.embeddings), t.pair_clip, t.pair_values,
      s.aggregate_trunk(held["embeddings"]), held["pair_clip"],
      held["pair_values"])
  # The consensus model's error about each clip's mean rating, one number:
  # the global s.d.^2 = within-clip variance + this^2 (ddof 0).
  error = dist.residual_sd(t.pair_clip, t.consensus[t.pair_clip],
                           d.train_aggregate)
  sd = np.sqrt(head(s.aggregate_trunk(
      d.target.table.embeddings[d.rated.clips])) ** 2 + error ** 2)
  d.tuned["aggregate_spread"] = {"ridge": ridge,
                                 "consensus_error_sd": error.tolist()}
  return dist.Mixture.of(s.aggregate_clip[d.rated.clips][:, None],
                         np.ones(1), sd)


@_register("source_distribution", model="aggregate",
           doc="the source's training ratings (a KDE of them), the same for "
               "every clip: what is known without the clip")
def source_distribution(d: SeedClips) -> dist.Mixture:
  y = d.target.source_train.pair_values
  q = (np.arange(_QUANTILE_POINTS) + 0.5) / _QUANTILE_POINTS
  centres = np.quantile(y, q, axis=0)[None]  # [1, P, D]
  weights = np.ones(_QUANTILE_POINTS)
  d.width("source_distribution", lambda h: dist.Mixture.of(
      centres, weights, h, len(d.tune.clips)))
  return dist.Mixture.of(centres, weights,
                         d.tuned["source_distribution"]["width"],
                         len(d.rated.clips))


@_register("heads_kde", model="heads", section="rule",
           doc="the individual model: a KDE over every pre-trained head's "
               "prediction for the clip (weights: config.eval.distribution."
               "weights), its width and the heads' shrink toward their mean "
               "chosen on the source's held-out ratings")
def heads_kde(d: SeedClips) -> dist.Mixture:
  s, w = d.seed, d.activity
  got = tune_heads(d.cfg, d.tune, s.held_z, s.kernel, s.bias, w,
                   d.source_scale)
  d.tuned["heads_kde"] = {k: v.tolist() for k, v in got.items()}
  return dist.Mixture.heads(s.z[d.rated.clips], s.kernel, s.bias, w,
                            got["width"], got["shrink"])


def evaluate_seed(seed: context.Seed, selected) -> tuple[dict, SeedClips,
                                                        dict]:
  """Each selected distribution row's metrics on this seed -> ({row:
  {metric: [per dim]}}, the SeedClips, {row: Mixture})."""
  d = SeedClips(seed)
  mixtures = {r.name: r.fn(d) for r in selected
              if r.output == rows_lib.DISTRIBUTION}
  cells = {name: d.evaluate(mix) for name, mix in mixtures.items()}
  logging.info("seed %d: rating distributions on %d target clips: %s",
               seed.seed, len(d.rated.clips),
               {k: [round(v, 3) for v in c["nll"]] for k, c in cells.items()})
  return cells, d, mixtures


def facts(d: SeedClips) -> dict:
  """What the seed's table was computed on (the first seed's)."""
  n = np.bincount(d.rated.rating_clip)
  return {"clips": int(len(d.rated.clips)),
          "ratings": int(len(d.rated.y)),
          "ratings_per_clip": {"min": int(n.min()),
                               "median": float(np.median(n)),
                               "max": int(n.max())},
          "min_ratings": int(d.cfg.min_ratings),
          "target_scale": d.scale.describe(),
          "source_scale": d.source_scale.describe(),
          "weights": d.cfg.weights,
          "jsd_cells": (d.scale.describe() if d.scale.likert else
                        f"{d.cfg.bins} equal bins over the scale"),
          "tune_clips": int(len(d.tune.clips))}


def summarize(cells: dict, dims, seeds: int, facts_: dict, tuned: list
              ) -> dict:
  """Mean +- std over seeds, paired t-tests vs aggregate_sd (and the
  model row vs each other row in model_vs)."""
  out = summary.summarize(cells, dims, dist.METRICS, reference=REFERENCE)
  out["tests"] = {"runs": {
      "unit": "seed: each seed's pre-trained models scored on every "
              "target clip with enough ratings", "n": seeds,
      "tests": f"paired t-test (*), Wilcoxon (JSON), vs {REFERENCE}"},
      "correction": out["tests"]["correction"]}
  if MODEL_ROW in cells:
    keys = sorted(cells[MODEL_ROW])
    out["model_vs"] = {
        other: {m: {d: _versus(cells, MODEL_ROW, other, keys, m, j)
                    for j, d in enumerate(dims)} for m in dist.METRICS}
        for other in cells if other != MODEL_ROW}
  out["facts"] = facts_
  out["tuned"] = tuned
  return out


def _versus(cells, row, other, keys, metric, j) -> dict:
  a = np.array([cells[row][k][metric][j] for k in keys])
  b = np.array([cells[other][k][metric][j] for k in keys])
  return {"difference": float(np.mean(a - b)),
          **metrics.paired_tests(a, b)}


def plot_data(d: SeedClips, mixtures: dict, count: int) -> dict:
  """For the plots: `count` example clips (spread from the least to the
  most disagreed-on, among those with the most ratings), their histograms
  and each row's masses; each row's predicted s.d. vs the clips' actual."""
  r = d.rated
  n, sd_true = dist.clip_sd(r.rating_clip, r.y, len(r.clips))
  many = np.flatnonzero(n >= np.quantile(n, 0.5))
  order = many[np.argsort(np.nanmean(sd_true[many], 1), kind="stable")]
  pick = order[np.linspace(0, len(order) - 1, min(count, len(order))
                           ).round().astype(int)]
  edges = dist.histogram_edges(d.scale, d.cfg.bins)
  hist = dist.empirical_histogram(r.rating_clip, r.y, len(r.clips), edges)
  scale = d.target.meta.scale
  out = {"edges": edges, "levels": d.scale.levels,
         "scale": None if scale is None else tuple(map(float, scale)),
         "clip_ids": [str(d.target.table.clip_ids[c]) for c in
                      r.clips[pick]],
         "counts": n[pick].astype(int), "empirical": hist[pick],
         "sd_true": sd_true, "rows": {}}
  for name, mix in mixtures.items():
    sub = dist.Mixture(len(pick), lambda idx, m=mix: m.chunk(pick[idx]),
                       mix.num_kernels)
    out["rows"][name] = {"masses": dist.masses(sub, edges),
                         "sd": dist.spread(mix, d.scale)[1]}
  return out
