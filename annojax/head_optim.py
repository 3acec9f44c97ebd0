"""Row-sparse updates of the annotator heads: a step's cost independent of A.

A batch of B clips with at most K raters each has gradients for at most B x K
heads, but an optax update of the head parameters [A, D, H] reads and writes
every head's parameters and optimizer state: the step slows in proportion to
the number of heads A. Here a step gathers only the batch's distinct heads
(padded to a static B x K rows), differentiates with respect to those rows,
updates their parameters and optimizer state and scatters them back; the trunk
keeps the ordinary optax update.

Semantics, per optimizer (config.optim.name):

  sgd (exact): dense SGD with momentum mu moves a head even in steps where it
    has no gradient (its momentum decays: m <- mu m, p <- p - lr m). Each head
    remembers the step it was last brought up to (`last`); when a batch
    touches it, the n skipped steps are applied in closed form
    (p <- p - lr m mu (1 - mu^n) / (1 - mu), m <- mu^n m) before its gradient
    is taken, and `flush` brings every head up to date before anything reads
    all heads (validation, checkpoints, export). The result equals the dense
    optax.sgd update (tested to float tolerance), provided the learning rate
    is constant between flushes: it changes only at epoch ends, after one.
  adam (lazy, as TF's LazyAdam): a head's moments and parameters change only
    in steps whose batch has ratings of it; bias correction uses the global
    step. This differs from dense Adam, where a head without gradient keeps
    moving with its decaying first moment; equal to it when every head has a
    rating in every step (tested).

config.optim.head_update: "dense" (the reference: optax over all parameters),
"sparse" (the above), or "auto" (sparse where it is exact and pays: SGD on
the sparse label layout with more heads than a batch has rating slots, B x
K; dense otherwise).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from annojax import models
from annojax.data import pipeline

MODES = ("auto", "dense", "sparse")
_ADAM = dict(b1=0.9, b2=0.999, eps=1e-8)  # optax.adam's defaults


def shrinkage(config) -> float:
  """config.model.head_shrinkage (0 when unset: the paper's free heads)."""
  return float(config.model.get("head_shrinkage", 0.0) or 0.0)


def resolve(config, meta, kind: str) -> str:
  """The head update a model trains with: "dense" or "sparse"."""
  mode = config.optim.get("head_update", "auto")
  if mode not in MODES:
    raise ValueError(f"unknown config.optim.head_update {mode!r}; one of "
                     f"{MODES}")
  if kind == "aggregate" or mode == "dense":
    return "dense"
  shrink = shrinkage(config)
  if shrink and models.family_of(config, kind) != "heads":
    raise ValueError(
        "config.model.head_shrinkage applies to the free heads "
        f"(config.model.annotators='heads'), not the {kind!r} model's "
        f"{models.family_of(config, kind)} family")
  if shrink and mode == "auto":
    return "dense"  # the pull toward the mean head reads every head
  if shrink:
    raise ValueError(
        "config.model.head_shrinkage > 0 needs the dense head update (the "
        "pull toward the mean head reads every head each step); set "
        "config.optim.head_update='dense' or 'auto'")
  layout = pipeline.choose_layout(config.data.layout, meta.num_annotators)
  if mode == "auto":
    # Row-sparse SGD is exact; it is also faster once the heads outnumber a
    # batch's rating slots (bench/README.md: at batch 256 x 10 raters, 0.8x
    # the dense update's rate at 2,000 heads, 2.6x at 13,000).
    slots = config.train.batch_size * meta.max_raters.get("train", 0)
    exact = layout == "sparse" and config.optim.name == "sgd"
    return "sparse" if exact and meta.num_annotators > slots else "dense"
  if layout != "sparse":
    raise ValueError(
        "config.optim.head_update='sparse' needs the sparse label layout; "
        f"config.data.layout={config.data.layout!r} gives {layout!r} with "
        f"{meta.num_annotators} heads (set config.data.layout='sparse')")
  return "sparse"


def init(heads: dict, optimizer: str) -> dict:
  """Row-wise optimizer state for the heads {kernel [A, D, H], bias [A, D]}."""
  zeros = jax.tree.map(jnp.zeros_like, heads)
  if optimizer == "sgd":
    num_heads = jax.tree.leaves(heads)[0].shape[0]
    return {"momentum": zeros, "last": jnp.zeros((num_heads,), jnp.int32)}
  if optimizer == "adam":
    return {"mu": zeros, "nu": jax.tree.map(jnp.zeros_like, heads)}
  raise ValueError(f"unknown optimizer {optimizer!r}; one of sgd, adam")


def shared_heads(params: dict) -> dict:
  """The heads module's parameters other than the per-annotator rows
  (lowrank's mean and basis, the embedding decoder; {} for free heads)."""
  return {k: v for k, v in params["heads"].items() if k != "stack"}


def init_state(params: dict, tx: optax.GradientTransformation,
               optimizer: str) -> dict:
  """opt_state of a row-sparse run: optax on the trunk (and the heads'
  shared parameters, if any), rows on the per-annotator stack."""
  state = {"trunk": tx.init(params["trunk"]),
           "heads": init(params["heads"]["stack"], optimizer)}
  shared = shared_heads(params)
  if shared:
    state["shared"] = tx.init(shared)
  return state


def learning_rate(opt_state) -> jax.Array:
  return opt_state["trunk"].hyperparams["learning_rate"]


def batch_rows(annotators: jax.Array, mask: jax.Array, num_heads: int
               ) -> tuple[jax.Array, jax.Array]:
  """Where each of the B x K slots' head is updated: (rows, first).

  first: the first slot in the batch with the same head (masked slots count
  as one head of their own); a slot's gradient is summed into that one.
  rows: the head where a slot is its head's first, else a distinct
  out-of-range row (num_heads + slot) that is never written back, so the
  write-back sees unique indices. No sort: one scatter-min into an [A + 1]
  int32 table (80 kB at 20,000 heads).
  """
  heads = jnp.where(mask > 0, annotators, num_heads).ravel()
  idx = jnp.arange(heads.size, dtype=jnp.int32)
  first = jnp.full((num_heads + 1,), heads.size, jnp.int32).at[heads].min(idx)
  first = first[heads]
  rows = jnp.where((first == idx) & (heads < num_heads), heads,
                   num_heads + idx)
  return rows, first


def _gather(tree, indices):
  # A plain gather: unsigned indices (no wrapping of negative ones) that
  # are promised in bounds (no clamping or fill). Otherwise XLA on CPU
  # recomputes that index arithmetic for every gathered element.
  indices = indices.astype(jnp.uint32)
  return jax.tree.map(
      lambda x: x.at[indices].get(mode="promise_in_bounds"), tree)


def _scatter(tree, rows, new):
  return jax.tree.map(lambda x, v: x.at[rows].set(v, mode="drop",
                                                  unique_indices=True),
                      tree, new)


def _catch_up(p, m, skipped, lr, mu: float):
  """Applies `skipped` [U] steps without gradient of SGD momentum mu to the
  rows p, m in closed form: p - lr m (mu + ... + mu^n), mu^n m."""

  def coef(x):
    n = skipped.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)
    decay = mu ** n
    return decay, (n if mu == 1 else mu * (1 - decay) / (1 - mu))

  p = jax.tree.map(lambda p, m: p - lr * coef(m)[1] * m, p, m)
  return p, jax.tree.map(lambda m: coef(m)[0] * m, m)


def _sgd_rows(p, g, s, step, lr, mu):
  m = jax.tree.map(lambda m, g: mu * m + g, s["momentum"], g)
  p = jax.tree.map(lambda p, m: p - lr * m, p, m)
  return p, {"momentum": m}


def _adam_rows(p, g, s, step, lr, mu):
  del mu
  b1, b2, eps = _ADAM["b1"], _ADAM["b2"], _ADAM["eps"]
  t = (step + 1).astype(jnp.float32)
  m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, s["mu"], g)
  v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, s["nu"], g)
  p = jax.tree.map(
      lambda p, m, v: p - lr * (m / (1 - b1 ** t))
      / (jnp.sqrt(v / (1 - b2 ** t)) + eps), p, m, v)
  return p, {"mu": m, "nu": v}


def train_step(state, batch, *, graphdef, tx, loss_fn, seed,
               optimizer: str = "sgd", momentum: float = 0.9):
  """train.train_step with row-sparse head updates (sparse layout batches).

  Each of the B x K slots gathers its head's parameters and optimizer state
  (brought up to this step), the forward pass uses them directly, and each
  head's gradient is the sum over its slots, updated at its first slot.
  """
  rng = jax.random.fold_in(jax.random.key(seed), state["step"])
  mask = batch["label_mask"] * batch["valid"][:, None]
  params, opt = state["params"], state["opt_state"]
  heads, hstate = params["heads"]["stack"], opt["heads"]
  b, k = batch["annotators"].shape
  step, lr = state["step"], learning_rate(opt)
  rows, first = batch_rows(batch["annotators"], mask,
                           jax.tree.leaves(heads)[0].shape[0])
  # Slots gather by the batch's own annotator indices (all in range; a
  # masked slot gathers some head, takes no gradient and is not written).
  slots = batch["annotators"].ravel()
  p_slots = _gather(heads, slots)
  s_slots = {n: _gather(v, slots) for n, v in hstate.items() if n != "last"}
  if optimizer == "sgd":  # bring the heads up to this step first
    skipped = step - _gather(hstate["last"], slots)
    p_slots, s_slots["momentum"] = _catch_up(p_slots, s_slots["momentum"],
                                             skipped, lr, momentum)

  def objective(trunk, shared, p_slots):
    model = nnx.merge(graphdef, {"trunk": trunk,
                                 "heads": {**shared, "stack": p_slots}})
    z = model.trunk(batch["embedding"], rng)
    w = jax.tree.map(lambda x: x.reshape((b, k) + x.shape[1:]), p_slots)
    loss, per_dim = loss_fn(model.heads.slots(z, w), batch["labels"], mask)
    return loss + models.mean_listener_loss(model.heads, z, batch["labels"],
                                            mask, loss_fn), per_dim

  shared = shared_heads(params)
  (loss, per_dim), (g_trunk, g_shared, g_slots) = jax.value_and_grad(
      objective, argnums=(0, 1, 2), has_aux=True)(params["trunk"], shared,
                                                  p_slots)
  updates, trunk_opt = tx.update(g_trunk, opt["trunk"], params["trunk"])
  trunk = optax.apply_updates(params["trunk"], updates)
  new_opt = {"trunk": trunk_opt}
  if shared:
    updates, new_opt["shared"] = tx.update(g_shared, opt["shared"], shared)
    shared = optax.apply_updates(shared, updates)
  # A head's gradient: the sum over its slots, at its first slot (the other
  # slots' rows are never written back: their values do not matter).
  later = (first != jnp.arange(first.size)).astype(jnp.float32)
  g_rows = jax.tree.map(
      lambda g: g.at[first].add(
          g * later.reshape((-1,) + (1,) * (g.ndim - 1))), g_slots)
  rule = _sgd_rows if optimizer == "sgd" else _adam_rows
  p_rows, s_rows = rule(p_slots, g_rows, s_slots, step, lr, momentum)

  new_hstate = {n: _scatter(hstate[n], rows, v) for n, v in s_rows.items()}
  if optimizer == "sgd":
    new_hstate["last"] = _scatter(hstate["last"], rows,
                                  jnp.full(rows.shape, step + 1, jnp.int32))
  new_state = {
      "step": step + 1,
      "params": {"trunk": trunk,
                 "heads": {**shared, "stack": _scatter(heads, rows, p_rows)}},
      "opt_state": {**new_opt, "heads": new_hstate}}
  return new_state, {"loss": loss, "per_dim": per_dim,
                     "grad_norm": optax.tree.norm((g_trunk, g_shared,
                                                   g_rows))}


def flush(state, *, optimizer: str = "sgd", momentum: float = 0.9):
  """Every head brought up to the current step (SGD; Adam is lazy: as is)."""
  if optimizer != "sgd":
    return state
  opt = state["opt_state"]
  hstate = opt["heads"]
  heads = state["params"]["heads"]["stack"]
  skipped = state["step"] - hstate["last"]
  heads, mom = _catch_up(heads, hstate["momentum"], skipped,
                         learning_rate(opt), momentum)
  return {"step": state["step"],
          "params": {**state["params"], "heads": {
              **state["params"]["heads"], "stack": heads}},
          "opt_state": {**opt, "heads": {
              "momentum": mom,
              "last": jnp.full_like(hstate["last"], state["step"])}}}
