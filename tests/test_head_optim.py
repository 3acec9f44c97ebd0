"""Row-sparse head updates: exact SGD, lazy Adam, the slot bookkeeping."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from annojax import head_optim
from annojax import train
from annojax.data import pipeline

A, B, K, F = 40, 8, 3, 16


def _config(optimizer="sgd", update="dense", family="heads"):
  return ml_collections.ConfigDict({
      "model": {"hidden": 32, "dropout": 0.2, "annotators": family,
                "embedding_dim": 4, "decoder_hidden": 8},
      "optim": {"name": optimizer, "learning_rate": 0.05, "momentum": 0.9,
                "head_update": update},
      "train": {"seed": 0, "loss": "ccc", "batch_size": B},
      "data": {"layout": "sparse"}})


def _meta(num_heads=A):
  return pipeline.Meta(dims=("a", "v"),
                       annotator_ids=tuple(map(str, range(num_heads))),
                       annotator_types=None, embedding_dim=F, split_sizes={})


def _batches(n, seed=0, heads=None, num_heads=A, masked=0.2):
  """Sparse-layout batches; a head may recur across a batch's clips (never
  within one clip), some slots masked. heads: restrict to these."""
  rng = np.random.default_rng(seed)
  pool = np.arange(num_heads) if heads is None else np.asarray(heads)
  out = []
  for _ in range(n):
    ann = np.stack([rng.choice(pool, K, replace=False)
                    for _ in range(B)]).astype(np.int32)
    mask = (rng.uniform(size=(B, K)) >= masked).astype(np.float32)
    out.append({"embedding": rng.standard_normal((B, F)).astype(np.float32),
                "annotators": ann, "label_mask": mask,
                "labels": rng.uniform(-1, 1, (B, K, 2)).astype(np.float32),
                "valid": np.ones(B, np.float32)})
  return out


def _run(optimizer, update, batches, num_heads=A, family="heads"):
  config = _config(optimizer, update, family)
  meta = _meta(num_heads)
  graphdef, tx, state = train._initial_state(config, meta, "individual")  # pylint: disable=protected-access
  step = jax.jit(train.step_function(config, meta, "individual", graphdef,
                                     tx, seed=0))
  for b in batches:
    state, m = step(state, b)
    assert np.isfinite(float(m["loss"]))
  return state, train.flush_function(config, meta, "individual")


def _max_diff(a, b):
  return max(jax.tree.leaves(jax.tree.map(
      lambda x, y: float(jnp.abs(x - y).max()), a, b)))


@pytest.mark.parametrize("family", ["heads", "lowrank", "embedding"])
def test_row_sparse_sgd_equals_dense_sgd_after_a_flush(family):
  """SGD momentum applied row by row, with the skipped steps caught up in
  closed form, gives the dense optax update: parameters and momentum (the
  embedding families: their embedding rows; the shared decoder, the mean
  listener included, by optax)."""
  batches = _batches(12)
  dense, _ = _run("sgd", "dense", batches, family=family)
  sparse, flush = _run("sgd", "sparse", batches, family=family)
  # Before the flush, heads the last batches did not rate lag behind.
  assert _max_diff(dense["params"]["heads"], sparse["params"]["heads"]) > 1e-4
  sparse = flush(sparse)
  # float32 rounding, relative to the parameters' size (the embedding
  # decoder's V is ~sqrt(H/r) = 2.8 here)
  scale = max(1.0, max(float(np.abs(x).max())
                       for x in jax.tree.leaves(dense["params"])))
  assert _max_diff(dense["params"], sparse["params"]) < 1e-6 * scale
  assert _max_diff(dense["opt_state"].inner_state[0].trace["heads"]["stack"],
                   sparse["opt_state"]["heads"]["momentum"]) < 1e-6 * scale
  np.testing.assert_array_equal(sparse["opt_state"]["heads"]["last"], 12)


def test_row_sparse_sgd_flushes_and_lr_drops_as_at_epoch_ends():
  """Flushes after every few steps (epoch ends), each followed by a
  plateau's learning-rate drop as the training loop does: the dense
  update's parameters, step for step."""
  batches = _batches(9, seed=1)
  meta = _meta()
  out = {}
  for update in ("dense", "sparse"):
    config = _config("sgd", update)
    graphdef, tx, state = train._initial_state(config, meta, "individual")  # pylint: disable=protected-access
    step = jax.jit(train.step_function(config, meta, "individual",
                                       graphdef, tx, seed=0))
    flush = train.flush_function(config, meta, "individual")
    for i, b in enumerate(batches):
      state, _ = step(state, b)
      if i % 4 == 3:
        state = flush(state) if flush else state
        state["opt_state"] = train.with_learning_rate(
            state["opt_state"], 0.05 * 0.5 ** ((i + 1) // 4))
    out[update] = flush(state) if flush else state
  assert _max_diff(out["dense"]["params"], out["sparse"]["params"]) < 1e-6
  np.testing.assert_allclose(
      head_optim.learning_rate(out["sparse"]["opt_state"]), 0.0125)


def test_lazy_adam_equals_dense_adam_when_every_head_is_rated():
  """With every head rated in every step, lazy Adam is Adam."""
  rng = np.random.default_rng(2)
  batches = []
  for b in _batches(6, seed=2, num_heads=B * K, masked=0.0):
    b["annotators"] = rng.permutation(B * K).reshape(B, K).astype(np.int32)
    batches.append(b)
  dense, _ = _run("adam", "dense", batches, num_heads=B * K)
  sparse, _ = _run("adam", "sparse", batches, num_heads=B * K)
  # Float rounding of ~0.05-sized steps; a misplaced eps or bias
  # correction shows at ~1e-3.
  assert _max_diff(dense["params"], sparse["params"]) < 2e-5


def test_lazy_adam_leaves_heads_without_ratings_where_they_are():
  """A head rated in the first batch only: dense Adam keeps moving it with
  its decaying first moment, lazy Adam leaves it after its own update."""
  first = _batches(1, seed=3, heads=range(0, 20), masked=0.0)
  later = _batches(4, seed=4, heads=range(20, A), masked=0.0)
  lazy_1, _ = _run("adam", "sparse", first)
  lazy_5, _ = _run("adam", "sparse", first + later)
  dense_1, _ = _run("adam", "dense", first)
  dense_5, _ = _run("adam", "dense", first + later)
  kernel = lambda s: np.asarray(s["params"]["heads"]["stack"]["kernel"][:20])
  np.testing.assert_array_equal(kernel(lazy_1), kernel(lazy_5))
  assert np.abs(kernel(dense_1) - kernel(dense_5)).max() > 1e-3
  np.testing.assert_allclose(kernel(lazy_1), kernel(dense_1), atol=1e-6)


def test_batch_rows_sums_a_heads_slots_into_its_first():
  ann = jnp.array([[3, 1], [1, 0], [3, 2]], jnp.int32)
  mask = jnp.array([[1, 1], [1, 0], [1, 1]], jnp.float32)
  rows, first = head_optim.batch_rows(ann, mask, num_heads=5)
  np.testing.assert_array_equal(first, [0, 1, 1, 3, 0, 5])
  # Heads 3, 1 and 2 written once, at their first slots; the repeats and
  # the masked slot go to distinct rows past the last head (dropped).
  np.testing.assert_array_equal(rows, [3, 1, 5 + 2, 5 + 3, 5 + 4, 2])


def test_resolve_picks_the_exact_rule_and_refuses_impossible_ones():
  meta = dataclasses.replace(_meta(1000), max_raters={"train": 10})
  c = _config("sgd", "auto")
  assert head_optim.resolve(c, meta, "individual") == "sparse"
  assert head_optim.resolve(c, meta, "aggregate") == "dense"
  c.train.batch_size = 128  # 1,280 rating slots > 1,000 heads: dense
  assert head_optim.resolve(c, meta, "individual") == "dense"
  c.train.batch_size = B
  c.optim.name = "adam"  # lazy Adam is not Adam: only when asked for
  assert head_optim.resolve(c, meta, "individual") == "dense"
  c.optim.head_update = "sparse"
  assert head_optim.resolve(c, meta, "individual") == "sparse"
  c.data.layout = "dense"
  with pytest.raises(ValueError, match="config.data.layout"):
    head_optim.resolve(c, meta, "individual")
  c.optim.head_update = "rows"
  with pytest.raises(ValueError, match="head_update"):
    head_optim.resolve(c, meta, "individual")


def test_training_with_row_sparse_sgd_matches_the_dense_update(tiny_config,
                                                                tmp_path):
  """The whole loop (epochs, flushes, checkpoints, best-epoch restore) at
  the reference learning rate: same parameters and validation losses with
  row-sparse and with dense head updates. (At lr 0.05 the two runs part
  after ~50 steps: a ReLU input within float rounding of 0 flips; the
  learning-rate drops are tested step by step above.)"""
  c = tiny_config
  c.optim.name, c.optim.learning_rate, c.optim.momentum = "sgd", 1e-3, 0.9
  c.data.layout = "sparse"
  c.train.num_epochs = 3
  out = {}
  for update in ("dense", "sparse"):
    c.optim.head_update = update
    out[update] = train.train_and_evaluate(c, str(tmp_path / update))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-5),
               out["dense"]["params"], out["sparse"]["params"])
  np.testing.assert_allclose(
      [h["val_loss"] for h in out["dense"]["history"]],
      [h["val_loss"] for h in out["sparse"]["history"]], rtol=1e-4)
  with open(os.path.join(tmp_path, "sparse", "individual",
                         "origin.json")) as f:
    assert json.load(f)["head_update"] == "sparse sgd"
  # Its checkpoints are refused under the dense update (other state).
  c.optim.head_update = "dense"
  with pytest.raises(ValueError, match="head_update"):
    train.train_and_evaluate(c, str(tmp_path / "sparse"))
