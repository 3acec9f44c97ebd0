"""Model shapes, stacked heads and the gather path."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from annojax import models


def test_shapes_and_stacked_params():
  m = models.Model(16, 2, 50, hidden=8, dropout=0.2, rngs=nnx.Rngs(0))
  x = jnp.ones((4, 16))
  assert m(x).shape == (4, 50, 2)
  assert m.heads.kernel.shape == (50, 2, 8)
  assert m.heads.bias.shape == (50, 2)
  # Heads are distinct at init (split rngs), so annotators can diverge.
  k = np.asarray(m.heads.kernel)
  assert np.abs(k[0] - k[1]).sum() > 0
  # Parameter count: shared 16*8+8, branches 2*(2*(8*8+8)), heads 50*(2*8+2).
  n = sum(x.size for x in jax.tree.leaves(nnx.state(m, nnx.Param)))
  assert n == (16 * 8 + 8) + 2 * 2 * (8 * 8 + 8) + 50 * (2 * 8 + 2)


def test_gather_equals_all_heads():
  m = models.Model(16, 2, 30, hidden=8, rngs=nnx.Rngs(1))
  x = jax.random.normal(jax.random.key(0), (5, 16))
  idx = jnp.array([[0, 3, 29]] * 5)
  np.testing.assert_allclose(m(x, idx), m(x)[:, jnp.array([0, 3, 29])],
                             rtol=1e-5, atol=1e-6)


def test_dropout_only_with_rng():
  m = models.Model(16, 2, 3, hidden=8, dropout=0.5, rngs=nnx.Rngs(0))
  x = jnp.ones((2, 16))
  np.testing.assert_array_equal(m(x), m(x))
  assert not np.allclose(m(x, rng=jax.random.key(0)), m(x))


def test_aggregate_is_one_head():
  class Meta:
    embedding_dim, dims, num_annotators = 16, ("a", "v"), 40
  from configs import tiny  # pylint: disable=g-import-not-at-top
  cfg = tiny.get_config()
  agg = models.create_model(cfg, Meta, "aggregate")
  ind = models.create_model(cfg, Meta, "individual")
  x = jnp.ones((3, 16))
  assert agg(x).shape == (3, 1, 2) and ind(x).shape == (3, 40, 2)


def test_head_init_scale_is_one_over_sqrt_hidden():
  """Each head's unit reads H features: lecun-normal fan-in H gives s.d.
  1/sqrt(H) (0.0625 at H = 256), not 1/sqrt(D) = 0.71 for D = 2 dims."""
  h = 256
  m = models.Model(32, 2, 400, hidden=h, rngs=nnx.Rngs(0))
  k = np.asarray(m.heads.kernel)  # [A, D, H]
  np.testing.assert_allclose(k.std(), 1 / np.sqrt(h), rtol=0.05)
  # Initial predictions then start on the scale of the [-1, 1] target.
  x = jax.random.normal(jax.random.key(1), (64, 32))
  assert float(jnp.std(m(x))) < 0.5
