"""flax.nnx models: a shared trunk, per-dimension branches, annotator heads.

  embedding [B, F] -> dropout -> Dense(H)+ReLU                      (trunk)
    -> per dimension d: 2 x (Dense(H)+ReLU)  -> z [B, D, H]         (branches)
    -> one output per annotator per dimension -> [B, A, D]          (heads)

How the annotators are modelled (config.model.annotators, FAMILIES):
  heads      one free linear unit per annotator (the paper's): kernel
             [A, D, H], bias [A, D].
  lowrank    linear heads constrained to mean + U e_a: an r-dim embedding
             e_a per annotator (r = config.model.embedding_dim).
  embedding  an r-dim embedding e_a per annotator conditioning one shared
             nonlinear decoder on the trunk's features (LDNet / user-token
             style): per dimension d, w_d . relu(W_d z_d + V_d e_a + b_d) + c_d.
The per-annotator parameters are a stack built with nnx.vmap (leading axis
A: the rows the row-sparse update touches, head_optim.py); the rest of the
heads module (lowrank's mean and basis, the decoder) is shared. The
embedding families also learn a mean listener (LDNet's virtual listener): an
embedding trained on each clip's mean rating. The aggregate (consensus)
baseline is the trunk with a single free head.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx


def stacked(num: int, make, rngs: nnx.Rngs):
  """`num` modules make(rngs) stacked with nnx.vmap, each from its own split
  of rngs: every parameter gains a leading axis of size num."""

  @nnx.split_rngs(splits=num)
  @nnx.vmap(axis_size=num)
  def create(rngs: nnx.Rngs):
    return make(rngs)

  return create(rngs)


class Branches(nnx.Module):
  """D parallel 2-layer MLPs, one per emotion dimension (stacked params)."""

  def __init__(self, num_dims: int, hidden: int, *, rngs: nnx.Rngs):
    self.mlps = stacked(num_dims, lambda r: _Mlp(hidden, rngs=r), rngs)

  def __call__(self, h: jax.Array) -> jax.Array:
    apply = nnx.vmap(lambda m, x: m(x), in_axes=(0, None), out_axes=1)
    return apply(self.mlps, h)  # [B, D, H]


class _Mlp(nnx.Module):

  def __init__(self, hidden: int, *, rngs: nnx.Rngs):
    self.l1 = nnx.Linear(hidden, hidden, rngs=rngs)
    self.l2 = nnx.Linear(hidden, hidden, rngs=rngs)

  def __call__(self, x):
    return nnx.relu(self.l2(nnx.relu(self.l1(x))))


class Trunk(nnx.Module):
  """Dropout -> shared Dense+ReLU -> per-dimension branches: z [B, D, H]."""

  def __init__(self, in_features: int, num_dims: int, hidden: int,
               dropout: float, *, rngs: nnx.Rngs):
    self.dropout = dropout
    self.shared = nnx.Linear(in_features, hidden, rngs=rngs)
    self.branches = Branches(num_dims, hidden, rngs=rngs)

  def __call__(self, x: jax.Array, rng: jax.Array | None = None) -> jax.Array:
    # Dropout takes an explicit key (None = eval), keeping the model state
    # pure parameters: jit, sharding and Orbax see one plain pytree.
    if rng is not None and self.dropout > 0:
      keep, p = bernoulli16(rng, 1.0 - self.dropout, x.shape)
      x = jnp.where(keep, x / p, 0.0)
    return self.branches(nnx.relu(self.shared(x)))


def bernoulli16(rng: jax.Array, p: float, shape) -> tuple[jax.Array, float]:
  """A Bernoulli(p) mask from 16 random bits per element, and its exact
  probability (p rounded to 1/65536).

  jax.random.bernoulli draws 32 threefry bits per element; halving that
  halves dropout's share of a CPU training step (~2.4 -> 1.2 ms of ~10 ms at
  batch 256 x 1,024 features: bench/README.md).
  """
  threshold = min(max(round(p * 65536), 1), 65535)
  n = math.prod(shape)
  words = jax.random.bits(rng, ((n + 1) // 2,), jnp.uint32)
  half = jnp.concatenate([words & 0xFFFF, words >> 16])[:n]
  return (half < threshold).reshape(shape), threshold / 65536


class Head(nnx.Module):
  """One annotator: a linear unit per dimension on that dimension's branch."""

  def __init__(self, num_dims: int, hidden: int, *, rngs: nnx.Rngs):
    # The kernel is [D, H]: each dimension's unit reads H features, so the
    # fan-in is H (axis -1), not D. lecun_normal's default (fan-in = axis -2
    # = D = 2) gave s.d. 0.71 instead of 1/sqrt(H) and initial predictions
    # with s.d. ~4 on a [-1, 1] target.
    init = nnx.initializers.lecun_normal(in_axis=-1, out_axis=-2)
    self.kernel = nnx.Param(init(rngs.params(), (num_dims, hidden)))
    self.bias = nnx.Param(jnp.zeros((num_dims,)))


class AnnotatorHeads(nnx.Module):
  """A heads, stacked with nnx.vmap: kernel [A, D, H], bias [A, D]."""

  def __init__(self, num_heads: int, num_dims: int, hidden: int, *,
               rngs: nnx.Rngs):
    self.stack = stacked(num_heads,
                         lambda r: Head(num_dims, hidden, rngs=r), rngs)

  @property
  def kernel(self) -> jax.Array:
    return self.stack.kernel[...]

  @property
  def bias(self) -> jax.Array:
    return self.stack.bias[...]

  def __call__(self, z: jax.Array, annotators: jax.Array | None = None
               ) -> jax.Array:
    """z [B, D, H] -> [B, A, D] (all heads) or [B, K, D] (given heads)."""
    if annotators is None:
      # One matmul per dimension over all heads: [B, H] x [H, A].
      return jnp.einsum("bdh,adh->bad", z, self.kernel) + self.bias
    # Only the K heads that rated each clip: gather their weights.
    return per_slot(z, self.kernel[annotators], self.bias[annotators])

  def slots(self, z: jax.Array, rows: dict) -> jax.Array:
    """z [B, D, H] through each clip's own K heads, given as their stack
    rows {kernel [B, K, D, H], bias [B, K, D]} -> [B, K, D]."""
    return per_slot(z, rows["kernel"], rows["bias"])


def per_slot(z: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
  """z [B, D, H] through each clip's own K heads, kernel [B, K, D, H] and
  bias [B, K, D] -> [B, K, D]. A multiply-reduce, not a dot: XLA would copy
  the gathered kernel into the dot's (B, D)-batched layout first."""
  return (z[:, None] * kernel).sum(-1) + bias


class _Embedding(nnx.Module):
  """One annotator of an embedding family: e [r] ~ N(0, scale^2)."""

  def __init__(self, rank: int, scale: float, *, rngs: nnx.Rngs):
    self.embedding = nnx.Param(scale * jax.random.normal(rngs.params(),
                                                         (rank,)))


class _EmbeddingTable(nnx.Module):
  """Shared by the embedding families: the stack of A embeddings [A, r] and
  the mean listener's [r]; subclasses name their family (decode).

  Embeddings start small, N(0, 1/H), and what reads them large (lowrank's
  basis, the decoder's V): the same functions at initialisation as with
  N(0, 1) embeddings, but a gradient step moves an annotator's predictions
  about as far as a free head's step does. With N(0, 1) embeddings an
  annotator needed ~16-64x more steps to separate from the rest (measured
  on the default and demo: validation loss 1.07-1.14 against the heads'
  0.68 when early stopping ended them)."""

  def __init__(self, num_heads: int, rank: int, scale: float, *,
               rngs: nnx.Rngs):
    self.stack = stacked(num_heads,
                         lambda r: _Embedding(rank, scale, rngs=r), rngs)
    self.mean_listener = nnx.Param(jnp.zeros((rank,)))

  @property
  def table(self) -> jax.Array:
    return self.stack.embedding[...]

  def decode(self, z: jax.Array, e: jax.Array) -> jax.Array:
    """z [B, D, H], e [B or 1, K, r] -> [B, K, D]."""
    p = nnx.to_pure_dict(nnx.state(self, nnx.Param))
    return decode(self.family, p, z, e)

  def __call__(self, z: jax.Array, annotators: jax.Array | None = None
               ) -> jax.Array:
    if annotators is None:
      return self.decode(z, self.table[None])
    return self.decode(z, self.table[annotators])

  def slots(self, z: jax.Array, rows: dict) -> jax.Array:
    return self.decode(z, rows["embedding"])

  def mean_listener_output(self, z: jax.Array) -> jax.Array:
    """The mean listener on z [B, D, H] -> [B, D]."""
    return self.decode(z, jnp.broadcast_to(self.mean_listener[...],
                                           (z.shape[0], 1) +
                                           self.mean_listener.shape))[:, 0]


class LowRankHeads(_EmbeddingTable):
  """Linear heads mean + U e_a: kernel_a = M + U e_a [D, H], bias_a = m +
  u e_a [D]. Initialised with M = 0, e ~ N(0, 1/H) and U ~ N(0, 1/r), so a
  head's weights have the free heads' initial s.d. 1/sqrt(H)."""

  def __init__(self, num_heads: int, num_dims: int, hidden: int, rank: int,
               *, rngs: nnx.Rngs):
    super().__init__(num_heads, rank, 1.0 / math.sqrt(hidden), rngs=rngs)
    self.mean_kernel = nnx.Param(jnp.zeros((num_dims, hidden)))
    self.mean_bias = nnx.Param(jnp.zeros((num_dims,)))
    self.basis_kernel = nnx.Param(jax.random.normal(
        rngs.params(), (num_dims, hidden, rank)) / math.sqrt(rank))
    self.basis_bias = nnx.Param(jnp.zeros((num_dims, rank)))

  family = "lowrank"


class EmbeddingDecoder(_EmbeddingTable):
  """A shared nonlinear decoder on (z_d, e_a), per dimension d:
  w_d . relu(W_d z_d + V_d e_a + b_d) + c_d, G = config.model.decoder_hidden
  units (the concatenation [z_d, e_a] through one hidden layer). With
  e ~ N(0, 1/H), V ~ N(0, H/r): V e has unit s.d., as W z does."""

  def __init__(self, num_heads: int, num_dims: int, hidden: int, rank: int,
               units: int, *, rngs: nnx.Rngs):
    super().__init__(num_heads, rank, 1.0 / math.sqrt(hidden), rngs=rngs)
    normal = lambda shape, fan_in: jax.random.normal(
        rngs.params(), shape) / math.sqrt(fan_in)
    self.w_z = nnx.Param(normal((num_dims, hidden, units), hidden))
    self.w_e = nnx.Param(normal((num_dims, rank, units), rank / hidden))
    self.b_hidden = nnx.Param(jnp.zeros((num_dims, units)))
    self.w_out = nnx.Param(normal((num_dims, units), units))
    self.b_out = nnx.Param(jnp.zeros((num_dims,)))

  family = "embedding"


def lowrank_features(p: dict, z: jax.Array) -> dict:
  """The per-clip part of the low-rank heads (p: the heads' params), z
  [..., D, H] -> base [..., D] (the mean head) and zu [..., D, r]."""
  return {"base": jnp.einsum("...dh,dh->...d", z, p["mean_kernel"])
                  + p["mean_bias"],
          "zu": jnp.einsum("...dh,dhr->...dr", z, p["basis_kernel"])
                + p["basis_bias"]}


def lowrank_apply(p: dict, f: dict, e: jax.Array) -> jax.Array:
  """Low-rank heads from clip features f (lowrank_features, leading shape
  broadcastable with e's) and embeddings e [..., r] -> [..., D]."""
  del p
  return f["base"] + (f["zu"] * e[..., None, :]).sum(-1)


def decoder_features(p: dict, z: jax.Array) -> dict:
  """The per-clip part of the embedding decoder: W_d z_d + b_d [..., D, G]."""
  return {"zw": jnp.einsum("...dh,dhg->...dg", z, p["w_z"]) + p["b_hidden"]}


def decoder_apply(p: dict, f: dict, e: jax.Array) -> jax.Array:
  """The embedding decoder from clip features f (decoder_features) and
  embeddings e [..., r] (shapes broadcastable) -> [..., D]."""
  ew = jnp.einsum("...r,drg->...dg", e, p["w_e"])
  return (nnx.relu(f["zw"] + ew) * p["w_out"]).sum(-1) + p["b_out"]


# (clip features, apply) of each embedding family: a prediction is
# apply(p, features(p, z), e); the split lets enrollment compute the clip
# part once for every candidate embedding.
EMBEDDING_FAMILIES = {"lowrank": (lowrank_features, lowrank_apply),
                      "embedding": (decoder_features, decoder_apply)}


def decode(family: str, p: dict, z: jax.Array, e: jax.Array) -> jax.Array:
  """z [B, D, H] and embeddings e [B or 1, K, r] -> [B, K, D]."""
  features, apply = EMBEDDING_FAMILIES[family]
  f = jax.tree.map(lambda x: x[:, None], features(p, z))
  return apply(p, f, e)


def lowrank_heads(p: dict) -> tuple[jax.Array, jax.Array]:
  """A low-rank heads module's params -> every head's kernel [A, D, H] and
  bias [A, D] (the heads a free-heads model would have)."""
  e = p["stack"]["embedding"]
  return (p["mean_kernel"] + jnp.einsum("dhr,ar->adh", p["basis_kernel"], e),
          p["mean_bias"] + jnp.einsum("dr,ar->ad", p["basis_bias"], e))


def mean_listener_loss(heads, z, labels, mask, loss_fn) -> jax.Array:
  """The embedding families' mean listener (models.py) fit to each clip's
  mean rating in the batch (LDNet's virtual listener): its loss, added to
  the annotators' (0 for the free heads, which have none)."""
  if not hasattr(heads, "mean_listener_output"):
    return jnp.zeros(())
  count = mask.sum(1)
  mean = (mask[..., None] * labels).sum(1) / jnp.maximum(count, 1.0)[:, None]
  loss, _ = loss_fn(heads.mean_listener_output(z)[:, None], mean[:, None],
                    (count > 0).astype(mask.dtype)[:, None])
  return loss


# How annotators are modelled (config.model.annotators).
FAMILIES = ("heads", "lowrank", "embedding")
LINEAR = ("heads", "lowrank")  # families whose annotators are linear heads
# Model kinds: "individual" (the family of config.model.annotators),
# "aggregate" (one free head) and a family's name (an individual model of
# that family, trained beside the main one for comparison).
KINDS = ("individual", "aggregate") + FAMILIES


def family_of(config, kind: str) -> str:
  """The family a model kind is built with."""
  if kind not in KINDS:
    raise ValueError(f"unknown model kind {kind!r}; one of {KINDS}")
  if kind == "individual":
    family = config.model.get("annotators", "heads")
    if family not in FAMILIES:
      raise ValueError(f"unknown config.model.annotators {family!r}; one of "
                       f"{FAMILIES}")
    return family
  return "heads" if kind == "aggregate" else kind


def family_of_params(params: dict) -> str:
  """Which family a model's params are (from their structure)."""
  heads = params["heads"]
  if "stack" in heads and "kernel" in heads["stack"]:
    return "heads"
  return "lowrank" if "basis_kernel" in heads else "embedding"


class Model(nnx.Module):
  """Trunk + annotator heads. num_heads = A (individual) or 1 (aggregate);
  family: FAMILIES."""

  def __init__(self, in_features: int, num_dims: int, num_heads: int,
               hidden: int = 256, dropout: float = 0.2, *,
               family: str = "heads", rank: int = 16, units: int = 64,
               rngs: nnx.Rngs):
    self.trunk = Trunk(in_features, num_dims, hidden, dropout, rngs=rngs)
    if family == "heads":
      self.heads = AnnotatorHeads(num_heads, num_dims, hidden, rngs=rngs)
    elif family == "lowrank":
      self.heads = LowRankHeads(num_heads, num_dims, hidden, rank, rngs=rngs)
    elif family == "embedding":
      self.heads = EmbeddingDecoder(num_heads, num_dims, hidden, rank, units,
                                    rngs=rngs)
    else:
      raise ValueError(f"unknown annotator family {family!r}; one of "
                       f"{FAMILIES}")

  def __call__(self, x: jax.Array, annotators: jax.Array | None = None, *,
               rng: jax.Array | None = None) -> jax.Array:
    return self.heads(self.trunk(x, rng), annotators)


def family_options(model_config) -> dict:
  """Model kwargs of the embedding families from config.model (or a
  bundle's stored copy of it)."""
  return {"rank": int(model_config.get("embedding_dim") or 16),
          "units": int(model_config.get("decoder_hidden") or 64)}


def create_model(config, meta, kind: str, seed: int = 0) -> Model:
  """Builds the model of a kind (KINDS): an individual model (A annotators,
  its family) or the aggregate (1 free head)."""
  family = family_of(config, kind)
  return Model(meta.embedding_dim, len(meta.dims),
               1 if kind == "aggregate" else meta.num_annotators,
               hidden=config.model.hidden, dropout=config.model.dropout,
               family=family, **family_options(config.model),
               rngs=nnx.Rngs(params=seed))
