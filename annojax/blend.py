"""The blended enrollment rule: the consensus, moved toward the individual
rules as far as the evidence carries it.

For a new annotator n with k_n enrollment clips, on a clip c:

  pred_n(c) = base(c) + g_n sum_r w_r(k_n) (pred_r,n(c) - base(c))

  base      the consensus model at the raters' typical scale (one a x + c
            for everyone: aggregate_rescaled, baselines.typical_calibration)
  r         the individual rules: mixture (posterior-weighted heads), eb
            (the empirical-Bayes head) and calibrated (the aggregate at the
            annotator's own mean and s.d.), each fit on their k_n clips
  w(k)      weights per enrollment size (>= 0, sum <= 1), learned on the
            SOURCE's held-out raters (never the target): at each size s,
            each rater with > s held-out ratings enrolls on s of them at
            random and is tested on the rest; the weights and gate with the
            highest mean CCC_ind there win (ties: nearer the consensus),
            if they beat the consensus there by more than EVIDENCE_Z
            standard errors (paired over raters); else the weights are 0.
            An annotator with k_n clips uses the largest tuned size <= k_n.
  g_n       the annotator's own evidence, 0 or 1: their gain, how much
            better the best pre-trained head fits their k clips than the
            consensus does (enrollment score, per dimension), against its
            chance level: the same gain on the source raters with their
            ratings shuffled among their enrollment clips. The gate is
            learned with the weights, one of: none (g = 1), the chance
            gains' median, their 90th percentile.

Every part is linear, so the result is one head on the individual model's
trunk plus an affine map of the consensus model's output per annotator:
pred_n(c) = z(c) . kernel_n + bias_n + scale_n * aggregate(c) + shift_n
(`Blended`), computed for all N annotators at once. `moved` = g_n sum_r
w_r: how far an annotator's prediction moved from the consensus (0: the
consensus at the typical scale; 1: the individual rules alone).
"""

from __future__ import annotations

import dataclasses
import itertools

from absl import logging
import numpy as np

from annojax import baselines
from annojax import enroll
from annojax import metrics
from annojax import posterior
from annojax import train

RULES = ("mixture", "eb", "calibrated")
# Enrollment sizes tuned on the source (and those of the protocol), where
# at least MIN_RATERS source raters have more held-out ratings than that.
SIZES = (2, 3, 5, 10, 20, 40, 80, 160, 320)
MIN_RATERS = 10
WEIGHT_STEP = 0.1
GATES = ("none", "chance_median", "chance_q90")
# Among weights whose source CCC_ind is within this of the best, the one
# nearest the consensus (smallest total weight) is taken.
TOLERANCE = 1e-3
# The best weights are kept only if their source CCC_ind beats the
# consensus's by more than this many standard errors (paired over the
# source raters); else the consensus alone: a few raters' luck is no
# evidence (a one-sided z of 2, p ~ 0.02 before the choice among weights).
EVIDENCE_Z = 2.0


@dataclasses.dataclass(frozen=True)
class Blend:
  """What the blend learned on the source, per enrollment size.

  sizes [S]; weights [S, R] (RULES order); gate [S] (a GATES name) and
  threshold [S] (the gain an annotator must exceed; -inf: none); raters
  [S]: source raters it was tuned on; ccc [S, 2]: their test CCC_ind
  (mean over dims) with the consensus alone and with the blend."""
  sizes: tuple
  weights: np.ndarray
  gate: tuple
  threshold: np.ndarray
  raters: tuple
  ccc: np.ndarray

  def index(self, counts) -> np.ndarray:
    """Each annotator's tuned size: the largest <= its count (the smallest
    size where it has fewer clips than any)."""
    sizes = np.asarray(self.sizes)
    return np.maximum(np.searchsorted(sizes, np.asarray(counts),
                                      side="right") - 1, 0)

  def to_json(self) -> dict:
    return {"rules": list(RULES), "sizes": [int(s) for s in self.sizes],
            "weights": np.round(self.weights, 4).tolist(),
            "gate": list(self.gate),
            "threshold": [None if not np.isfinite(t) else float(t)
                          for t in self.threshold],
            "source_raters": [int(r) for r in self.raters],
            "source_ccc_ind": {"consensus": self.ccc[:, 0].tolist(),
                               "blended": self.ccc[:, 1].tolist()}}

  @classmethod
  def from_json(cls, d: dict) -> "Blend":
    if list(d["rules"]) != list(RULES):
      raise ValueError(f"blend rules {d['rules']} are not {list(RULES)}")
    return cls(sizes=tuple(d["sizes"]),
               weights=np.asarray(d["weights"], np.float64).reshape(
                   len(d["sizes"]), len(RULES)),
               gate=tuple(d["gate"]),
               threshold=np.asarray([-np.inf if t is None else t
                                     for t in d["threshold"]], np.float64),
               raters=tuple(d["source_raters"]),
               ccc=np.stack([d["source_ccc_ind"]["consensus"],
                             d["source_ccc_ind"]["blended"]], 1))

  @classmethod
  def consensus(cls) -> "Blend":
    """No source rater to learn from: the consensus alone."""
    return cls(sizes=(1,), weights=np.zeros((1, len(RULES))), gate=("none",),
               threshold=np.full(1, -np.inf), raters=(0,),
               ccc=np.full((1, 2), np.nan))


@dataclasses.dataclass(frozen=True)
class Parts:
  """Each individual rule fit on the enrollment sets of N annotators, and
  their gain (best head vs the consensus, per dimension) [N]."""
  mixture: tuple
  eb: tuple
  calibrated: tuple
  gain: np.ndarray

  def first(self, n: int) -> "Parts":
    """The first n annotators' parts (padding rows dropped)."""
    return Parts(*(tuple(x[:n] for x in v) if isinstance(v, tuple)
                   else v[:n] for v in dataclasses.astuple(self)))


@dataclasses.dataclass(frozen=True)
class Blended:
  """Per annotator: pred = z . kernel + bias + scale * aggregate + shift.
  kernel [N, D, H], bias / scale / shift [N, D]; moved [N]; size [N] the
  tuned size used."""
  kernel: np.ndarray
  bias: np.ndarray
  scale: np.ndarray
  shift: np.ndarray
  moved: np.ndarray
  size: np.ndarray


@dataclasses.dataclass(frozen=True)
class Heads:
  """What the rules need of the pre-trained model: heads, their EB prior,
  the tuned posterior, the consensus's typical scale (a, c) [D], the
  enrollment score and the calibration's shrinkage."""
  kernel: np.ndarray
  bias: np.ndarray
  prior: posterior.Prior
  temperature: float
  noise: float
  rescale: tuple
  score: str = "ccc"
  shrink: float = 5.0
  head_chunk: int = 0


def consensus_scores(agg, ratings, mask, rescale, score: str) -> np.ndarray:
  """[N] the enrollment score of the consensus at the typical scale, as
  enroll scores a head (the aggregate's output is its one feature)."""
  a, c = rescale
  return np.asarray(enroll.score_heads(
      np.asarray(agg, np.float32)[..., None], ratings, mask,
      np.asarray(a, np.float32)[None, :, None],
      np.asarray(c, np.float32)[None], score))[:, 0]


def parts(h: Heads, z, agg, ratings, mask, scores, mixture=None, eb=None
          ) -> Parts:
  """The rules on N enrollment sets: z [N, K, D, H] trunk features and agg
  [N, K, D] consensus outputs of the clips, ratings [N, K, D], mask [N, K],
  scores [N, A] of every head (enroll.score_heads); the mixture and EB
  heads where already computed."""
  if mixture is None:
    mixture = posterior.mixture_heads(scores, mask.sum(1), h.kernel, h.bias,
                                      h.temperature)
  if eb is None:
    eb = posterior.eb_heads(z, ratings, mask, h.prior, h.noise)
  a, c = h.rescale
  cal = baselines.calibrate(a * agg + c, ratings, mask, h.shrink)
  return Parts(mixture, eb, cal, gain(h, agg, ratings, mask, scores))


def gain(h: Heads, agg, ratings, mask, scores) -> np.ndarray:
  """[N] how much better the best head fits each enrollment set than the
  consensus at the typical scale does (score per dimension)."""
  best = np.max(np.where(np.isfinite(scores), scores, -np.inf), 1)
  return (best - consensus_scores(agg, ratings, mask, h.rescale, h.score)
          ) / ratings.shape[-1]


def combine(blend: Blend, h: Heads, p: Parts, counts) -> Blended:
  """The blended rule of each annotator from its parts (module docstring).
  The calibrated rule a' (a x + c) + c' is affine in the aggregate x."""
  idx = blend.index(counts)
  g = (p.gain > blend.threshold[idx]).astype(np.float64)
  w = blend.weights[idx] * g[:, None]                        # [N, R]
  wm, we, wc = (w[:, i][:, None] for i in range(len(RULES)))
  kernel = (wm[..., None] * p.mixture[0] + we[..., None] * p.eb[0])
  bias = wm * p.mixture[1] + we * p.eb[1]
  a, c = (np.asarray(v, np.float64)[None] for v in h.rescale)
  ca, cc = p.calibrated
  rest = 1.0 - w.sum(1, keepdims=True)
  scale = rest * a + wc * ca * a
  shift = rest * c + wc * (ca * c + cc)
  return Blended(kernel.astype(np.float32), bias.astype(np.float32),
                 scale, shift, w.sum(1), np.asarray(blend.sizes)[idx])


def enroll_blended(blend: Blend, h: Heads, z, agg, ratings, mask, scores
                   ) -> Blended:
  """parts + combine: the blended rule of N annotators in one pass."""
  return combine(blend, h, parts(h, z, agg, ratings, mask, scores),
                 mask.sum(1))


def predictions(b: Blended, z, agg) -> np.ndarray:
  """z [N, T, D, H], agg [N, T, D] of each annotator's clips -> [N, T, D]."""
  return (posterior.predictions(z, b.kernel, b.bias)
          + b.scale[:, None] * agg + b.shift[:, None])


# Learning the weights on the source's held-out raters.


def _weight_grid(step: float = WEIGHT_STEP) -> np.ndarray:
  """[M, R]: every weight vector on a grid of `step`, >= 0, sum <= 1,
  ordered by total weight (nearest the consensus first)."""
  n = int(round(1 / step))
  grid = [c for c in itertools.product(range(n + 1), repeat=len(RULES))
          if sum(c) <= n]
  grid.sort(key=lambda c: (sum(c), c))
  return np.asarray(grid, np.float64) / n


def _moments(f, y, who, n_who):
  """Per rater sums for the CCC of any coefficient vector over features
  f [P, D, F] against y [P, D]: count [G], s1 [G, D, F], s2 [G, D, F, F],
  sy [G, D, F], my [G, D], vy [G, D]."""
  cnt = np.bincount(who, minlength=n_who).astype(np.float64)
  add = lambda x: np.stack([np.bincount(who, x[:, j], n_who)
                            for j in range(x.shape[1])], 1)
  p, d, nf = f.shape
  s1 = add(f.reshape(p, -1)).reshape(n_who, d, nf)
  s2 = add(np.einsum("pdf,pdg->pdfg", f, f).reshape(p, -1)).reshape(
      n_who, d, nf, nf)
  sy = add((f * y[..., None]).reshape(p, -1)).reshape(n_who, d, nf)
  my = add(y) / cnt[:, None]
  vy = add(y * y) / cnt[:, None] - my ** 2
  return cnt, s1, s2, sy, my, vy


def _ccc_of_coefficients(coef, mom) -> np.ndarray:
  """coef [M, G, F] (a coefficient vector per candidate and rater) -> [M, G]
  each rater's test CCC (mean over dimensions) under each candidate."""
  cnt, s1, s2, sy, my, vy = mom
  n = cnt[None, :, None]
  mp = np.einsum("mgf,gdf->mgd", coef, s1) / n
  ep2 = np.einsum("mgf,gdfh,mgh->mgd", coef, s2, coef) / n
  vp = np.maximum(ep2 - mp ** 2, 0.0)
  cov = np.einsum("mgf,gdf->mgd", coef, sy) / n - mp * my[None]
  return metrics.ccc_from_moments(cov, vp, vy[None], mp, my[None]).mean(2)


def choose(features, y, who, gains, thresholds, step: float = WEIGHT_STEP):
  """The weights and gate with the highest mean CCC_ind of the source's
  test pairs, if that beats the consensus by more than EVIDENCE_Z standard
  errors (paired over raters); else the consensus (zero weights).
  features [P, D, 1 + R]: the consensus and each rule's departure from it
  (pred_r - base) on the test pairs; y [P, D]; who [P] rater of each pair
  (0..G-1); gains [G]; thresholds: gate name -> the gain to exceed.
  -> (weights [R], gate name, threshold, ccc consensus, ccc blended)."""
  n_who = len(gains)
  mom = _moments(features, y, who, n_who)
  grid = _weight_grid(step)
  best, consensus = None, None
  for gate, t in thresholds.items():
    g = (gains > t).astype(np.float64)                       # [G]
    coef = np.concatenate([np.ones((len(grid), n_who, 1)),
                           grid[:, None, :] * g[None, :, None]], -1)
    per_rater = _ccc_of_coefficients(coef, mom)
    mean = per_rater.mean(1)
    if consensus is None:
      consensus = per_rater[0]  # the zero weights come first
    m = int(np.flatnonzero(mean >= np.nanmax(mean) - TOLERANCE)[0])
    if best is None or mean[m] > best[0] + TOLERANCE or (
        abs(mean[m] - best[0]) <= TOLERANCE and grid[m].sum()
        < best[1].sum()):
      best = (float(mean[m]), grid[m], gate, t, per_rater[m])
  diff = best[4] - consensus
  se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else np.inf
  c0 = float(consensus.mean())
  if not diff.mean() > EVIDENCE_Z * se:  # not beyond the source's noise
    return np.zeros(len(RULES)), "none", -np.inf, c0, c0
  return best[1], best[2], best[3], c0, best[0]


def tune(h: Heads, z_clips, agg_clips, pair_clip, pair_annotator,
         pair_values, seed: int = 0, sizes=SIZES) -> Blend:
  """Learns the blend on the source's held-out raters (module docstring):
  z_clips [C, D, H] and agg_clips [C, D] of their clips; pair_annotator is
  the rater's head index (their own head is excluded from the candidates);
  pair_values [P, D]. Sizes where fewer than MIN_RATERS raters have more
  ratings than the size are skipped."""
  order = np.argsort(pair_annotator, kind="stable")
  ids, starts, counts = np.unique(pair_annotator[order], return_index=True,
                                  return_counts=True)
  out = []
  tuned = [s for s in sorted(set(int(x) for x in sizes if x > 0))
           if (counts >= s + 2).sum() >= MIN_RATERS]  # >= 2 test ratings
  # Every size padded to one shape (masked raters and clips): one
  # compilation of each batched call instead of one per size.
  shape = (enroll.bucket(max([(counts >= s + 2).sum() for s in tuned],
                             default=1)),
           enroll.bucket(max(tuned, default=1)))
  for s in tuned:
    keep = counts >= s + 2
    rng = np.random.default_rng([seed, s, 0xB1E2D])
    enr, tst, who = [], [], []
    for a, st, c in zip(ids[keep], starts[keep], counts[keep]):
      rows = rng.permutation(order[st:st + c])
      enr.append(rows[:s])
      tst.append(rows[s:])
      who.append(int(a))
    out.append((s, *_tune_size(h, z_clips, agg_clips, pair_clip,
                               pair_values, enr, tst, np.asarray(who), rng,
                               shape)))
  if not out:
    logging.warning("blend: no enrollment size has %d source held-out "
                    "raters with enough ratings; the blended rule is the "
                    "consensus", MIN_RATERS)
    return Blend.consensus()
  blend = Blend(sizes=tuple(o[0] for o in out),
                weights=np.stack([o[1] for o in out]),
                gate=tuple(o[2] for o in out),
                threshold=np.asarray([o[3] for o in out], np.float64),
                raters=tuple(o[4] for o in out),
                ccc=np.asarray([o[5] for o in out], np.float64))
  for s, w, gate, r, c in zip(blend.sizes, blend.weights, blend.gate,
                              blend.raters, blend.ccc):
    logging.info("blend at %d clips (%d source raters): weights %s, gate %s;"
                 " source CCC_ind %.3f (consensus %.3f)", s, r,
                 dict(zip(RULES, np.round(w, 2).tolist())), gate, c[1], c[0])
  return blend


def _tune_size(h, z_clips, agg_clips, pair_clip, pair_values, enr, tst, who,
               rng, shape):
  """One size: (weights, gate, threshold, raters, (ccc consensus, blended))
  from enrollment rows enr and test rows tst of each rater `who`; the
  enrollment sets padded to shape (raters, clips)."""
  n = len(who)
  clips, ratings, mask = (
      np.pad(x, [(0, shape[0] - n), (0, shape[1] - x.shape[1])]
             + [(0, 0)] * (x.ndim - 2))
      for x in enroll.pack([pair_clip[r] for r in enr],
                           [pair_values[r] for r in enr]))

  def own_excluded(y):
    s = np.array(enroll.score_heads(z_clips[clips], y, mask, h.kernel,
                                    h.bias, h.score, h.head_chunk))
    s[np.arange(n), who] = -np.inf
    return s

  agg = agg_clips[clips]
  p = parts(h, z_clips[clips], agg, ratings, mask,
            own_excluded(ratings)).first(n)
  # Chance: each rater's ratings shuffled among their enrollment clips.
  shuffled = ratings.copy()
  for i, r in enumerate(enr):
    shuffled[i, :len(r)] = ratings[i, rng.permutation(len(r))]
  chance = gain(h, agg, shuffled, mask, own_excluded(shuffled))[:n]
  thresholds = dict(zip(GATES, (-np.inf, float(np.median(chance)),
                                 float(np.quantile(chance, 0.9)))))
  tc = np.concatenate([pair_clip[r] for r in tst])
  tw = np.concatenate([np.full(len(r), i) for i, r in enumerate(tst)])
  y = np.concatenate([pair_values[r] for r in tst]).astype(np.float64)
  a, c = (np.asarray(v, np.float64) for v in h.rescale)
  base = a * agg_clips[tc] + c
  head = lambda kb: train.pair_predictions(z_clips, *kb, tc, tw)
  ca, cc = p.calibrated
  cal = ca[tw] * base + cc[tw]
  features = np.stack([base, head(p.mixture) - base, head(p.eb) - base,
                       cal - base], -1)
  w, gate, t, c0, c1 = choose(features, y, tw, p.gain, thresholds)
  return w, gate, t, len(who), (c0, c1)

