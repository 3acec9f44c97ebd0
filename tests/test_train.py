"""Training: IA beats aggregate, resume, restore, NaN guard, 4-device mesh."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from annojax import losses
from annojax import metrics
from annojax import train
from annojax.data import pipeline
from annojax.data import prepare
from configs import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _source_test_ccc_ind(config, workdir, prepared, kind):
  graphdef, params = train.load_best(config, workdir, kind, prepared)
  table = pipeline.load_table(prepared.source, "test")
  z = train.trunk_features(graphdef, params, table.embeddings)
  kernel, bias = train.head_arrays(params)
  heads = (table.pair_annotator if kind == "individual"
           else np.zeros_like(table.pair_annotator))
  pred = train.pair_predictions(z, kernel, bias, table.pair_clip, heads)
  return metrics.ccc_ind(pred, table.pair_values, table.pair_annotator)


def test_individual_beats_aggregate_on_held_out_speakers(trained_tiny):
  config, workdir, prepared = trained_tiny
  ia = _source_test_ccc_ind(config, workdir, prepared, "individual")
  agg = _source_test_ccc_ind(config, workdir, prepared, "aggregate")
  assert (ia > agg + 0.1).all(), (ia, agg)


def test_logs_and_config_written(trained_tiny):
  config, workdir, _ = trained_tiny
  for kind in ("individual", "aggregate"):
    with open(os.path.join(workdir, kind, "metrics.jsonl")) as f:
      records = [json.loads(line) for line in f]
    assert [r["epoch"] for r in records] == list(
        range(1, len(records) + 1))
    assert all(np.isfinite(r["val_loss"]) for r in records)
    # Learning improved validation loss.
    assert min(r["val_loss"] for r in records) < records[0]["val_loss"]
    with open(os.path.join(workdir, kind, "config.json")) as f:
      assert json.load(f)["train"]["batch_size"] == config.train.batch_size


def test_resume_continues_with_identical_params(tiny_config, tmp_path):
  tiny_config.train.num_epochs = 4
  tiny_config.train.models = ("individual",)
  straight = train.train_and_evaluate(tiny_config, str(tmp_path / "a"))
  tiny_config.train.num_epochs = 2  # "interrupted" after two epochs
  train.train_and_evaluate(tiny_config, str(tmp_path / "b"))
  tiny_config.train.num_epochs = 4
  resumed = train.train_and_evaluate(tiny_config, str(tmp_path / "b"))
  assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6,
                                                       atol=1e-7),
               straight["params"], resumed["params"])
  np.testing.assert_allclose(
      [h["val_loss"] for h in straight["history"]],
      [h["val_loss"] for h in resumed["history"]], rtol=1e-6)


def test_checkpoints_of_other_data_are_refused(tiny_config, tmp_path):
  """A changed data config gets a new dataset; the workdir's checkpoints of
  the old one must not be resumed, restored or exported."""
  tiny_config.train.num_epochs = 1
  tiny_config.train.models = ("individual",)
  workdir = str(tmp_path / "w")
  train.train_and_evaluate(tiny_config, workdir)
  tiny_config.data.synthetic.seed = 7  # same shapes, other data
  other = prepare.prepare(tiny_config, workdir)
  with pytest.raises(ValueError, match=r"trained on something other.*"
                     r"dataset: 'synthetic_source_"):
    train.train_and_evaluate(tiny_config, workdir, prepared=other)
  with pytest.raises(ValueError, match="trained on something other"):
    train.load_best(tiny_config, workdir, "individual", other)
  tiny_config.data.synthetic.seed = 0
  tiny_config.model.hidden = 16  # the same data, another model shape
  with pytest.raises(ValueError, match=r"model: .*'hidden': 32.* there"):
    train.train_and_evaluate(tiny_config, workdir)
  tiny_config.model.hidden = 32  # the run's own model: resumes
  tiny_config.train.num_epochs = 2
  out = train.train_and_evaluate(tiny_config, workdir)
  assert [h["epoch"] for h in out["history"]] == [1, 2]


def test_restore_in_a_fresh_process(trained_tiny, tmp_path):
  config, workdir, prepared = trained_tiny
  _, params = train.load_best(config, workdir, "individual", prepared)
  out = tmp_path / "restored.npz"
  code = f"""
import sys; sys.path.insert(0, {ROOT!r})
import numpy as np
from configs import tiny
from annojax import train
from annojax.data import prepare
from configs import tiny
config = tiny.get_config()
p = prepare.Prepared({prepared.source!r}, {prepared.target!r})
_, params = train.load_best(config, {workdir!r}, "individual", p)
k, b = train.head_arrays(params)
np.savez({str(out)!r}, kernel=k, bias=b,
         shared=params["trunk"]["shared"]["kernel"])
"""
  subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
  saved = np.load(out)
  k, b = train.head_arrays(params)
  np.testing.assert_array_equal(saved["kernel"], k)
  np.testing.assert_array_equal(saved["bias"], b)
  np.testing.assert_array_equal(saved["shared"],
                                params["trunk"]["shared"]["kernel"])


def test_nan_guard(tiny_config, tmp_path, monkeypatch):
  def nan_loss(pred, label, mask):
    loss, per_dim = losses.mse_loss(pred, label, mask)
    return loss * np.nan, per_dim
  monkeypatch.setitem(losses.LOSSES, "nan", nan_loss)
  tiny_config.train.loss = "nan"
  with pytest.raises(FloatingPointError, match="non-finite loss"):
    train.train_and_evaluate(tiny_config, str(tmp_path), "individual")
  assert not os.listdir(tmp_path / "individual" / "checkpoints" / "latest")


def test_batch_must_divide_devices(tiny_config, tmp_path, monkeypatch):
  monkeypatch.setattr(jax, "device_count", lambda: 3)
  with pytest.raises(ValueError, match="not divisible by 3 devices"):
    train.train_and_evaluate(tiny_config, str(tmp_path), "individual")


def test_four_device_mesh_matches_one_device(tmp_path):
  """Batch sharded over 4 (forced) CPU devices = the 1-device run, with the
  dense update and with row-sparse heads (SGD: gathers and scatters of a
  sharded batch's heads); one process per device count trains both."""
  code = f"""
import copy, sys; sys.path.insert(0, {ROOT!r})
import jax, numpy as np
from configs import tiny
from annojax import train
base = tiny.get_config()
base.train.num_epochs = 2
base.train.models = ("individual",)
base.data.data_dir = sys.argv[1] + "data"  # prepared once for both
sparse = copy.deepcopy(base)
sparse.optim.name, sparse.optim.learning_rate = "sgd", 0.05
sparse.data.layout = sparse.optim.head_update = "sparse"
out = {{"devices": jax.device_count()}}
for name, config in (("dense", base), ("sparse", sparse)):
  r = train.train_and_evaluate(config, sys.argv[1] + name, "individual")
  out[name] = train.head_arrays(r["params"])[0]
np.savez(sys.argv[2], **out)
"""
  outs = []
  for n in (1, 4):
    env = dict(os.environ,
               XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
    out = str(tmp_path / f"d{n}.npz")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / f"w{n}"),
                    out], check=True, cwd=ROOT, env=env)
    outs.append(np.load(out))
  assert int(outs[0]["devices"]) == 1 and int(outs[1]["devices"]) == 4
  for update in ("dense", "sparse"):
    np.testing.assert_allclose(outs[0][update], outs[1][update], rtol=1e-3,
                               atol=1e-5, err_msg=update)
  # The two updates are different runs (the comparison is not vacuous).
  assert np.abs(outs[0]["dense"] - outs[0]["sparse"]).max() > 1e-2


def test_reference_optimizer_trains(tiny_config, tmp_path):
  """METHOD.md's reference settings (SGD lr 1e-3, momentum 0.9, batch 32)
  train the individual heads of a small population with the reference
  width (H = 256): with the old head init (s.d. 0.71) validation CCC_ind was
  ~.15 here after 10 epochs, with the fix ~.45."""
  c = tiny_config
  c.optim.name, c.optim.learning_rate, c.optim.momentum = "sgd", 1e-3, 0.9
  c.train.batch_size = 32
  c.model.hidden = 256
  c.train.num_epochs = 10
  r = train.train_and_evaluate(c, str(tmp_path), "individual")
  best = min(r["history"], key=lambda h: h["val_loss"])
  assert min(best["val_ccc_ind"]) > 0.3, best


def test_degenerate_predictions_are_flagged(caplog):
  assert train.warn_if_degenerate("m", [0.0, 0.2])
  assert "predictions are (near) constant" in caplog.text
  # Unstandardised openSMILE features gave s.d. ~50 on the [-1, 1] scale.
  assert train.warn_if_degenerate("m", [47.5, 32.7])
  assert "far outside the rating scale" in caplog.text
  assert not train.warn_if_degenerate("m", [0.1, 0.2])
  assert not train.warn_if_degenerate("m", [5.0, 3.0], categorical=True)


def test_unstandardised_wild_features_are_flagged(tiny_config, tmp_path,
                                                  caplog):
  """openSMILE-like features (s.d. ~1000 around 40) without standardisation
  train a model whose predictions are far off the rating scale (CCC ~ 0):
  training warns. Standardised, the same data trains without the warning."""
  from tests.test_data import _files_config, _write_generic  # pylint: disable=g-import-not-at-top
  c = _files_config(tiny_config, _write_generic(
      tmp_path / "in", emb_scale=1000.0, emb_offset=40.0))
  c.train.batch_size = 8
  c.train.num_epochs = 2
  c.data.standardize = False
  train.train_and_evaluate(c, str(tmp_path / "raw"), "aggregate")
  assert "predictions are far outside the rating scale" in caplog.text
  caplog.clear()
  c.data.standardize = True
  r = train.train_and_evaluate(c, str(tmp_path / "std"), "aggregate")
  assert "predictions are" not in caplog.text
  assert max(r["history"][-1]["val_pred_std"]) < train.MAX_PRED_STD


def _tree_close(a, b) -> bool:
  return all(np.allclose(x, y, rtol=1e-6, atol=1e-7) for x, y in zip(
      jax.tree.leaves(a), jax.tree.leaves(b)))


def test_plateau_early_stop_and_best_checkpoint_on_a_scripted_run(
    tiny_config, tmp_path, monkeypatch):
  """Validation losses are scripted, so what must happen is known: best at
  epoch 2; plateau (patience 2) drops the learning rate x0.1 after epochs
  4 and 6; early stopping (patience 4) ends the run after epoch 6. The
  returned and the restored "best" params are epoch 2's, not the latest."""
  from annojax import checkpointing  # pylint: disable=g-import-not-at-top
  c = tiny_config
  c.optim.learning_rate, c.optim.plateau_factor = 3e-3, 0.1
  c.optim.plateau_patience, c.optim.early_stop_patience = 2, 4
  c.train.num_epochs = 10
  script = iter([1.0, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99, 1.0, 1.0, 1.0])

  def scripted(*args, **kwargs):
    del args, kwargs
    return {"val_loss": next(script), "val_pred_std": [0.5, 0.5],
            "val_ccc_ind": [0.0, 0.0]}
  monkeypatch.setattr(train, "validate", scripted)
  workdir = str(tmp_path)
  prepared = prepare.prepare(c, workdir)
  r = train.train_and_evaluate(c, workdir, "individual", prepared)
  lrs = [h["lr"] for h in r["history"]]
  np.testing.assert_allclose(lrs, [3e-3, 3e-3, 3e-3, 3e-4, 3e-4, 3e-5],
                             rtol=1e-6)
  assert r["best_epoch"] == 2 and r["best_val"] == 0.8
  meta = pipeline.read_meta(prepared.source)
  _, _, target = train._initial_state(c, meta, "individual")  # pylint: disable=protected-access
  ckpts = checkpointing.Checkpoints(
      os.path.join(train.model_dir(workdir, "individual"), "checkpoints"))
  latest, host = ckpts.restore(target, "latest")
  best, _ = ckpts.restore(target, "best")
  ckpts.close()
  assert host["stopped_early"] and host["epoch"] == 6
  # The plateau reached the optimizer itself, not only the log.
  np.testing.assert_allclose(
      float(latest["opt_state"].hyperparams["learning_rate"]), 3e-5,
      rtol=1e-5)
  assert not _tree_close(best["params"], latest["params"])
  assert _tree_close(r["params"], best["params"])
  _, loaded = train.load_best(c, workdir, "individual", prepared)
  assert _tree_close(loaded, best["params"])
  assert not _tree_close(loaded, latest["params"])


def test_reference_sgd_applies_momentum(tiny_config):
  """optax SGD with momentum m: the second update of a constant gradient g
  is -lr * (1 + m) * g (the first -lr * g)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  c = tiny_config
  c.optim.name, c.optim.learning_rate, c.optim.momentum = "sgd", 0.1, 0.9
  tx = train.create_optimizer(c)
  params = {"w": jnp.zeros(3)}
  g = {"w": jnp.array([1.0, -2.0, 0.5])}
  state = tx.init(params)
  u1, state = tx.update(g, state, params)
  u2, _ = tx.update(g, state, params)
  np.testing.assert_allclose(u1["w"], -0.1 * g["w"], rtol=1e-6)
  np.testing.assert_allclose(u2["w"], -0.1 * 1.9 * g["w"], rtol=1e-6)


def test_sparse_and_dense_layouts_take_the_same_step(tiny_config, tmp_path):
  """The gathered-heads (sparse) layout, used from 256 heads up, computes the
  same loss and the same updated params as the dense layout on one batch."""
  import functools  # pylint: disable=g-import-not-at-top
  c = tiny_config
  prepared = prepare.prepare(c, str(tmp_path))
  meta = pipeline.read_meta(prepared.source)
  reader = pipeline.SplitReader(prepared.source, "train")
  examples = reader.take(range(32))
  out = {}
  for layout in ("dense", "sparse"):
    graphdef, tx, state = train._initial_state(c, meta, "individual")  # pylint: disable=protected-access
    batch = pipeline.make_batch(
        examples, layout=layout, num_annotators=meta.num_annotators,
        num_dims=len(meta.dims), embedding_dim=meta.embedding_dim,
        max_raters=pipeline.max_raters(prepared.source, "train"))
    step = jax.jit(functools.partial(
        train.train_step, graphdef=graphdef, tx=tx,
        loss_fn=losses.get("ccc"), seed=0))
    out[layout] = step(state, batch)
  (s_d, m_d), (s_s, m_s) = out["dense"], out["sparse"]
  np.testing.assert_allclose(m_d["loss"], m_s["loss"], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-6),
               s_d["params"], s_s["params"])


def test_training_applies_dropout(tiny_config, tmp_path):
  """With dropout > 0 a training step sees dropped inputs: its loss differs
  from the same step without dropout, and with another seed (key)."""
  import functools  # pylint: disable=g-import-not-at-top
  prepared = prepare.prepare(tiny_config, str(tmp_path))
  meta = pipeline.read_meta(prepared.source)
  examples = pipeline.SplitReader(prepared.source, "train").take(range(32))
  batch = pipeline.make_batch(
      examples, layout="dense", num_annotators=meta.num_annotators,
      num_dims=len(meta.dims), embedding_dim=meta.embedding_dim,
      max_raters=1)
  loss = {}
  for p, seed in ((0.0, 0), (0.5, 0), (0.5, 1)):
    tiny_config.model.dropout = p
    graphdef, tx, state = train._initial_state(tiny_config, meta,  # pylint: disable=protected-access
                                               "individual")
    step = jax.jit(functools.partial(train.train_step, graphdef=graphdef,
                                     tx=tx, loss_fn=losses.get("ccc"),
                                     seed=seed))
    loss[p, seed] = float(step(state, batch)[1]["loss"])
  assert abs(loss[0.5, 0] - loss[0.0, 0]) > 1e-4
  assert abs(loss[0.5, 0] - loss[0.5, 1]) > 1e-4


@pytest.mark.parametrize("update", ["dense", "sparse"])
def test_steps_per_call_trains_the_same_parameters(tmp_path, update):
  """config.train.steps_per_call = K scans the step over blocks of K
  batches (lax.scan, one dispatch): after an epoch (40 steps, so K = 3
  leaves a 1-step remainder taken one at a time) the parameters (bit for
  bit on CPU) and losses equal one step per call's, for the dense update
  and for row-sparse SGD heads (with their epoch-end flush)."""
  runs = {}
  for k in (1, 3):
    c = tiny.get_config()
    c.train.num_epochs = 1
    c.train.steps_per_call = k
    c.data.data_dir = str(tmp_path / "data")  # prepared once
    if update == "sparse":
      c.optim.name, c.optim.learning_rate = "sgd", 0.05
      c.data.layout = c.optim.head_update = "sparse"
    runs[k] = train.train_and_evaluate(c, str(tmp_path / f"k{k}"),
                                       "individual")
  a, b = runs[1], runs[3]
  assert [h["step"] for h in a["history"]] == [h["step"] for h in b["history"]]
  steps = a["history"][0]["step"]
  assert steps % 3 and steps > 6  # full blocks and a remainder
  jax.tree.map(np.testing.assert_array_equal, a["params"], b["params"])
  for h1, h2 in zip(a["history"], b["history"]):
    assert h1["train_loss"] == pytest.approx(h2["train_loss"], rel=1e-6)
    assert h1["val_loss"] == h2["val_loss"]
  # Training moved the parameters far more than the two runs differ.
  k1 = train.head_arrays(a["params"])[0]
  assert np.abs(k1).mean() > 0.05
