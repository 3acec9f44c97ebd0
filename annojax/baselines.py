"""Per-annotator baselines of the protocol, fit on the enrollment clips.

All take padded, masked enrollment sets: x / y [N, K, D], mask [N, K], one
row per new annotator, and are fit for every annotator at once.

  linear_fit  ridge line y ~ a x + c on the aggregate's output (pulled toward
              a = 1, c = 0); fits MSE, which shrinks the variance CCC rewards
  calibrate   CCC-consistent: match the mean and s.d. of the aggregate's
              enrollment predictions to the annotator's ratings, shrunk
              toward the identity with few clips
  finetune    head-only Adam from the mapped head (MSE + L2 pull toward it)

and, fit once on OTHER annotators (the source's held-out raters):

  typical_calibration
              the aggregate at the raters' typical scale: one (a, c) for
              everyone, the pooled within-rater s.d. of the ratings over
              that of the aggregate's predictions on the same clips
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from annojax import enroll
from annojax import metrics


def linear_fit(x, y, mask, ridge):
  """Per annotator/dim ridge fit y ~ a x + c, prior a=1, c=0 -> (a, c)."""
  m = mask[..., None]
  sxx = (m * x * x).sum(1) + ridge
  sx = (m * x).sum(1)
  n = m.sum(1) + ridge
  sxy = (m * x * y).sum(1) + ridge
  sy = (m * y).sum(1)
  det = sxx * n - sx * sx
  return (sxy * n - sx * sy) / det, (sxx * sy - sx * sxy) / det


def calibrate(x, y, mask, shrink, prior=(1.0, 0.0)):
  """CCC-consistent calibration -> (a, c) with prediction a x + c.

  Per annotator and dimension, with n enrollment clips, w = n / (n + shrink)
  and the prior calibration (a0, c0) (default the identity, 1 and 0):
    a = w * sd(y) / sd(x) + (1 - w) a0     (s.d. matching, toward a0)
    c = mean(y)_w - a * mean(x)            where mean(y)_w = w mean(y) +
                                           (1 - w) (a0 mean(x) + c0)
  i.e. the calibrated predictions have the annotator's mean and s.d. on the
  enrollment clips when n >> shrink, and are the prior's (the aggregate's
  own for the identity) with no clips. One clip (no s.d.) keeps a = a0 and
  shifts the mean only.
  """
  a0, c0 = prior
  n, mx, vx = metrics.masked_moments(x, mask)
  _, my, vy = metrics.masked_moments(y, mask)
  sx, sy = np.sqrt(vx), np.sqrt(vy)
  w = n / (n + shrink)
  ratio = np.where((sx > 1e-8) & (n >= 2), sy / np.maximum(sx, 1e-8), a0)
  a = w * ratio + (1 - w) * a0
  target_mean = w * my + (1 - w) * (a0 * mx + c0)
  return a, target_mean - a * mx


def typical_calibration(x, y, mask):
  """One CCC-consistent calibration (a [D], c [D]) for a population.

  x / y / mask: the aggregate's predictions and the ratings on each rater's
  clips, padded [N, K, D] / [N, K]. The aggregate predicts the consensus,
  whose spread within a rater's clips is below that rater's own: a is the
  ratio of the pooled within-rater s.d.s (each rater's deviations from
  their own mean: sum_n n var(y_n) / sum_n n var(x_n), square-rooted; no
  ratio of a few clips' s.d.s), c puts the mean over all pairs at the
  ratings' mean."""
  n, mx, vx = metrics.masked_moments(x, mask)
  _, my, vy = metrics.masked_moments(y, mask)
  a = np.sqrt((n * vy).sum(0) / np.maximum((n * vx).sum(0), 1e-12))
  total = max(float(n.sum()), 1.0)
  return a, ((n * my).sum(0) - a * (n * mx).sum(0)) / total


@functools.partial(jax.jit, static_argnames=("steps",))
def _finetune(kernel0, bias0, z, y, mask, steps, lr, l2):
  tx = optax.adam(lr)

  def loss_fn(params):
    k, b = params
    p = jnp.einsum("nkdh,ndh->nkd", z, k) + b[:, None]
    m = mask[..., None]
    mse = (m * (p - y) ** 2).sum((1, 2)) / jnp.maximum(mask.sum(1), 1)
    reg = ((k - kernel0) ** 2).sum((1, 2)) + ((b - bias0) ** 2).sum(1)
    return (mse + l2 * reg).sum()  # separable: independent per annotator

  def body(_, carry):
    params, opt = carry
    g = jax.grad(loss_fn)(params)
    upd, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, upd), opt

  params = (kernel0, bias0)
  return jax.lax.fori_loop(0, steps, body, (params, tx.init(params)))[0]


def finetune(kernel0, bias0, z, y, mask, steps, lr, l2):
  """Head-only Adam on each annotator's enrollment clips, all at once.

  kernel0 [N, D, H], bias0 [N, D], z [N, K, D, H], y [N, K, D], mask [N, K]
  -> fine-tuned (kernel [N, D, H], bias [N, D]). Loss per annotator: masked
  MSE + l2 * ||head - mapped head||^2. N and K are padded to powers of two
  (masked) so repeated calls share compilations.
  """
  n = len(mask)
  z, y, mask = enroll.pad_to_buckets(z, y, mask)
  pad_n = lambda a: np.pad(np.asarray(a, np.float32),
                           [(0, len(mask) - n)] + [(0, 0)] * (a.ndim - 1))
  k_f, b_f = _finetune(pad_n(kernel0), pad_n(bias0), z, y, mask, steps, lr,
                       l2)
  return np.asarray(k_f)[:n], np.asarray(b_f)[:n]
