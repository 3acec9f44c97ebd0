"""Rating distributions: how a clip's ratings spread, and how to score that.

A predicted distribution is, per clip and dimension, a mixture of Gaussian
kernels each truncated to the rating scale [-1, 1], so it integrates to 1
over the scale: centres [c, P, D] (clipped to the scale), weights [c, P]
(summing to 1) and widths [c, D]. A Mixture produces them clip chunk by
clip chunk (the heads' predictions of a large population are never all in
memory). The individual model's distribution is a KDE: one kernel per
pre-trained head at its prediction (weights: each annotator's share of the
source's training ratings, or uniform), its width chosen on the source's
held-out ratings (`choose_width`); the baselines are one Gaussian (the
aggregate with a global or a per-clip s.d.) or a KDE of the source's
ratings, the same for every clip.

On a Likert scale (Scale.levels) a distribution is discretised: each level
gets the mass of its cell (cut at the midpoints between levels; the end
cells reach the scale's ends), and likelihoods are probabilities of the
rated level. On a continuous scale they are densities per unit of the
[-1, 1] scale.

Metrics (`evaluate`), on clips with >= min_ratings ratings: nll, the mean
negative log-likelihood of their ratings (nats per rating); jsd, the mean
Jensen-Shannon divergence (bits, in [0, 1]) between each clip's predicted
masses and the histogram of its ratings (Likert: its levels; continuous:
`bins` equal bins); sd_ccc, the CCC over clips between the predicted s.d.
and the s.d. of the clip's ratings (ddof 1), i.e. predicting
disagreement; coverage_50 / coverage_90, the share of ratings inside the
central 50% / 90% predicted interval (on a Likert scale the interval's
ends are levels, so coverage is at least the nominal share for a perfectly
calibrated distribution).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
from jax.scipy import special
import numpy as np

from annojax import enroll
from annojax import metrics

METRICS = ("nll", "jsd", "sd_ccc", "coverage_50", "coverage_90")
LOWER_IS_BETTER = ("nll", "jsd")
INTERVALS = {"coverage_50": (0.25, 0.75), "coverage_90": (0.05, 0.95)}
MAX_LEVELS = 21  # more distinct rating values: a continuous scale
FLOOR = 1e-12  # smallest probability a rating is scored with
_CHUNK = 64  # clips per jit'd call
_FINE = 400  # cells of the grid continuous quantiles are read from


@dataclasses.dataclass(frozen=True)
class Scale:
  """The rating scale on [-1, 1]: Likert levels, or None (continuous)."""
  levels: np.ndarray | None = None

  @property
  def likert(self) -> bool:
    return self.levels is not None

  def edges(self) -> np.ndarray:
    """The Likert cells' edges: -1, the midpoints between levels, 1."""
    mid = (self.levels[1:] + self.levels[:-1]) / 2
    return np.concatenate([[-1.0], mid, [1.0]])

  def describe(self) -> str:
    return (f"Likert, {len(self.levels)} levels" if self.likert else
            "continuous")

  def to_json(self):
    return None if self.levels is None else [float(v) for v in self.levels]


def detect_scale(values, max_levels: int = MAX_LEVELS) -> Scale:
  """Likert where the ratings ([-1, 1]) take at most max_levels values, all
  on an evenly spaced grid from -1 to 1; else continuous."""
  u = np.unique(np.round(np.asarray(values, np.float64).ravel(), 6))
  if len(u) < 2 or len(u) > max_levels:
    return Scale()
  n = int(round(2.0 / np.diff(u).min())) + 1
  grid = np.linspace(-1.0, 1.0, n)
  if n > max_levels or not np.all(np.abs(grid[np.searchsorted(
      grid, u - 1e-4).clip(0, n - 1)] - u) < 1e-4):
    return Scale()
  return Scale(levels=grid)


@dataclasses.dataclass(frozen=True)
class Mixture:
  """A distribution per clip: chunk(idx) -> (centres [c, P, D], weights
  [c, P], widths [c, D]) of clips idx."""
  num_clips: int
  chunk: Callable
  num_kernels: int = 1

  def chunk_size(self, cells: int = 1) -> int:
    """Clips per call so that one call holds ~4M kernel x cell values."""
    return int(np.clip((1 << 22) // max(self.num_kernels * cells, 1), 1,
                       _CHUNK))

  @staticmethod
  def of(centres, weights, widths, num_clips: int | None = None
         ) -> "Mixture":
    """From arrays over all clips; a leading axis of 1 (or a weights [P],
    widths [D]) is shared by every clip (num_clips: how many, where none
    has more)."""
    centres = np.clip(np.asarray(centres, np.float32), -1.0, 1.0)
    weights = np.asarray(weights, np.float32)
    weights = weights.reshape((1,) * (weights.ndim < 2) + weights.shape)
    weights = weights / weights.sum(1, keepdims=True)
    widths = np.asarray(widths, np.float32)
    if widths.ndim < 2:  # one width per dimension (or one for all)
      widths = np.broadcast_to(widths, centres.shape[2:])[None]
    n = num_clips or max(len(centres), len(weights), len(widths))

    def pick(x, idx):
      return x[idx] if len(x) > 1 else np.broadcast_to(
          x, (len(idx),) + x.shape[1:])
    return Mixture(n, lambda idx: (pick(centres, idx), pick(weights, idx),
                                   pick(widths, idx)), centres.shape[1])

  @staticmethod
  def population(outputs: Callable, num_clips: int, weights, widths
                 ) -> "Mixture":
    """A KDE of a population's predictions: one kernel per annotator at
    outputs(idx) [c, A, D] (their predictions on clips idx), weights [A],
    widths [D]."""
    w = np.asarray(weights, np.float64)
    w = (w / w.sum()).astype(np.float32)[None]
    widths = np.asarray(widths, np.float32)[None]

    def chunk(idx):
      return (np.clip(outputs(idx), -1.0, 1.0),
              np.broadcast_to(w, (len(idx), w.shape[1])),
              np.broadcast_to(widths, (len(idx), widths.shape[1])))
    return Mixture(num_clips, chunk, w.shape[1])

  @staticmethod
  def heads(z, kernel, bias, weights, widths, shrink=1.0) -> "Mixture":
    """The KDE of linear heads (kernel [A, D, H], bias [A, D]) on clips
    with trunk features z [C, D, H]: one kernel per head at its prediction,
    moved toward the heads' weighted mean by shrink [D] (1: not at all; a
    head fit to few ratings is partly noise, which widens the spread)."""
    w = np.asarray(weights, np.float64)
    w = (w / w.sum()).astype(np.float32)
    shrink = np.asarray(shrink, np.float32)

    def outputs(idx):
      pred = np.einsum("cdh,adh->cad", z[idx], kernel) + bias
      mean = np.einsum("cad,a->cd", pred, w)[:, None]
      return mean + shrink * (pred - mean)
    return Mixture.population(outputs, len(z), weights, widths)

  def chunks(self, cells: int = 1):
    """(idx, centres, weights, widths) over all clips, in order, in chunks
    sized for `cells` values per kernel; every chunk's arrays have the
    first chunk's rows (the last padded by repeating its last clip: one jit
    shape), idx the real clips."""
    size = min(self.chunk_size(cells), self.num_clips)
    for s in range(0, self.num_clips, size):
      idx = np.arange(s, min(s + size, self.num_clips))
      yield (idx, *self.chunk(np.pad(idx, (0, size - len(idx)), mode="edge")))


def _log_z(mu, s):
  """log of each kernel's mass on [-1, 1] (mu inside the scale: >= log
  ~0.5)."""
  return jnp.log(_mass(-1.0, 1.0, mu, s))


def _mass(lo, hi, mu, s):
  """Gaussian mass N(mu, s) on [lo, hi], accurate in both tails."""
  a, b = (lo - mu) / s, (hi - mu) / s
  return jnp.where(a > 0, special.ndtr(-a) - special.ndtr(-b),
                   special.ndtr(b) - special.ndtr(a))


@jax.jit
def _cells(edges, mu, w, s):
  """Masses of cells [E - 1] between edges: mu [c, P, D], w [c, P],
  s [c, D] -> [c, D, E - 1]."""
  mu, s = mu[..., None], s[:, None, :, None]
  m = _mass(edges[:-1], edges[1:], mu, s) / jnp.exp(_log_z(mu, s))
  return jnp.einsum("cpde,cp->cde", m, w)


@jax.jit
def _log_pdf(y, mu, w, s):
  """log density at y [r, D] of each rating's mixture (mu [r, P, D],
  w [r, P], s [r, D])."""
  s = s[:, None]
  log_k = (-0.5 * ((y[:, None] - mu) / s) ** 2 - jnp.log(s)
           - 0.5 * jnp.log(2 * jnp.pi) - _log_z(mu, s))
  return special.logsumexp(log_k + jnp.log(w)[..., None], axis=1)


@jax.jit
def _moments(mu, w, s):
  """Mean and variance [c, D] of the (continuous) truncated mixture."""
  s = s[:, None]
  a, b = (-1.0 - mu) / s, (1.0 - mu) / s
  z = jnp.exp(_log_z(mu, s))
  pa, pb = jnp.exp(-0.5 * a ** 2), jnp.exp(-0.5 * b ** 2)
  pa, pb = pa / jnp.sqrt(2 * jnp.pi), pb / jnp.sqrt(2 * jnp.pi)
  m = mu + s * (pa - pb) / z
  v = s ** 2 * (1 + (a * pa - b * pb) / z - ((pa - pb) / z) ** 2)
  mean = jnp.einsum("cpd,cp->cd", m, w)
  second = jnp.einsum("cpd,cp->cd", v + m ** 2, w)
  return mean, jnp.maximum(second - mean ** 2, 0.0)


def masses(mix: Mixture, edges) -> np.ndarray:
  """Each clip's mass in the cells between edges -> [C, D, E - 1]."""
  edges = jnp.asarray(edges, jnp.float32)
  return np.concatenate([np.asarray(_cells(edges, *p), np.float64)[:len(i)]
                         for i, *p in mix.chunks(len(edges))])


def log_likelihood(mix: Mixture, scale: Scale, rating_clip, y
                   ) -> np.ndarray:
  """log p of each rating y [R, D] of clip rating_clip [R] under its clip's
  distribution -> [R, D]: the probability of the rated level on a Likert
  scale (floored at FLOOR), else the density."""
  rating_clip = np.asarray(rating_clip)
  y = np.asarray(y, np.float32)
  out = np.empty(y.shape, np.float64)
  order = np.argsort(rating_clip, kind="stable")
  bounds = np.searchsorted(rating_clip[order], np.arange(mix.num_clips + 1))
  if scale.likert:
    level = np.abs(y[..., None] - scale.levels).argmin(-1)  # [R, D]
  cells = len(scale.levels) + 1 if scale.likert else 16
  for idx, mu, w, s in mix.chunks(cells):
    rows = order[bounds[idx[0]]:bounds[idx[-1] + 1]]
    if not len(rows):
      continue
    local = rating_clip[rows] - idx[0]
    if scale.likert:
      p = masses_of(mu, w, s, scale.edges())  # [c, D, L]
      d = np.arange(y.shape[1])
      out[rows] = np.log(np.maximum(
          p[local[:, None], d, level[rows]], FLOOR))
      continue
    n = enroll.bucket(len(rows), 16)  # padded: a few jit shapes
    take = np.concatenate([local, np.zeros(n - len(rows), int)])
    yy = np.concatenate([y[rows], np.zeros((n - len(rows), y.shape[1]),
                                           np.float32)])
    out[rows] = np.asarray(_log_pdf(yy, mu[take], w[take], s[take]))[
        :len(rows)]
  return out


def masses_of(mu, w, s, edges) -> np.ndarray:
  return np.asarray(_cells(jnp.asarray(edges, jnp.float32), mu, w, s),
                    np.float64)


def spread(mix: Mixture, scale: Scale) -> tuple[np.ndarray, np.ndarray]:
  """Each clip's mean and s.d. [C, D] (of the Likert levels' masses on a
  Likert scale)."""
  means, sds = [], []
  for idx, mu, w, s in mix.chunks(len(scale.levels) + 1 if scale.likert
                                  else 4):
    if scale.likert:
      p = masses_of(mu, w, s, scale.edges())
      m = (p * scale.levels).sum(-1)
      v = (p * scale.levels ** 2).sum(-1) - m ** 2
    else:
      m, v = (np.asarray(x, np.float64) for x in _moments(mu, w, s))
    means.append(m[:len(idx)])
    sds.append(np.sqrt(np.maximum(v, 0.0))[:len(idx)])
  return np.concatenate(means), np.concatenate(sds)


def quantiles(mix: Mixture, scale: Scale, qs) -> np.ndarray:
  """Each clip's quantiles qs -> [C, D, Q]: the lowest level whose
  cumulative mass reaches q (Likert), else read from the CDF on a fine
  grid (400 cells, linear within a cell)."""
  qs = np.asarray(qs, np.float64)
  edges = scale.edges() if scale.likert else np.linspace(-1, 1, _FINE + 1)
  out = []
  for idx, mu, w, s in mix.chunks(len(edges)):
    cdf = np.cumsum(masses_of(mu, w, s, edges), -1)[:len(idx)]
    cdf /= cdf[..., -1:]
    j = np.minimum((cdf[..., None, :] < qs[:, None] - 1e-9).sum(-1),
                   len(edges) - 2)  # [c, D, Q]: the cell reaching q
    if scale.likert:
      out.append(scale.levels[j])
      continue
    below = np.where(j > 0, np.take_along_axis(
        cdf, np.maximum(j - 1, 0), -1), 0.0)
    cell = np.take_along_axis(cdf, j, -1) - below
    frac = np.clip((qs - below) / np.where(cell > 0, cell, 1), 0, 1)
    out.append(edges[j] + frac * (edges[j + 1] - edges[j]))
  return np.concatenate(out)


def histogram_edges(scale: Scale, bins: int) -> np.ndarray:
  """The cells JSD compares: the Likert levels' cells, else `bins` equal
  bins over [-1, 1]."""
  return scale.edges() if scale.likert else np.linspace(-1, 1, bins + 1)


def empirical_histogram(rating_clip, y, num_clips: int, edges
                        ) -> np.ndarray:
  """Each clip's share of its ratings in each cell -> [C, D, E - 1]."""
  y = np.asarray(y, np.float64)
  cell = np.clip(np.searchsorted(edges, y, side="right") - 1, 0,
                 len(edges) - 2)
  h = np.zeros((num_clips, y.shape[1], len(edges) - 1))
  for d in range(y.shape[1]):
    np.add.at(h, (rating_clip, d, cell[:, d]), 1.0)
  return h / np.maximum(h.sum(-1, keepdims=True), 1.0)


def jsd(p, q) -> np.ndarray:
  """Jensen-Shannon divergence (bits) between masses p, q over the last
  axis."""
  p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
  m = (p + q) / 2

  def kl(a):
    with np.errstate(divide="ignore", invalid="ignore"):
      return np.where(a > 0, a * np.log2(a / np.where(m > 0, m, 1)), 0).sum(
          -1)
  return (kl(p) + kl(q)) / 2


def clip_sd(rating_clip, y, num_clips: int) -> tuple[np.ndarray, np.ndarray]:
  """Each clip's rating count [C] and sample s.d. [C, D] (ddof 1; NaN
  below 2 ratings)."""
  y = np.asarray(y, np.float64)
  n = np.bincount(rating_clip, minlength=num_clips).astype(np.float64)
  s1 = np.stack([np.bincount(rating_clip, y[:, d], num_clips)
                 for d in range(y.shape[1])], 1)
  s2 = np.stack([np.bincount(rating_clip, y[:, d] ** 2, num_clips)
                 for d in range(y.shape[1])], 1)
  with np.errstate(divide="ignore", invalid="ignore"):
    var = (s2 - s1 ** 2 / n[:, None]) / (n[:, None] - 1)
  return n, np.where(n[:, None] >= 2, np.sqrt(np.maximum(var, 0)), np.nan)


def evaluate(mix: Mixture, scale: Scale, rating_clip, y, bins: int = 10
             ) -> dict[str, list[float]]:
  """The metrics (module doc) of a distribution per clip on every rating
  given (callers pass the ratings of the clips that count) -> {metric:
  [one value per dimension]}."""
  rating_clip = np.asarray(rating_clip)
  y = np.asarray(y, np.float64)
  c = mix.num_clips
  n, sd_true = clip_sd(rating_clip, y, c)
  rated = n > 0
  out = {"nll": -log_likelihood(mix, scale, rating_clip, y).mean(0)}
  edges = histogram_edges(scale, bins)
  out["jsd"] = jsd(masses(mix, edges), empirical_histogram(
      rating_clip, y, c, edges))[rated].mean(0)
  _, sd_pred = spread(mix, scale)
  two = n >= 2
  out["sd_ccc"] = metrics.ccc(sd_pred[two], sd_true[two])
  qs = sorted({v for p in INTERVALS.values() for v in p})
  q = quantiles(mix, scale, qs)
  for name, (lo, hi) in INTERVALS.items():
    a, b = q[rating_clip, :, qs.index(lo)], q[rating_clip, :, qs.index(hi)]
    out[name] = ((y >= a - 1e-6) & (y <= b + 1e-6)).mean(0)
  return {k: [float(v) for v in np.atleast_1d(val)] for k, val in
          out.items()}


def choose_width(make: Callable[[np.ndarray], Mixture], scale: Scale,
                 rating_clip, y, widths) -> tuple[np.ndarray, np.ndarray]:
  """The kernel width per dimension with the lowest NLL of ratings y
  (make(widths [D]) -> the mixture with those widths) -> (widths [D],
  NLL [len(widths), D] of every candidate)."""
  widths = np.asarray(widths, np.float64)
  nll = np.stack([-log_likelihood(make(np.full(y.shape[1], h)), scale,
                                  rating_clip, y).mean(0) for h in widths])
  return widths[nll.argmin(0)], nll


def choose_width_and_shrink(make, scale: Scale, rating_clip, y, widths,
                            shrinks) -> dict:
  """choose_width for each shrink (make(widths [D], shrink) -> mixture),
  the pair with the lowest NLL per dimension -> {width [D], shrink [D],
  nll [D] (the chosen pair's)}."""
  best = None
  for k in shrinks:
    width, nll = choose_width(lambda h, k=k: make(h, k), scale, rating_clip,
                              y, widths)
    got = (nll.min(0), width, np.full(len(width), float(k)))
    if best is None:
      best = got
    else:
      better = got[0] < best[0]
      best = tuple(np.where(better, g, b) for g, b in zip(got, best))
  return {"width": best[1], "shrink": best[2], "nll": best[0]}


def annotator_weights(kind: str, pair_annotator, num_annotators: int
                      ) -> np.ndarray:
  """Each annotator's weight in a KDE of their heads [A]: "activity", their
  number of ratings (pair_annotator: the source's training ratings' rater);
  "uniform", 1."""
  if kind == "uniform":
    return np.ones(num_annotators)
  if kind != "activity":
    raise ValueError(f"config.eval.distribution.weights: {kind!r} is not "
                     "'activity' or 'uniform'")
  return np.bincount(pair_annotator, minlength=num_annotators).astype(
      np.float64)


def residual_sd(rating_clip, y, centre) -> np.ndarray:
  """One s.d. [D]: the root mean square of ratings y [R, D] about their
  clip's centre [C, D] (the aggregate's prediction)."""
  r = np.asarray(y, np.float64) - np.asarray(centre, np.float64)[rating_clip]
  return np.sqrt((r ** 2).mean(0))


@dataclasses.dataclass(frozen=True)
class SpreadHead:
  """A linear output per dimension predicting a clip's rating s.d. from
  features z [C, D, H]: kernel [D, H], bias [D]; floor: the smallest s.d.
  it predicts."""
  kernel: np.ndarray
  bias: np.ndarray
  floor: float = 0.01

  def __call__(self, z) -> np.ndarray:
    return np.maximum(np.einsum("cdh,dh->cd", z, self.kernel) + self.bias,
                      self.floor)


def fit_spread_head(z, rating_clip, y, z_val, val_clip, y_val,
                    ridges=(1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)
                    ) -> tuple[SpreadHead, float]:
  """Ridge regression of each clip's rating s.d. (ddof 1; clips with >= 2
  ratings, weighted by ratings - 1) on its features z [C, D, H], the ridge
  (per feature, on standardised features' scale) chosen by the weighted
  squared error on the validation clips -> (head, ridge)."""
  def target(zz, clip, yy):
    n, sd = clip_sd(clip, yy, len(zz))
    keep = n >= 2
    return zz[keep].astype(np.float64), sd[keep], n[keep] - 1

  x, t, w = target(z, rating_clip, y)
  xv, tv, wv = target(z_val, val_clip, y_val)
  best = None
  for lam in ridges:
    kernel, bias = [], []
    for d in range(x.shape[1]):
      xd = x[:, d]
      mu = np.average(xd, 0, w)
      xc = xd - mu
      a = (xc * w[:, None]).T @ xc
      a[np.diag_indices_from(a)] += lam * np.trace(a) / len(a)
      k = np.linalg.solve(a, (xc * w[:, None]).T @ (t[:, d] - np.average(
          t[:, d], weights=w)))
      kernel.append(k)
      bias.append(np.average(t[:, d], weights=w) - mu @ k)
    head = SpreadHead(np.stack(kernel).astype(np.float32),
                      np.asarray(bias, np.float32))
    err = float((wv[:, None] * (head(xv) - tv) ** 2).sum()) if len(
        xv) else 0.0
    if best is None or err < best[0]:
      best = (err, head, lam)
  return best[1], best[2]
