"""Masked losses against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np

from annojax import losses
from annojax import metrics


def test_ccc_hand_computed():
  p = jnp.array([[1.0], [2.0], [3.0]])
  y = jnp.array([[2.0], [2.0], [5.0]])
  # means 2, 3; var_p 2/3, var_y 2; cov 1; CCC = 2 / (2/3 + 2 + 1) = 6/11.
  ccc = losses.masked_ccc(p, y, jnp.ones(3))
  np.testing.assert_allclose(ccc, [6 / 11], rtol=1e-5)
  np.testing.assert_allclose(metrics.ccc(p, y), [6 / 11], rtol=1e-6)
  loss, _ = losses.ccc_loss(p, y, jnp.ones(3))
  np.testing.assert_allclose(loss, 1 - 6 / 11, rtol=1e-5)


def test_masked_entries_are_ignored():
  p = jnp.array([[[1.0, 0.0], [9.0, 9.0]], [[2.0, 1.0], [3.0, -9.0]]])
  y = jnp.array([[[2.0, 1.0], [-5.0, 5.0]], [[2.0, 0.0], [5.0, 4.0]]])
  mask = jnp.array([[1.0, 0.0], [1.0, 1.0]])
  got = losses.masked_ccc(p, y, mask)
  obs = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, -9.0]])
  lab = np.array([[2.0, 1.0], [2.0, 0.0], [5.0, 4.0]])
  np.testing.assert_allclose(got, metrics.ccc(obs, lab), rtol=1e-5)
  mse, per_dim = losses.mse_loss(p, y, mask)
  np.testing.assert_allclose(per_dim, ((obs - lab) ** 2).mean(0), rtol=1e-6)
  np.testing.assert_allclose(mse, ((obs - lab) ** 2).mean(0).sum(),
                             rtol=1e-6)


def test_all_masked_and_single_observation_are_finite():
  p = jnp.array([[0.3, -0.2], [0.1, 0.5]])
  y = jnp.array([[0.5, 0.1], [-0.4, 0.2]])
  for mask in (jnp.zeros(2), jnp.array([1.0, 0.0])):
    for fn in (losses.ccc_loss, losses.mse_loss):
      loss, grad = jax.value_and_grad(lambda q: fn(q, y, mask)[0])(p)
      assert np.isfinite(loss) and np.isfinite(grad).all()
  # No pair observed: CCC 0 per dimension, loss D, zero gradient.
  loss, grad = jax.value_and_grad(
      lambda q: losses.ccc_loss(q, y, jnp.zeros(2))[0])(p)
  assert float(loss) == 2.0 and not np.any(grad)
  assert float(losses.mse_loss(p, y, jnp.zeros(2))[0]) == 0.0


def test_ccc_ind_and_con():
  pred = np.array([[0.0], [1.0], [0.0], [1.0], [5.0]])
  label = np.array([[0.0], [1.0], [1.0], [0.0], [3.0]])
  ann = np.array([0, 0, 1, 1, 2])  # annotator 2 has 1 pair: left out
  np.testing.assert_allclose(metrics.ccc_ind(pred, label, ann), [0.0])
  per, cnt = metrics.ccc_per_group(pred, label, ann)
  np.testing.assert_allclose(per[:, 0], [1.0, -1.0, 0.0])
  np.testing.assert_array_equal(cnt, [2, 2, 1])
  clip = np.array([0, 1, 0, 1, 2])
  # Clip means: pred (0, 1, 5), label (0.5, 0.5, 3).
  np.testing.assert_allclose(
      metrics.ccc_con(pred, label, clip),
      metrics.ccc(np.array([[0.0], [1.0], [5.0]]),
                  np.array([[0.5], [0.5], [3.0]])))
