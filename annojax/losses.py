"""Masked losses over the observed (clip, annotator) pairs of a batch.

Predictions/labels are [..., D] with a mask over the leading axes; missing
ratings never enter a loss. All-masked and single-observation batches give
finite values (and finite gradients) rather than NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_EPS = 1e-8


def masked_ccc(pred: jax.Array, label: jax.Array, mask: jax.Array
               ) -> jax.Array:
  """Concordance correlation per dimension over observed pairs -> [D].

  CCC = 2 cov / (var_p + var_y + (mean_p - mean_y)^2), population moments.
  With no or one observation the covariance is 0, so CCC = 0.
  """
  d = pred.shape[-1]
  p = pred.reshape(-1, d)
  y = label.reshape(-1, d)
  m = mask.reshape(-1, 1).astype(p.dtype)
  n = jnp.maximum(m.sum(0), 1.0)
  mp = (m * p).sum(0) / n
  my = (m * y).sum(0) / n
  dp, dy = m * (p - mp), m * (y - my)
  cov = (dp * dy).sum(0) / n
  vp = (dp * dp).sum(0) / n
  vy = (dy * dy).sum(0) / n
  return 2.0 * cov / (vp + vy + (mp - my) ** 2 + _EPS)


def ccc_loss(pred, label, mask) -> tuple[jax.Array, jax.Array]:
  """Sum over dimensions of 1 - CCC; also returns the per-dim CCC."""
  ccc = masked_ccc(pred, label, mask)
  return (1.0 - ccc).sum(), ccc


def mse_loss(pred, label, mask) -> tuple[jax.Array, jax.Array]:
  """Mean squared error over observed pairs, summed over dims; per-dim MSE."""
  d = pred.shape[-1]
  m = mask.reshape(-1, 1).astype(pred.dtype)
  se = m * (pred.reshape(-1, d) - label.reshape(-1, d)) ** 2
  mse = se.sum(0) / jnp.maximum(m.sum(), 1.0)
  return mse.sum(), mse


def xent_loss(pred, label, mask) -> tuple[jax.Array, jax.Array]:
  """Categorical: masked softmax cross-entropy over the D class outputs.

  Labels are one-hot (or, for averaged duplicates / consensus, a vote
  distribution) on the [-1, 1] scale of every Ratings table, i.e. target
  probability = (label + 1) / 2. Returns the mean over observed pairs and,
  per class, its share of that mean.
  """
  d = pred.shape[-1]
  logp = jax.nn.log_softmax(pred.reshape(-1, d), axis=-1)
  target = (label.reshape(-1, d) + 1.0) / 2.0
  m = mask.reshape(-1, 1).astype(pred.dtype)
  per_class = -(m * target * logp).sum(0) / jnp.maximum(m.sum(), 1.0)
  return per_class.sum(), per_class


LOSSES = {"ccc": ccc_loss, "mse": mse_loss, "xent": xent_loss}
# Losses whose heads output per-class logits rather than D ratings.
CATEGORICAL = ("xent",)


def get(name: str):
  if name not in LOSSES:
    raise ValueError(f"unknown loss {name!r}; one of {sorted(LOSSES)}")
  return LOSSES[name]
