"""Enrollment: map each new annotator to the most similar pre-trained head(s).

For N new annotators, each with up to K enrollment clips (padded + masked),
`score_heads` evaluates ALL A pre-trained heads in one jit-compiled call:

  predictions [N, A, K, D] = z [N, K, D, H] . kernel [A, D, H] + bias [A, D]
  score [N, A]             = sum_d CCC_d (or Pearson, or -MSE)

computed from per-annotator sufficient statistics (see _score_chunk), so the
only [N, A, K, D]-sized work is one matmul and a sum of squares.

Heads are processed in chunks inside the compiled call (lax.map), so memory
is bounded by N * chunk * K * D rather than N * A * K * D: A = 20,000 heads
and N = 1,000 annotators fit in a few GiB. The chunk is sized to the device
(chunk_size): on an accelerator all heads in one chunk where its memory
holds them (sequential chunks cost time there), on a CPU at most 1,024.
The matmuls can run with bfloat16 inputs accumulated in float32
(precision="bfloat16", for accelerators; the CCC statistics stay float32). An annotator with exactly one
enrollment clip is scored by the negative absolute error (CCC is undefined on
one point), per METHOD.md. Constant enrollment ratings in a dimension (same
value on every clip) leave CCC/Pearson 0 for every head there, so the choice
would fall to float noise; that dimension's term becomes the negative RMSE
of the head on those clips instead (the head closest to that constant wins),
and the mapping flags it (Mapping.constant).

N and K are padded up to powers of two (masked rows / clips), so the
protocol's many (fold, enrollment size) calls share a few compilations.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from annojax import metrics

SCORES = ("ccc", "pearson", "mse", "loglik", "agreement")
# Scores for categorical heads (D = classes, outputs = logits, ratings =
# one-hot on [-1, 1]): mean log-likelihood of the annotator's choices, or the
# fraction of clips where the head's top class is the annotator's.
CATEGORICAL_SCORES = ("loglik", "agreement")
# Budget for one chunk's predictions, in floats (~512 MiB of float32),
# where the device does not say how much memory it has (CPU).
_CHUNK_FLOATS = 2 ** 27
# head_chunk = 0 (auto): on a CPU at most this many heads per chunk (the
# earlier default, measured on 2 cores: bench/README.md); on an accelerator
# no cap but its memory (device_budget), so all heads go in one chunk
# where they fit.
CPU_HEAD_CHUNK = 1024
# Matmul precisions of the score: float32, or bfloat16 inputs with float32
# accumulation (the CCC statistics stay float32; for accelerators).
PRECISIONS = ("float32", "bfloat16")
# Enrollment ratings whose variance is below this in a dimension count as
# constant there (see the module docstring).
CONSTANT_VAR = 1e-10


def bucket(n: int, smallest: int = 4) -> int:
  """n rounded up to a power of two (>= smallest): padded shapes."""
  return max(smallest, 1 << max(0, int(n) - 1).bit_length())


def pad_to_buckets(z, ratings, mask):
  """Pads enrollment sets z [N, K, D, H], ratings [N, K, D], mask [N, K]
  with masked annotators and clips up to N, K = bucket(N), bucket(K)."""
  n, k = np.shape(mask)
  pn, pk = bucket(n) - n, bucket(k) - k

  def pad(a):
    a = np.asarray(a, np.float32)
    return np.pad(a, [(0, pn), (0, pk)] + [(0, 0)] * (a.ndim - 2))
  return pad(z), pad(ratings), pad(mask)


class EnrollmentError(ValueError):
  """Bad enrollment input; names the annotator."""


def _annotator_stats(z, y, mask):
  """Per new annotator, what every head's score needs (no head involved).

  z [N, K, D, H], y [N, K, D], mask [N, K] ->
    dz  [N, K, D, H]  masked, centred features (padding rows are 0)
    zbar [N, D, H], zy [N, D, H] (= mean_k dz * dy), my, vy [N, D], n [N, 1].
  """
  cnt = mask.sum(1)
  n = jnp.maximum(cnt, 1.0)[:, None]
  m = mask[:, :, None]
  zbar = (m[..., None] * z).sum(1) / n[..., None]
  my = (m * y).sum(1) / n
  dz = m[..., None] * (z - zbar[:, None])
  dy = m * (y - my[:, None])
  zy = jnp.einsum("nkdh,nkd->ndh", dz, dy) / n[..., None]
  vy = (dy * dy).sum(1) / n
  return dz, zbar, zy, my, vy, n, cnt


def _matmul(spec, a, b, low: bool):
  """einsum in float32, or with bfloat16 inputs accumulated in float32."""
  if not low:
    return jnp.einsum(spec, a, b)
  return jnp.einsum(spec, a.astype(jnp.bfloat16), b.astype(jnp.bfloat16),
                    preferred_element_type=jnp.float32)


def _score_chunk(stats, kernel, bias, score, low=False):
  """Scores one chunk of heads -> [N, chunk].

  A head's predictions are linear in z, so its mean and its covariance with
  the ratings come from [N, D, H] statistics by one small matmul each; only
  the prediction variance needs the per-clip products q = dz . w, one
  [N, chunk, K, D] matmul whose squares are summed over clips.
  """
  dz, zbar, zy, my, vy, n, cnt = stats
  mp = _matmul("ndh,adh->nad", zbar, kernel, low) + bias[None]
  cov = _matmul("ndh,adh->nad", zy, kernel, low)
  q = _matmul("nkdh,adh->nakd", dz, kernel, low)
  vp = (q * q).sum(2) / n[..., None]
  my, vy = my[:, None], vy[:, None]
  # mse = var_p + var_y - 2 cov + (mean_p - mean_y)^2
  mse = jnp.maximum(vp + vy - 2 * cov + (mp - my) ** 2, 0.0)
  if score == "ccc":
    s = 2 * cov / (vp + vy + (mp - my) ** 2 + 1e-8)
  elif score == "pearson":
    s = cov / jnp.sqrt(vp * vy + 1e-12)
  else:  # higher is better
    s = -mse
  if score in ("ccc", "pearson"):  # constant ratings: -RMSE in that dim
    s = jnp.where(vy < CONSTANT_VAR, -jnp.sqrt(mse + 1e-12), s)
  s = s.sum(-1)
  # One clip: CCC/Pearson are undefined; smallest absolute error wins (with
  # one clip, the mean is the value).
  one = -jnp.abs(mp - my).sum(-1)
  return jnp.where((cnt == 1)[:, None], one, s)


def _score_chunk_categorical(z, y, mask, kernel, bias, score):
  """[N, chunk] log-likelihood or agreement of categorical heads."""
  logits = jnp.einsum("nkdh,adh->nakd", z, kernel) + bias[None, :, None]
  target = (y[:, None] + 1.0) / 2.0  # [N, 1, K, C]
  n = jnp.maximum(mask.sum(1), 1.0)[:, None]
  if score == "loglik":
    per_clip = (target * jax.nn.log_softmax(logits, -1)).sum(-1)
  else:
    per_clip = (logits.argmax(-1) == target.argmax(-1)).astype(jnp.float32)
  return (mask[:, None] * per_clip).sum(-1) / n


@functools.partial(jax.jit, static_argnames=("score", "chunk", "low"))
def _score_all(z, y, mask, kernel, bias, *, score, chunk, low=False):
  a = kernel.shape[0]
  pad = (-a) % chunk
  kernel = jnp.pad(kernel, ((0, pad), (0, 0), (0, 0)))
  bias = jnp.pad(bias, ((0, pad), (0, 0)))
  kc = kernel.reshape((-1, chunk) + kernel.shape[1:])
  bc = bias.reshape((-1, chunk) + bias.shape[1:])
  if score in CATEGORICAL_SCORES:
    fn = lambda kb: _score_chunk_categorical(z, y, mask, kb[0], kb[1], score)
  else:
    stats = _annotator_stats(z, y, mask)
    fn = lambda kb: _score_chunk(stats, kb[0], kb[1], score, low)
  out = jax.lax.map(fn, (kc, bc))
  # [n_chunks, N, chunk] -> [N, A]
  return jnp.moveaxis(out, 0, 1).reshape(z.shape[0], -1)[:, :a]


def device_budget() -> int:
  """Floats one chunk's [N, chunk, K, D] predictions may take: an eighth of
  the accelerator's memory (its memory_stats' bytes_limit; the chunk's
  other arrays are of the same order), or _CHUNK_FLOATS where the device
  does not say (CPU)."""
  try:
    stats = jax.local_devices()[0].memory_stats() or {}
  except Exception:  # pylint: disable=broad-except
    stats = {}
  limit = stats.get("bytes_limit")
  return max(_CHUNK_FLOATS, int(limit) // 32) if limit else _CHUNK_FLOATS


def chunk_size(n: int, k: int, d: int, a: int, head_chunk: int = 0
               ) -> int:
  """Heads per chunk: <= head_chunk (0: auto, CPU_HEAD_CHUNK on a CPU and
  no cap on an accelerator), within the device's memory budget, and spread
  evenly over the chunks so little padding is computed."""
  if head_chunk <= 0:
    head_chunk = (CPU_HEAD_CHUNK if jax.default_backend() == "cpu"
                  else a)
  cap = int(max(1, min(head_chunk, device_budget() // max(1, n * k * d),
                       a)))
  n_chunks = -(-a // cap)
  return -(-a // n_chunks)


def score_heads(z, ratings, mask, kernel, bias, score: str = "ccc",
                head_chunk: int = 0, pad: bool = True,
                precision: str = "float32") -> jax.Array:
  """[N, A] similarity of every head to every new annotator.

  Args:
    z: [N, K, D, H] trunk features of each annotator's enrollment clips.
    ratings: [N, K, D] their ratings (padding arbitrary, but finite).
    mask: [N, K] 1 for a real enrollment clip, 0 for padding.
    kernel: [A, D, H] head weights; bias: [A, D].
    score: "ccc" (sum of per-dimension CCC), "pearson" or "mse" (negative);
      for categorical heads "loglik" or "agreement".
    head_chunk: heads per chunk inside the compiled call (0: sized to the
      device, chunk_size).
    pad: pad N and K up to powers of two (fewer compilations).
    precision: the matmuls' ("float32", or "bfloat16" inputs accumulated
      in float32 for accelerators; the CCC statistics stay float32;
      dimensional scores only).
  """
  if score not in SCORES:
    raise ValueError(f"unknown score {score!r}; one of {SCORES}")
  if precision not in PRECISIONS:
    raise ValueError(f"unknown precision {precision!r}; one of "
                     f"{PRECISIONS}")
  n = len(ratings)
  if pad:  # masked padding: a few shapes, a few compilations
    z, ratings, mask = pad_to_buckets(z, ratings, mask)
  out = _score_all(jnp.asarray(z, jnp.float32),
                   jnp.asarray(ratings, jnp.float32),
                   jnp.asarray(mask, jnp.float32),
                   jnp.asarray(kernel), jnp.asarray(bias), score=score,
                   chunk=chunk_size(*np.shape(ratings), len(kernel),
                                    head_chunk),
                   low=precision == "bfloat16")
  return out[:n]


@dataclasses.dataclass(frozen=True)
class Mapping:
  """Selected heads per new annotator.

  heads/weights/scores: [N, k]; margin: [N] best minus second-best score, a
  confidence signal (small margin = several heads fit about equally well).
  constant: [N, D] the annotator's enrollment ratings are constant in that
  dimension (scored there by RMSE, not CCC; see the module docstring).
  """
  heads: np.ndarray
  weights: np.ndarray
  scores: np.ndarray
  margin: np.ndarray
  constant: np.ndarray | None = None

  def head_params(self, kernel, bias) -> tuple[np.ndarray, np.ndarray]:
    """The new annotators' heads [N, D, H], [N, D] (see combine_heads)."""
    return combine_heads(self.heads, self.weights, kernel, bias)


def combine_heads(heads, weights, kernel, bias
                  ) -> tuple[np.ndarray, np.ndarray]:
  """Weighted mean of selected heads: heads/weights [..., k] -> kernel
  [..., D, H], bias [..., D]. Heads are linear in z, so averaging their
  weights = averaging their predictions."""
  weights = np.asarray(weights)
  return ((weights[..., None, None] * kernel[heads]).sum(-3),
          (weights[..., None] * bias[heads]).sum(-2))


def select(scores, top_k: int = 1, weighted: bool = False) -> Mapping:
  """Top-k heads per row of an [N, A] score matrix."""
  scores = np.asarray(scores)
  top_k = min(top_k, scores.shape[1])
  vals, idx = jax.lax.top_k(jnp.asarray(scores), max(top_k, 2)
                            if scores.shape[1] > 1 else 1)
  vals, idx = np.asarray(vals), np.asarray(idx)
  margin = vals[:, 0] - vals[:, 1] if vals.shape[1] > 1 else np.zeros(
      len(vals))
  vals, idx = vals[:, :top_k], idx[:, :top_k]
  if weighted and top_k > 1:
    w = np.maximum(vals - vals.min(1, keepdims=True), 0) + 1e-6
  else:
    w = np.ones_like(vals)
  return Mapping(heads=idx, weights=w / w.sum(1, keepdims=True), scores=vals,
                 margin=margin)


def pack(clip_lists, ratings_lists, names=None):
  """Pads per-annotator enrollment sets -> (clip idx [N, K], ratings, mask).

  Raises EnrollmentError naming the annotator on an empty set or a
  non-finite rating.
  """
  names = names if names is not None else list(range(len(clip_lists)))
  sizes = [len(c) for c in clip_lists]
  for name, s, r in zip(names, sizes, ratings_lists):
    if s == 0:
      raise EnrollmentError(f"annotator {str(name)!r} has no enrollment clips")
    if not np.isfinite(np.asarray(r)).all():
      raise EnrollmentError(f"annotator {str(name)!r} has a non-finite "
                            "enrollment rating")
  k = max(sizes)
  d = np.asarray(ratings_lists[0]).reshape(sizes[0], -1).shape[1]
  clips = np.zeros((len(sizes), k), np.int64)
  ratings = np.zeros((len(sizes), k, d), np.float32)
  mask = np.zeros((len(sizes), k), np.float32)
  for i, (c, r) in enumerate(zip(clip_lists, ratings_lists)):
    clips[i, :len(c)] = c
    ratings[i, :len(c)] = np.asarray(r).reshape(len(c), d)
    mask[i, :len(c)] = 1
  return clips, ratings, mask


def enroll(z_clips, clip_lists, ratings_lists, kernel, bias, *,
           score="ccc", top_k=1, weighted=False, head_chunk=0,
           names=None, precision="float32") -> Mapping:
  """Maps new annotators to heads from their enrollment clips.

  Args:
    z_clips: [C, D, H] trunk features of all clips enrollment may refer to.
    clip_lists: per annotator, indices into z_clips of their enrollment clips.
    ratings_lists: per annotator, [k_i, D] ratings of those clips.
    kernel, bias: all pre-trained heads.
    names: annotator ids for error messages.
  """
  scores, _, ratings, mask = enrollment_scores(
      z_clips, clip_lists, ratings_lists, kernel, bias, score=score,
      head_chunk=head_chunk, names=names, precision=precision)
  return mapping(scores, ratings, mask, top_k, weighted)


def enrollment_scores(z_clips, clip_lists, ratings_lists, kernel, bias, *,
                      score="ccc", head_chunk=0, names=None,
                      precision="float32"):
  """(scores [N, A], clip idx [N, K], ratings [N, K, D], mask [N, K]): every
  head scored on each new annotator's enrollment clips (one batched call),
  with the packed sets, for enrollment rules beyond the top-k (posterior.py).
  """
  clips, ratings, mask = pack(clip_lists, ratings_lists, names)
  scores = score_heads(z_clips[clips], ratings, mask, kernel, bias, score,
                       head_chunk, precision=precision)
  return scores, clips, ratings, mask


def mapping(scores, ratings, mask, top_k=1, weighted=False) -> Mapping:
  """The top-k Mapping of [N, A] scores, constant dimensions flagged."""
  return dataclasses.replace(select(scores, top_k, weighted),
                             constant=constant_dims(ratings, mask))


def constant_dims(ratings, mask) -> np.ndarray:
  """[N, D]: an annotator's (>= 2) enrollment ratings are all equal in d."""
  n, _, var = metrics.masked_moments(ratings, mask)
  return (var < CONSTANT_VAR) & (n >= 2)
