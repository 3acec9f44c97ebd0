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
  x = jax.random.normal(jax.random.key(2), (3, 16))
  assert agg(x).shape == (3, 1, 2) and ind(x).shape == (3, 40, 2)
  # The same trunk with one head: D * H + D head parameters, not A of them.
  h = cfg.model.hidden
  count = lambda m: sum(v.size for v in jax.tree.leaves(
      nnx.state(m, nnx.Param)))
  assert count(ind) - count(agg) == 39 * (2 * h + 2)
  # Its one output is that head on the trunk's features, bias included.
  agg.heads.stack.bias[...] = jnp.array([[0.25, -0.5]])
  z = agg.trunk(x)
  want = jnp.einsum("bdh,dh->bd", z, agg.heads.kernel[0]) + jnp.array(
      [0.25, -0.5])
  np.testing.assert_allclose(agg(x)[:, 0], want, rtol=1e-5, atol=1e-6)


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


def test_every_head_adds_its_own_bias_on_every_path():
  """Planted biases: shifting head a's bias by b_a shifts exactly head a's
  predictions by b_a, on the all-heads path, the gathered (sparse-layout)
  path and the host-side pair predictions of validation and the protocol."""
  from annojax import train  # pylint: disable=g-import-not-at-top
  m = models.Model(16, 2, 6, hidden=8, rngs=nnx.Rngs(3))
  x = jax.random.normal(jax.random.key(0), (4, 16))
  idx = jnp.array([[5, 0, 2]] * 4)
  before_all, before_gathered = np.asarray(m(x)), np.asarray(m(x, idx))
  planted = np.arange(12, dtype=np.float32).reshape(6, 2) / 10 - 0.5
  m.heads.stack.bias[...] = m.heads.stack.bias[...] + planted
  np.testing.assert_allclose(np.asarray(m(x)) - before_all,
                             np.broadcast_to(planted, (4, 6, 2)), atol=1e-5)
  np.testing.assert_allclose(np.asarray(m(x, idx)) - before_gathered,
                             planted[np.array([[5, 0, 2]] * 4)], atol=1e-5)
  z = np.asarray(m.trunk(x))  # [B, D, H]
  kernel, bias = np.asarray(m.heads.kernel), np.asarray(m.heads.bias)
  clip, head = np.array([0, 1, 3, 3]), np.array([4, 4, 1, 0])
  np.testing.assert_allclose(
      train.pair_predictions(z, kernel, bias, clip, head),
      np.asarray(m(x))[clip, head], atol=1e-5)
  np.testing.assert_allclose(
      train.pair_predictions(z, kernel, bias, clip, head)
      - train.pair_predictions(z, kernel, bias - planted, clip, head),
      planted[head], atol=1e-5)


def test_dropout_in_training_zeroes_and_rescales_inputs():
  """dropout p: with a key, a fraction ~p of the inputs is zeroed and the
  rest scaled by 1 / (1 - p), so the trunk's input mean is kept."""
  m = models.Model(2000, 1, 1, hidden=4, dropout=0.3, rngs=nnx.Rngs(0))
  seen = {}
  orig = m.trunk.shared

  class Spy(nnx.Module):

    def __init__(self):
      self.inner = orig

    def __call__(self, x):
      seen["x"] = np.asarray(x)
      return self.inner(x)

  m.trunk.shared = Spy()
  m(jnp.ones((3, 2000)), rng=jax.random.key(1))
  kept = seen["x"] != 0
  np.testing.assert_allclose(1 - kept.mean(), 0.3, atol=0.02)
  # 1 / P(keep), P(keep) = 0.7 rounded to 1/65536 (16-bit draws).
  np.testing.assert_allclose(seen["x"][kept], 1 / 0.7, rtol=1e-5)


def test_bernoulli16_has_its_probability_and_fresh_bits_per_element():
  """The 16-bit mask keeps p of the elements, both halves of every 32-bit
  word used (an odd size too), its stated probability exact to 1/65536."""
  mask, q = models.bernoulli16(jax.random.key(0), 0.8, (999, 1001))
  mask = np.asarray(mask)
  assert abs(q - 0.8) < 1 / 65536
  assert abs(mask.mean() - 0.8) < 0.002
  half = mask.size // 2  # the words' low halves, then their high halves
  flat = mask.ravel()
  assert abs(flat[:half].mean() - flat[half:2 * half].mean()) < 0.003
  # Low and high halves of a word are independent draws.
  both = (flat[:half] & flat[half:2 * half]).mean()
  assert abs(both - 0.64) < 0.003
