"""Adaptive enrollment: which clips a new annotator should rate next.

The heads still in contention for a new annotator are weighted by the
posterior of the mixture rule (posterior.py): softmax(k x score / T) over
the A pre-trained heads, given the annotator's k ratings so far (uniform
before the first). A clip on which those heads predict the same value
cannot tell them apart; the next clip is the one with the largest posterior
variance of the heads' predictions, summed over dimensions (query by
committee):

  v_n(c) = sum_d sum_a w_na (p_a(c, d) - pbar_n(c, d))^2

For several clips per round (`propose`'s n > 1) the choice is greedy on the
CONDITIONAL variance, treating the heads' predictions under the posterior
as a Gaussian process with covariance
  K_n(c, c') = sum_d sum_a w_na (p_a(c, d) - pbar)(p_a(c', d) - pbar)
and rating noise `noise`: after clip c is chosen, every candidate c' loses
K(c', c)^2 / (v(c) + noise) of its variance (a pivoted Cholesky over the
candidates), so a round does not spend its clips on near-duplicates. This
needs no ratings: a whole round is chosen before anyone rates it.

Categorical heads (CREMA-D: D = classes, outputs = logits): the heads'
predictions are their class probabilities (head_predictions(...,
categorical=True)), so v_n(c) is the posterior variance of the predicted
probabilities summed over classes, the clip whose label the heads in
contention most disagree on. With the log-likelihood score the posterior
softmax(k x score / T) at T = 1 is Bayes' rule over the heads (k x score is
the summed log-likelihood of the labels given), so T = 1 needs no tuning.

Everything is one jit-compiled call for all N new annotators: the heads'
predictions on all candidate clips, pred [C, A, D], are computed once;
each pick costs one [N, A] x [A, C x D] product. Memory: C x A x D floats
(1,000 clips x 20,000 heads x 2 dims = 160 MB).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from annojax import enroll
from annojax import posterior


# A one-hot label's variance around class probabilities p, summed over
# classes, is 1 - sum_k p_k^2: ~0.5 for a head 70% sure of one of 6 classes.
CATEGORICAL_NOISE = 0.5


def head_predictions(z, kernel, bias, categorical: bool = False
                     ) -> jax.Array:
  """Every head on every candidate clip: z [C, D, H] -> [C, A, D]; for
  categorical heads their class probabilities (softmax over D)."""
  return _head_predictions(jnp.asarray(z, jnp.float32), jnp.asarray(kernel),
                           jnp.asarray(bias), categorical)


@functools.partial(jax.jit, static_argnames=("categorical",))
def _head_predictions(z, kernel, bias, categorical):
  out = jnp.einsum("cdh,adh->cad", z, kernel) + bias[None]
  return jax.nn.softmax(out, -1) if categorical else out


@functools.partial(jax.jit, static_argnames=("n",))
def _propose(pred, weights, available, noise, n):
  """n greedy picks per annotator -> (clips [N, n], variance [N, n]); clip
  -1 where no candidate is left."""
  # Centre each clip's predictions over heads (float32 cancellation).
  pred = pred - pred.mean(1, keepdims=True)
  mean = jnp.einsum("na,cad->ncd", weights, pred)
  var = (jnp.einsum("na,cad->ncd", weights, pred * pred)
         - mean * mean).sum(-1)
  var = jnp.maximum(var, 0.0)
  rows = jnp.arange(weights.shape[0])

  def pick(carry, j):
    var, avail, chol = carry  # chol [n, N, C]: the pivoted Cholesky columns
    masked = jnp.where(avail, var, -jnp.inf)
    c = masked.argmax(1)
    ok = jnp.isfinite(masked[rows, c])
    # Covariance of every candidate with the chosen clip under each
    # annotator's posterior, less what earlier picks explain.
    dev = weights[..., None] * (pred[c] - mean[rows, c][:, None])  # [N,A,D]
    cov = jnp.einsum("nad,cad->nc", dev, pred)
    cov = cov - jnp.einsum("jnc,jn->nc", chol, chol[:, rows, c])
    col = jnp.where(ok[:, None],
                    cov / jnp.sqrt(var[rows, c] + noise)[:, None], 0.0)
    var = jnp.maximum(var - col * col, 0.0)
    avail = avail.at[rows, c].set(False)
    return (var, avail, chol.at[j].set(col)), (
        jnp.where(ok, c, -1), jnp.where(ok, masked[rows, c], 0.0))

  chol = jnp.zeros((n,) + var.shape, var.dtype)
  _, (clips, spread) = jax.lax.scan(pick, (var, available, chol),
                                    jnp.arange(n))
  return clips.T, spread.T


def propose(pred, weights, available, n: int = 1, noise: float = 0.1):
  """The next n clips each new annotator should rate.

  Args:
    pred: [C, A, D] every head's prediction on every candidate clip
      (head_predictions).
    weights: [N, A] posterior over heads (posterior.mixture_weights).
    available: [N, C] bool, the clips each annotator may be asked (not yet
      rated; in a simulation, clips with an existing rating).
    n: clips per annotator this round.
    noise: rating-noise variance on [-1, 1], for n > 1 (see the module
      docstring).
  Returns:
    (clips [N, n] indices into pred, -1 where the annotator's candidates
    ran out; variance [N, n] the posterior (conditional) variance of the
    heads' predictions at each pick).
  """
  clips, var = _propose(jnp.asarray(pred, jnp.float32),
                        jnp.asarray(weights, jnp.float32),
                        jnp.asarray(available, bool), jnp.float32(noise),
                        int(n))
  return np.asarray(clips), np.asarray(var)


def simulate(z, pred, pools, kernel, bias, temperature: float, steps: int,
             score: str = "ccc", head_chunk: int = 0,
             names=None, choose=None) -> list[np.ndarray]:
  """Adaptive enrollment of N annotators whose ratings already exist: one
  clip per round, the rating revealed before the next choice.

  Args:
    z: [C, D, H] trunk features of the candidate clips; pred: [C, A, D]
      the heads' predictions on them (head_predictions).
    pools: per annotator, (clip indices [m], ratings [m, D]): the only
      clips they may be asked (those they actually rated).
    steps: clips per annotator at most (fewer where the pool is smaller).
    names: annotator ids for error messages.
    choose: (weights [N, A], available [N, C]) -> the next clip [N] of
      each annotator (-1 where none is left); default the most disputed
      (propose). bench/adaptive_bound.py passes a clairvoyant designer.
  Returns:
    per annotator, positions into their pool in the order chosen (so the
    first k are the adaptive k-clip enrollment set).
  """
  if choose is None:
    choose = lambda weights, available: propose(pred, weights, available,
                                                1)[0][:, 0]
  n, c = len(pools), len(pred)
  available = np.zeros((n, c), bool)
  where = np.full((n, c), -1, np.int64)  # clip -> position in the pool
  for i, (clips, _) in enumerate(pools):
    available[i, clips] = True
    where[i, clips] = np.arange(len(clips))
  order = [[] for _ in range(n)]
  weights = np.full((n, len(kernel)), 1.0 / len(kernel), np.float32)
  for step in range(steps):
    picks = np.asarray(choose(weights, available))
    for i in np.flatnonzero(picks >= 0):
      order[i].append(where[i, picks[i]])
      available[i, picks[i]] = False
    if step + 1 == steps or not available.any():
      break
    scores, _, _, mask = enroll.enrollment_scores(
        z, [pools[i][0][order[i]] for i in range(n)],
        [pools[i][1][order[i]] for i in range(n)], kernel, bias,
        score=score, head_chunk=head_chunk, names=names)
    weights = posterior.mixture_weights(scores, jnp.asarray(mask.sum(1)),
                                        jnp.float32(temperature))
  return [np.asarray(o, np.int64) for o in order]
