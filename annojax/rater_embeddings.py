"""Enrollment for the embedding families (models.py: lowrank, embedding).

A pre-trained annotator is an embedding e_a [r]; a prediction is
apply(features(z), e) (models.EMBEDDING_FAMILIES). For N new annotators,
each with up to K enrollment clips (padded + masked), in one batched jit
call each:

  copy   score every pre-trained embedding on the enrollment clips by the
         same score as the heads (enroll.py: sum of per-dimension CCC, one
         clip by its absolute error, a constant dimension by its RMSE) and
         copy the best: the paper's rule, unchanged.
  fit    a new embedding fit to the k ratings: the MAP under a Gaussian
         prior, the pre-trained embeddings' mean and covariance, with
         Gaussian rating noise (variance `noise`, the family model's
         residual on the source's held-out clips). In closed form for the
         low-rank heads (predictions are linear in e); a fixed number of
         batched Adam steps from the prior mean for the nonlinear decoder.

The rows mean_listener (LDNet's virtual listener, trained on each clip's
mean rating) and all_listeners (the mean of every pre-trained annotator's
prediction) need no enrollment.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from annojax import enroll
from annojax import models

# Budget for one chunk of the copy search's decoder activations, in floats.
_CHUNK_FLOATS = 2 ** 26


def family(heads: dict) -> str:
  """lowrank or embedding, from a heads module's params."""
  return models.family_of_params({"heads": heads})


def table(heads: dict) -> np.ndarray:
  """The pre-trained embeddings [A, r]."""
  return np.asarray(heads["stack"]["embedding"])


def shared(heads: dict) -> dict:
  """The heads' parameters other than the embedding table (jnp)."""
  return {k: jnp.asarray(v) for k, v in heads.items() if k != "stack"}


@functools.partial(jax.jit, static_argnums=0)
def _apply(fam, p, z, e):
  features, apply = models.EMBEDDING_FAMILIES[fam]
  return apply(p, features(p, z), e)


def outputs_at(heads: dict, z, pair_clip, e, batch: int = 8192
               ) -> np.ndarray:
  """The embedding e[i] [P, r] on clip pair_clip[i] (z [C, D, H]) ->
  [P, D], in fixed-size jit'd chunks."""
  fam, p = family(heads), shared(heads)
  e = np.asarray(e, np.float32)
  out = []
  for s in range(0, len(pair_clip), batch):
    c = pair_clip[s:s + batch]
    pad = batch - len(c) if len(pair_clip) > batch else 0
    zc = np.pad(z[c], ((0, pad),) + ((0, 0),) * (z.ndim - 1))
    ec = np.pad(e[s:s + batch], ((0, pad), (0, 0)))
    out.append(np.asarray(_apply(fam, p, zc, ec))[:len(c)])
  if not out:
    return np.zeros((0, z.shape[1]), np.float32)
  return np.concatenate(out)


def pair_outputs(heads: dict, z, pair_clip, pair_head) -> np.ndarray:
  """Annotator pair_head[i]'s prediction on clip pair_clip[i] -> [P, D]."""
  return outputs_at(heads, z, pair_clip, table(heads)[pair_head])


@functools.partial(jax.jit, static_argnames=("fam", "chunk"))
def _mean_all(p, z, e, *, fam, chunk):
  features, apply = models.EMBEDDING_FAMILIES[fam]
  f = jax.tree.map(lambda x: x[:, None], features(p, z))  # [C, 1, ...]
  a = e.shape[0]
  valid = jnp.pad(jnp.ones(a), (0, (-a) % chunk)).reshape(-1, chunk)
  ec = jnp.pad(e, ((0, (-a) % chunk), (0, 0))).reshape(-1, chunk, e.shape[1])

  def add(total, chunk_):
    ek, vk = chunk_
    return total + (apply(p, f, ek[None]) * vk[None, :, None]).sum(1), None

  total, _ = jax.lax.scan(add, jnp.zeros((z.shape[0], z.shape[1])),
                          (ec, valid))
  return total / a


def mean_output(heads: dict, z, chunk: int = 256) -> np.ndarray:
  """The mean of every pre-trained annotator's prediction on each clip,
  z [C, D, H] -> [C, D] (LDNet's all_listeners)."""
  e = table(heads)
  return np.asarray(_mean_all(shared(heads), jnp.asarray(z), jnp.asarray(e),
                              fam=family(heads), chunk=min(chunk, len(e))))


def predictions(heads: dict, z, e) -> np.ndarray:
  """One embedding per annotator on their own clips: z [N, T, D, H],
  e [N, r] -> [N, T, D]."""
  return np.asarray(_apply(family(heads), shared(heads), jnp.asarray(z),
                           jnp.asarray(e)[:, None]))


def mean_listener(heads: dict) -> np.ndarray:
  return np.asarray(heads["mean_listener"])


@dataclasses.dataclass(frozen=True)
class Prior:
  """Gaussian prior over embeddings: mean [r], precision [r, r]; scale,
  the root mean variance (the fit's step sizes are in its units)."""
  mean: np.ndarray
  precision: np.ndarray
  scale: float = 1.0


def fit_prior(embeddings, ridge: float = 1e-3) -> Prior:
  """The pre-trained embeddings' mean and covariance (+ ridge x its mean
  variance on the diagonal, so it is invertible with few annotators)."""
  e = np.asarray(embeddings, np.float64)
  cov = np.cov(e, rowvar=False).reshape(e.shape[1], e.shape[1]) if len(
      e) > 1 else np.eye(e.shape[1])
  cov = cov + ridge * max(np.trace(cov) / len(cov), 1e-6) * np.eye(len(cov))
  return Prior(mean=e.mean(0).astype(np.float32),
               precision=np.linalg.inv(cov).astype(np.float32),
               scale=float(np.sqrt(np.trace(cov) / len(cov))))


def residual_noise(heads: dict, z, pair_clip, pair_annotator, pair_values
                   ) -> float:
  """Mean squared residual of held-out ratings around the rater's own
  embedding (pair_annotator = its index): the fit's rating noise."""
  pred = pair_outputs(heads, z, pair_clip, pair_annotator)
  return float(np.mean((pair_values - pred) ** 2))


# The copy rule: every pre-trained embedding scored on the enrollment clips.


def _scores(pred, y, mask, score):
  """pred [N, A, K, D], y [N, K, D], mask [N, K] -> [N, A], as
  enroll._score_chunk scores heads."""
  m = mask[:, None, :, None]
  cnt = mask.sum(1)
  n = jnp.maximum(cnt, 1.0)[:, None, None]
  my = ((mask[..., None] * y).sum(1) / n[:, 0])[:, None]      # [N, 1, D]
  vy = ((mask[..., None] * (y - my) ** 2).sum(1) / n[:, 0])[:, None]
  mp = (m * pred).sum(2) / n                                  # [N, A, D]
  dp = m * (pred - mp[:, :, None])
  vp = (dp * dp).sum(2) / n
  cov = (dp * (y - my)[:, None]).sum(2) / n
  mse = jnp.maximum(vp + vy - 2 * cov + (mp - my) ** 2, 0.0)
  if score == "ccc":
    s = 2 * cov / (vp + vy + (mp - my) ** 2 + 1e-8)
  elif score == "pearson":
    s = cov / jnp.sqrt(vp * vy + 1e-12)
  else:
    s = -mse
  if score in ("ccc", "pearson"):
    s = jnp.where(vy < enroll.CONSTANT_VAR, -jnp.sqrt(mse + 1e-12), s)
  one = -jnp.abs(mp - my).sum(-1)
  return jnp.where((cnt == 1)[:, None], one, s.sum(-1))


@functools.partial(jax.jit, static_argnames=("fam", "score", "chunk"))
def _score_all(p, z, y, mask, e, *, fam, score, chunk):
  features, apply = models.EMBEDDING_FAMILIES[fam]
  f = jax.tree.map(lambda x: x[:, None], features(p, z))  # [N, 1, K, ...]
  a = e.shape[0]
  ec = jnp.pad(e, ((0, (-a) % chunk), (0, 0))).reshape(-1, chunk, e.shape[1])

  def one(ek):  # [chunk, r] -> [N, chunk]
    return _scores(apply(p, f, ek[None, :, None]), y, mask, score)

  out = jax.lax.map(one, ec)
  return jnp.moveaxis(out, 0, 1).reshape(z.shape[0], -1)[:, :a]


def score_embeddings(heads: dict, z, ratings, mask, score: str = "ccc",
                     chunk: int = 1024) -> np.ndarray:
  """[N, A] similarity of every pre-trained embedding to every new
  annotator (z [N, K, D, H], ratings [N, K, D], mask [N, K]). The low-rank
  family's heads are linear: scored as heads (enroll.score_heads)."""
  if score not in ("ccc", "pearson", "mse"):
    raise ValueError(f"unknown score {score!r} for an embedding family; "
                     "one of ccc, pearson, mse")
  fam = family(heads)
  if fam == "lowrank":
    k, b = models.lowrank_heads(heads)
    return np.asarray(enroll.score_heads(z, ratings, mask, k, b, score,
                                         chunk))
  n = len(ratings)
  zp, yp, mp = enroll.pad_to_buckets(z, ratings, mask)
  e = table(heads)
  per = zp.shape[0] * zp.shape[1] * zp.shape[2] * heads["w_z"].shape[-1]
  cap = int(max(1, min(chunk, _CHUNK_FLOATS // max(per, 1), len(e))))
  cap = -(-len(e) // -(-len(e) // cap))  # even chunks
  out = _score_all(shared(heads), jnp.asarray(zp), jnp.asarray(yp),
                   jnp.asarray(mp), jnp.asarray(e), fam=fam, score=score,
                   chunk=cap)
  return np.asarray(out)[:n]


def copy(heads: dict, z, ratings, mask, score: str = "ccc",
         chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
  """(embeddings [N, r], chosen index [N]): the best-scoring pre-trained
  annotator's embedding, copied."""
  best = score_embeddings(heads, z, ratings, mask, score, chunk).argmax(1)
  return table(heads)[best], best


# The fit rule: a new embedding, MAP under the pre-trained embeddings' prior.


@jax.jit
def _lowrank_map(p, z, y, mask, mean, precision, noise):
  f = models.lowrank_features(p, z)                     # [N, K, D(, r)]
  m = mask[..., None, None]
  phi = f["zu"] * m                                     # [N, K, D, r]
  resid = (y - f["base"]) * mask[..., None]             # [N, K, D]
  gram = jnp.einsum("nkdr,nkds->nrs", phi, phi) / noise + precision
  rhs = jnp.einsum("nkdr,nkd->nr", phi, resid) / noise + precision @ mean
  return jnp.linalg.solve(gram, rhs[..., None])[..., 0]


def fit_lowrank(heads: dict, z, ratings, mask, prior: Prior, noise: float
                ) -> np.ndarray:
  """Closed-form MAP embeddings [N, r] of the low-rank heads: with
  phi_k = U^T z_k (+ u), (sum_k phi_k phi_k^T / noise + P) e = sum_k phi_k
  (y_k - mean head's prediction) / noise + P mu."""
  n = len(ratings)
  zp, yp, mp = enroll.pad_to_buckets(z, ratings, mask)
  return np.asarray(_lowrank_map(shared(heads), jnp.asarray(zp),
                                 jnp.asarray(yp), jnp.asarray(mp),
                                 jnp.asarray(prior.mean),
                                 jnp.asarray(prior.precision),
                                 jnp.float32(noise)))[:n]


def map_objective(fam, p, f, y, mask, mean, precision, noise, e):
  """Sum over annotators of the negative log posterior (up to constants):
  e [N, r], f the clip features [N, K, ...]."""
  pred = models.EMBEDDING_FAMILIES[fam][1](p, f, e[:, None])  # [N, K, D]
  fit = (mask[..., None] * (pred - y) ** 2).sum() / (2 * noise)
  d = e - mean
  return fit + 0.5 * jnp.einsum("nr,rs,ns->", d, precision, d)


@functools.partial(jax.jit, static_argnames=("fam", "steps"))
def _gradient_map(p, z, y, mask, mean, precision, noise, lr, *, fam, steps):
  f = models.EMBEDDING_FAMILIES[fam][0](p, z)
  loss = functools.partial(map_objective, fam, p, f, y, mask, mean,
                           precision, noise)
  tx = optax.adam(optax.cosine_decay_schedule(lr, steps))
  e0 = jnp.broadcast_to(mean, (y.shape[0], mean.shape[0]))

  def step(carry, _):
    e, s = carry
    g = jax.grad(loss)(e)
    u, s = tx.update(g, s, e)
    return (optax.apply_updates(e, u), s), None

  (e, _), _ = jax.lax.scan(step, (e0, tx.init(e0)), None, length=steps)
  return e


def fit_gradient(heads: dict, z, ratings, mask, prior: Prior, noise: float,
                 steps: int = 300, lr: float = 1.0) -> np.ndarray:
  """MAP embeddings [N, r] by `steps` batched Adam steps from the prior
  mean, the learning rate cosine-decayed from lr prior s.d.s (Adam's first
  steps move each coordinate by about that much): one compiled call for
  all N. Any embedding family; the nonlinear decoder's fit."""
  n = len(ratings)
  zp, yp, mp = enroll.pad_to_buckets(z, ratings, mask)
  return np.asarray(_gradient_map(
      shared(heads), jnp.asarray(zp), jnp.asarray(yp), jnp.asarray(mp),
      jnp.asarray(prior.mean), jnp.asarray(prior.precision),
      jnp.float32(noise), jnp.float32(lr * prior.scale), fam=family(heads),
      steps=int(steps)))[:n]


def fit(heads: dict, z, ratings, mask, prior: Prior, noise: float,
        steps: int = 300, lr: float = 1.0) -> np.ndarray:
  """The fit rule: closed form for lowrank, gradient steps otherwise."""
  if family(heads) == "lowrank":
    return fit_lowrank(heads, z, ratings, mask, prior, noise)
  return fit_gradient(heads, z, ratings, mask, prior, noise, steps, lr)
