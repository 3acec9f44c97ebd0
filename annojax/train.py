"""train_and_evaluate(config, workdir, kind): pre-train one model.

kind = "individual" (one head per source annotator) or "aggregate" (one head
on the consensus). Data-parallel: params replicated, the global batch sharded
on the mesh axis 'data'. Per epoch: train, validate (pooled loss + CCC_ind on
the validation speakers), reduce-on-plateau, early stopping, checkpoint
latest + best. Re-running in the same workdir resumes from `latest`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time

from absl import logging
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np
import optax
from flax import nnx
import tqdm

from annojax import checkpointing
from annojax import head_optim
from annojax import losses
from annojax import metrics
from annojax import models
from annojax import rater_embeddings
from annojax.data import pipeline
from annojax.data import prepare as prepare_lib


def create_optimizer(config) -> optax.GradientTransformation:
  """Optimizer from config; lr is a hyperparameter the plateau logic sets."""
  o = config.optim
  if o.name == "sgd":
    return optax.inject_hyperparams(optax.sgd)(
        learning_rate=o.learning_rate, momentum=o.momentum)
  if o.name == "adam":
    return optax.inject_hyperparams(optax.adam)(learning_rate=o.learning_rate)
  raise ValueError(f"unknown optimizer {o.name!r}; one of sgd, adam")


def make_mesh():
  # Auto axes: XLA propagates the batch sharding through the head gather;
  # explicit axes would need an out_sharding on every gather.
  return jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))


def head_pull(heads: dict, batch: dict, mask) -> jax.Array:
  """Mean squared distance of the batch's rated heads from the mean head
  (stop-gradient: the population head is the target, not a parameter), over
  the rated (clip, head) slots. heads = {kernel [A, D, H], bias [A, D]}."""
  center = jax.tree.map(lambda x: jax.lax.stop_gradient(x.mean(0)), heads)
  dev = ((heads["kernel"] - center["kernel"]) ** 2).sum((1, 2)) + (
      (heads["bias"] - center["bias"]) ** 2).sum(1)             # [A]
  if "annotators" in batch:  # sparse layout: each clip's K rating slots
    per_slot = dev[batch["annotators"]]
  else:  # dense layout: [B, A] mask over every head
    per_slot = dev[None, :]
  return (mask * per_slot).sum() / jnp.maximum(mask.sum(), 1.0)


def train_step(state, batch, *, graphdef, tx, loss_fn, seed,
               head_shrinkage=0.0):
  """One SGD step on a global batch; returns (state, measurements).

  head_shrinkage > 0 adds head_shrinkage x head_pull to the loss: each
  rated head is pulled toward the mean of all heads, so heads fit to few
  ratings share the population's strength (config.model.head_shrinkage)."""
  rng = jax.random.fold_in(jax.random.key(seed), state["step"])
  mask = batch["label_mask"] * batch["valid"][:, None]

  def objective(params):
    model = nnx.merge(graphdef, params)
    z = model.trunk(batch["embedding"], rng)
    pred = model.heads(z, batch.get("annotators"))
    loss, per_dim = loss_fn(pred, batch["labels"], mask)
    loss = loss + models.mean_listener_loss(model.heads, z, batch["labels"],
                                         mask, loss_fn)
    if head_shrinkage:
      loss = loss + head_shrinkage * head_pull(params["heads"]["stack"],
                                               batch, mask)
    return loss, per_dim

  (loss, per_dim), grads = jax.value_and_grad(objective, has_aux=True)(
      state["params"])
  updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  new_state = {"step": state["step"] + 1, "params": params,
               "opt_state": opt_state}
  return new_state, {"loss": loss, "per_dim": per_dim,
                     "grad_norm": optax.tree.norm(grads)}


@functools.partial(jax.jit, static_argnums=0)
def _features(graphdef, trunk_params, x):
  return nnx.merge(graphdef, trunk_params)(x)


def trunk_features(graphdef, params, embeddings: np.ndarray,
                   batch: int = 2048) -> np.ndarray:
  """z [C, D, H] for all clips (eval mode), in fixed-size jit'd chunks."""
  trunk_def = nnx.graphdef(nnx.merge(graphdef, params).trunk)
  out = []
  for s in range(0, len(embeddings), batch):
    x = embeddings[s:s + batch]
    pad = batch - len(x) if len(embeddings) > batch else 0
    xp = np.pad(x, ((0, pad), (0, 0)))
    out.append(np.asarray(_features(trunk_def, params["trunk"], xp))[:len(x)])
  return np.concatenate(out)


def sharded_trunk_features(features_fn, trunk_params, embeddings: np.ndarray,
                           sharding, batch: int) -> np.ndarray:
  """z [C, D, H] for all clips, the work split over every device of every
  process: each global batch is padded to `batch` rows and each process
  embeds only its slice, so all processes run the same number of steps.
  features_fn returns a replicated array; every process gets all of z."""
  pc, pi = jax.process_count(), jax.process_index()
  out = []
  for s in range(0, len(embeddings), batch):
    x = embeddings[s:s + batch]
    xp = np.pad(x, ((0, batch - len(x)), (0, 0)))
    local = xp[pi * batch // pc:(pi + 1) * batch // pc]
    z = features_fn(trunk_params,
                    jax.make_array_from_process_local_data(sharding, local))
    out.append(np.asarray(z.addressable_data(0))[:len(x)])
  return np.concatenate(out)


def head_arrays(params) -> tuple[np.ndarray, np.ndarray]:
  """Head kernel [A, D, H] and bias [A, D] as host arrays (a low-rank
  model's heads materialised; the embedding family has none)."""
  family = models.family_of_params(params)
  if family == "heads":
    h = params["heads"]["stack"]
    return np.asarray(h["kernel"]), np.asarray(h["bias"])
  if family == "lowrank":
    return tuple(np.asarray(x) for x in models.lowrank_heads(params["heads"]))
  raise ValueError("an embedding-family model has no linear heads (its "
                   "annotators share a nonlinear decoder): use "
                   "annojax/rater_embeddings.py")


def consensus_outputs(graphdef, params, embeddings: np.ndarray
                      ) -> np.ndarray:
  """The aggregate (one-head) model's output [C, D] on embeddings [C, F]."""
  kernel, bias = head_arrays(params)
  return np.einsum("cdh,dh->cd", trunk_features(graphdef, params, embeddings),
                   kernel[0]) + bias[0]


def pair_predictions(z, kernel, bias, pair_clip, pair_head) -> np.ndarray:
  """Prediction of head pair_head[i] on clip pair_clip[i] -> [P, D]."""
  return (np.einsum("pdh,pdh->pd", z[pair_clip], kernel[pair_head])
          + bias[pair_head])


def pair_outputs(params, z, pair_clip, pair_head) -> np.ndarray:
  """Prediction of annotator pair_head[i] on clip pair_clip[i] -> [P, D],
  for any family (pair_predictions on the linear heads, else the
  embedding decoder)."""
  if models.family_of_params(params) != "embedding":
    return pair_predictions(z, *head_arrays(params), pair_clip, pair_head)
  return rater_embeddings.pair_outputs(params["heads"], z, pair_clip,
                                       pair_head)


def validate(graphdef, params, table: pipeline.ClipTable, kind: str,
             loss_name: str, min_count: int = 2,
             z: np.ndarray | None = None) -> dict:
  """Pooled loss (the training objective) and CCC_ind on a split (for a
  categorical loss, the mean per-annotator agreement instead)."""
  if z is None:
    z = trunk_features(graphdef, params, table.embeddings)
  individual = kind != "aggregate"
  heads = (table.pair_annotator if individual
           else np.zeros_like(table.pair_annotator))
  pred = pair_outputs(params, z, table.pair_clip, heads)
  if individual:
    obj_pred, obj_label = pred, table.pair_values
  else:  # the aggregate's objective: the consensus of all ratings
    clips, first = np.unique(table.pair_clip, return_index=True)
    obj_pred = pred[first]
    obj_label = table.consensus[clips]
  loss, _ = losses.get(loss_name)(jnp.asarray(obj_pred),
                                  jnp.asarray(obj_label),
                                  jnp.ones(len(obj_pred)))
  spread = np.asarray(pred, np.float64).std(0)
  if loss_name in losses.CATEGORICAL:
    return {"val_loss": float(loss), "val_pred_std": spread.tolist(),
            "val_agreement_ind": metrics.categorical_ind(
                pred, table.pair_values, table.pair_annotator)[
                    "agreement_ind"]}
  return {"val_loss": float(loss), "val_pred_std": spread.tolist(),
          "val_ccc_ind": metrics.ccc_ind(pred, table.pair_values,
                                         table.pair_annotator,
                                         min_count).tolist()}


def step_function(config, meta, kind: str, graphdef, tx, seed: int):
  """The (unjitted) training step of this model: the dense optax update of
  all parameters, or row-sparse head updates (annojax/head_optim.py)."""
  kw = dict(graphdef=graphdef, tx=tx, loss_fn=losses.get(config.train.loss),
            seed=seed)
  if head_optim.resolve(config, meta, kind) == "dense":
    return functools.partial(train_step, **kw, head_shrinkage=(
        head_optim.shrinkage(config) if kind != "aggregate" else 0.0))
  return functools.partial(head_optim.train_step, **kw,
                           **_head_rule(config))


def multi_step_function(step):
  """Several steps in one call: `step` scanned (lax.scan) over a block of
  batches stacked on a leading axis [K, B, ...] -> (state, each step's
  measurements stacked [K]). One dispatch runs K steps, so on an
  accelerator a step costs what the model costs, not a host round trip
  (config.train.steps_per_call)."""
  return lambda state, block: jax.lax.scan(step, state, block)


def blocks(batches, size: int):
  """Groups an iterator of batches into lists of `size` (the last shorter)."""
  group = []
  for b in batches:
    group.append(b)
    if len(group) == size:
      yield group
      group = []
  if group:
    yield group


def flush_function(config, meta, kind: str):
  """state -> state with every parameter current (before params are read);
  None for the dense update, whose state always is."""
  if head_optim.resolve(config, meta, kind) == "dense":
    return None
  return functools.partial(head_optim.flush, **_head_rule(config))


def _head_rule(config) -> dict:
  return {"optimizer": config.optim.name,
          "momentum": float(config.optim.get("momentum") or 0.0)}


def with_learning_rate(opt_state, lr):
  """The optax.inject_hyperparams state with learning_rate = lr (for a
  row-sparse run, its trunk's, which the heads' update reads)."""
  if isinstance(opt_state, dict):  # row-sparse: trunk (+ shared) optax
    return {**opt_state, **{k: with_learning_rate(opt_state[k], lr)
                            for k in ("trunk", "shared") if k in opt_state}}
  hyper = dict(opt_state.hyperparams)
  hyper["learning_rate"] = jnp.asarray(lr, hyper["learning_rate"].dtype)
  return opt_state._replace(hyperparams=hyper)


def replicate_seed(config, replicate: int) -> int:
  """The training seed of replicate r (init, data order, dropout): each
  evaluation seed pre-trains its own models, so seeds are independent
  replicates, not repeats of one model."""
  return int(config.train.seed) + int(replicate)


def _initial_state(config, meta, kind, replicate: int = 0):
  model = models.create_model(config, meta, kind,
                              seed=replicate_seed(config, replicate))
  graphdef, params = nnx.split(model)
  params = nnx.to_pure_dict(params)
  tx = create_optimizer(config)
  if head_optim.resolve(config, meta, kind) == "sparse":
    opt_state = head_optim.init_state(params, tx, config.optim.name)
  else:
    opt_state = tx.init(params)
  state = {"step": jnp.zeros((), jnp.int32), "params": params,
           "opt_state": opt_state}
  return graphdef, tx, state


def progress_bar(config) -> bool:
  """Bars on host 0 in a terminal; logs (CI, SLURM) get the epoch lines."""
  return bool(config.train.progress_bar and jax.process_index() == 0
              and sys.stderr.isatty())


def model_dir(workdir: str, kind: str, replicate: int = 0) -> str:
  """<workdir>/<kind> for replicate 0 (the one export uses), else
  <workdir>/<kind>_seed<r>."""
  return os.path.join(workdir, kind if not replicate
                      else f"{kind}_seed{replicate}")


def _origin(config, kind: str, prepared: prepare_lib.Prepared,
            meta: pipeline.Meta) -> dict:
  """What a model directory's checkpoints were trained on: the source
  dataset (its name carries the data fingerprint), the model's shape and,
  for row-sparse head updates, that (their optimizer state differs)."""
  origin = {"dataset": "/".join(os.path.normpath(prepared.source).split(
                os.sep)[-2:]),
            "kind": kind, "model": {**config.model.to_dict(),
                                    "annotators": models.family_of(config,
                                                                   kind)}}
  if head_optim.resolve(config, meta, kind) == "sparse":
    origin["head_update"] = f"sparse {config.optim.name}"
  return origin


# config.model keys added after checkpoints were written, with the value
# that reproduces the older training (such checkpoints stay usable).
MODEL_DEFAULTS = {"head_shrinkage": 0.0, "annotators": "heads",
                  "embedding_dim": 16, "decoder_hidden": 64}


def check_origin(out_dir: str, origin: dict) -> None:
  """Refuses checkpoints trained on other data or another model shape.

  A changed data config gets a new dataset, but its workdir may still hold
  the checkpoints of the old one; resuming (or exporting) those would
  silently give a model of other data, or, with another head count, an
  obscure Orbax shape error.
  """
  path = os.path.join(out_dir, "origin.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    stored = json.load(f)
  for o in (stored, origin):  # keys added since, at their defaults
    if isinstance(o.get("model"), dict):
      o["model"] = {**MODEL_DEFAULTS, **o["model"]}
  if stored != origin:
    diff = "; ".join(f"{k}: {stored.get(k)!r} there, {origin.get(k)!r} now"
                     for k in sorted(set(stored) | set(origin))
                     if stored.get(k) != origin.get(k))
    raise ValueError(
        f"{out_dir} holds checkpoints trained on something other than this "
        f"run's data or model ({diff}). Use another --workdir, or delete "
        "that directory to train afresh.")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       kind: str = "individual",
                       prepared: prepare_lib.Prepared | None = None,
                       replicate: int = 0) -> dict:
  """Trains (or resumes) one model; returns its best params and history.

  replicate r trains with seed config.train.seed + r (init, data order,
  dropout) into model_dir(workdir, kind, r).
  """
  prepared = prepared or prepare_lib.prepare(config, workdir)
  meta = pipeline.read_meta(prepared.source)
  seed = replicate_seed(config, replicate)
  out_dir = model_dir(workdir, kind, replicate)
  os.makedirs(out_dir, exist_ok=True)
  is_host0 = jax.process_index() == 0
  origin = _origin(config, kind, prepared, meta)
  check_origin(out_dir, origin)
  if is_host0:
    with open(os.path.join(out_dir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
    prepare_lib.write_json(os.path.join(out_dir, "origin.json"), origin)

  # Mesh: data parallel over every device of every process.
  gb = config.train.batch_size
  if gb % jax.device_count():
    raise ValueError(f"config.train.batch_size={gb} is not divisible by "
                     f"{jax.device_count()} devices")
  mesh = make_mesh()
  data_sharding = NamedSharding(mesh, P("data"))
  repl = NamedSharding(mesh, P())

  # Data.
  layout = (pipeline.choose_layout(config.data.layout, meta.num_annotators)
            if kind != "aggregate" else "consensus")
  reader = pipeline.SplitReader(prepared.source, "train",
                                cache=config.data.cache)
  batch_kw = dict(layout=layout, num_annotators=meta.num_annotators,
                  num_dims=len(meta.dims), embedding_dim=meta.embedding_dim,
                  max_raters=pipeline.max_raters(prepared.source, "train"))
  val_table = pipeline.load_table(prepared.source, "validation")

  # Model, optimizer, and (if there is one) the checkpoint to resume from.
  graphdef, tx, state = _initial_state(config, meta, kind, replicate)
  ckpts = checkpointing.Checkpoints(os.path.join(out_dir, "checkpoints"))
  host = {"epoch": 0, "best_val": math.inf, "since_best": 0,
          "since_lr_drop": 0, "lr": config.optim.learning_rate,
          "stopped_early": False, "history": []}
  # Replicate first, then restore INTO the replicated target: a restored
  # array committed to one local device cannot be device_put onto the
  # global mesh of a multi-process run (a cross-host transfer).
  state = jax.device_put(state, repl)
  if ckpts.has_latest():
    state, host = ckpts.restore(state)
    logging.info("%s: resuming after epoch %d (step %d)", kind,
                 host["epoch"], int(state["step"]))
  step = step_function(config, meta, kind, graphdef, tx, seed)
  step_fn = jax.jit(step, donate_argnums=0, out_shardings=(repl, repl))
  # K steps per dispatch: blocks of K batches (the epoch's last, shorter
  # block one step at a time), the same steps in the same order.
  per_call = int(config.train.steps_per_call)
  if per_call < 1:
    raise ValueError(f"config.train.steps_per_call={per_call}: at least 1")
  block_fn = per_call > 1 and jax.jit(multi_step_function(step),
                                      donate_argnums=0,
                                      out_shardings=(repl, repl))
  block_sharding = NamedSharding(mesh, P(None, "data"))
  flush = flush_function(config, meta, kind)
  flush = flush and jax.jit(flush, donate_argnums=0, out_shardings=repl)

  # The plateau's new learning rate enters the optimizer state through a
  # jitted update, so the state stays one consistent global pytree (a host
  # value device_put into it is not a proper global array in a
  # multi-process run, and Orbax then fails to save it).
  set_lr = jax.jit(with_learning_rate, out_shardings=repl, donate_argnums=0)

  # Validation embeds the clips data-parallel too (padded global batches).
  trunk_def = nnx.graphdef(nnx.merge(graphdef, state["params"]).trunk)
  features_fn = jax.jit(lambda p, x: nnx.merge(trunk_def, p)(x),
                        out_shardings=repl)
  eval_batch = jax.device_count() * max(1, 1024 // jax.device_count())
  n_params = sum(x.size for x in jax.tree.leaves(state["params"]))
  logging.info("%s model (%s): %d annotators, %d params; %d train clips, "
               "global batch %d on %d devices", kind,
               models.family_of(config, kind), meta.num_annotators if
               kind != "aggregate" else 1, n_params, len(reader), gb,
               jax.device_count())
  log_path = os.path.join(out_dir, "metrics.jsonl")
  while host["epoch"] < config.train.num_epochs and not host["stopped_early"]:
    epoch = host["epoch"]
    t0 = time.time()
    batches = pipeline.train_batches(reader, gb, seed, epoch,
                                     window=config.data.shuffle_window,
                                     **batch_kw)
    bar = tqdm.tqdm(batches, total=len(reader) // gb,
                    desc=f"{kind} epoch {epoch + 1}/{config.train.num_epochs}",
                    disable=not progress_bar(config),
                    leave=False)
    losses_sum, n_steps = 0.0, 0
    for group in blocks(bar, per_call):
      if block_fn and len(group) == per_call:
        block = {k: np.stack([b[k] for b in group]) for k in group[0]}
        state, ms = block_fn(state, pipeline.to_global(block,
                                                       block_sharding))
        m = jax.tree.map(lambda x: x[-1], ms)
        losses_sum += ms["loss"].sum()
      else:
        for batch in group:
          state, m = step_fn(state, pipeline.to_global(batch, data_sharding))
          losses_sum += m["loss"]
      if (n_steps + len(group)) // 50 > n_steps // 50:
        bar.set_postfix(loss=f"{float(m['loss']):.3f}")
      n_steps += len(group)
    train_loss = float(losses_sum) / max(n_steps, 1)
    # Guard: stop loudly on divergence rather than checkpoint garbage.
    if not np.isfinite(train_loss) or not np.isfinite(float(m["grad_norm"])):
      raise FloatingPointError(
          f"{kind}: non-finite loss/grad norm at epoch {epoch + 1}, step "
          f"{int(state['step'])} (loss {train_loss}, grad norm "
          f"{float(m['grad_norm'])}); lower config.optim.learning_rate")
    if flush:  # row-sparse heads: every head up to this step
      state = flush(state)

    # Params are replicated: every process holds a full local copy.
    params_host = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)),
                               state["params"])
    z_val = sharded_trunk_features(features_fn, state["params"]["trunk"],
                                   val_table.embeddings, data_sharding,
                                   eval_batch)
    val = validate(graphdef, params_host, val_table, kind, config.train.loss,
                   config.eval.min_test, z=z_val)
    improved = val["val_loss"] < host["best_val"] - 1e-6
    host["epoch"] = epoch + 1
    if improved:
      host.update(best_val=val["val_loss"], since_best=0, since_lr_drop=0)
    else:
      host["since_best"] += 1
      host["since_lr_drop"] += 1
      if host["since_lr_drop"] >= config.optim.plateau_patience:
        host["lr"] *= config.optim.plateau_factor
        host["since_lr_drop"] = 0
        state["opt_state"] = set_lr(state["opt_state"], host["lr"])
        logging.info("%s: plateau, learning rate -> %g", kind, host["lr"])
      if host["since_best"] >= config.optim.early_stop_patience:
        host["stopped_early"] = True
    record = {"epoch": epoch + 1, "step": int(state["step"]),
              "train_loss": train_loss, **val, "lr": host["lr"],
              "grad_norm": float(m["grad_norm"]),
              "seconds": round(time.time() - t0, 2)}
    host["history"].append(record)
    logging.info("%s %s", kind, json.dumps(record))
    if is_host0:
      with open(log_path, "a") as f:
        f.write(json.dumps(record) + "\n")
    ckpts.save(epoch + 1, state, host, val["val_loss"], improved)
  ckpts.wait()
  best_state, best_host = ckpts.restore(state, "best")
  ckpts.close()
  if best_host["history"]:
    warn_if_degenerate(f"{kind} (seed {seed})",
                       best_host["history"][-1].get("val_pred_std"),
                       config.train.loss in losses.CATEGORICAL)
  return {"graphdef": graphdef, "params": jax.device_get(best_state["params"]),
          "history": host["history"], "best_val": host["best_val"],
          "best_epoch": len(best_host["history"])}


# A model whose predictions vary less than this (on the [-1, 1] rating
# scale) predicts a constant; one whose predictions vary more than
# MAX_PRED_STD is far off a scale whose ratings have s.d. <= 1. Both score
# CCC ~ 0 and are what unstandardised features with huge ranges (openSMILE:
# F0 ~40 semitones beside jitter ~0.01) produce.
CONSTANT_PRED_STD = 1e-3
MAX_PRED_STD = 2.0


def warn_if_degenerate(name: str, pred_std, categorical: bool = False
                       ) -> bool:
  """Logs a warning when predictions are (near) constant or, for ratings,
  far outside the rating scale; returns whether."""
  if pred_std is None:
    return False
  std = np.atleast_1d(np.asarray(pred_std, np.float64))
  constant = (std < CONSTANT_PRED_STD).any()
  wild = not categorical and (std > MAX_PRED_STD).any()
  if constant or wild:
    logging.warning(
        "%s: predictions are %s (s.d. %s on the [-1, 1] scale): the model "
        "learnt nothing usable. Check the features (config.data.standardize)"
        " and the learning rate.", name,
        "(near) constant" if constant else "far outside the rating scale",
        np.round(std, 6).tolist())
    return True
  return False


def load_best(config, workdir: str, kind: str,
              prepared: prepare_lib.Prepared, replicate: int = 0) -> tuple:
  """(graphdef, best params) of a trained model, restored from Orbax."""
  meta = pipeline.read_meta(prepared.source)
  graphdef, _, state = _initial_state(config, meta, kind, replicate)
  out_dir = model_dir(workdir, kind, replicate)
  check_origin(out_dir, _origin(config, kind, prepared, meta))
  ckpts = checkpointing.Checkpoints(os.path.join(out_dir, "checkpoints"))
  best, _ = ckpts.restore(state, "best")
  ckpts.close()
  return graphdef, jax.device_get(best["params"])
