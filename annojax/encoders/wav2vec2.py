"""wav2vec 2.0, HuBERT and WavLM encoders in Flax nnx, built from a Hugging
Face checkpoint's tensors (encoders/checkpoint.py).

The three share one architecture: a convolutional front end on the raw
waveform (~20 ms frames), a projection, a convolutional position embedding
and a Transformer; WavLM adds a gated relative position bias to attention.
Post-LN ("base" models) or pre-LN with a final LayerNorm
(do_stable_layer_norm: "large" models), as config.json says.

Batches are padded: `lengths` [B] holds each clip's samples. Padded samples
never reach a valid frame: the convolutions are unpadded (a valid frame sees
only valid samples), the first layer's GroupNorm (group-norm models) takes
its statistics over each clip's valid frames only, padded frames are zeroed
before the position convolution and are masked as attention keys. So a
clip's outputs do not depend on the batch it is in, and equal the reference
implementation's for that clip alone. (transformers' own padded batches of
group-norm models normalise over the padding too, so they differ from its
single-clip outputs; bench/README.md.)

Parameters are float32; `dtype` = bfloat16 runs the matmuls and
convolutions in bfloat16, with LayerNorm, GroupNorm and softmax statistics
in float32.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from annojax.encoders import checkpoint as ckpt


def _gelu(x):
  return jax.nn.gelu(x, approximate=False)  # torch's (and HF's) exact GELU


def _param(a: np.ndarray) -> nnx.Param:
  return nnx.Param(jnp.asarray(a, jnp.float32))


class Linear(nnx.Module):
  """y = x W^T + b from a torch nn.Linear's weight [out, in] and bias."""

  def __init__(self, w: ckpt.Weights, name: str, n_in: int, n_out: int):
    self.kernel = _param(w(f"{name}.weight", (n_out, n_in)).T)
    self.bias = _param(w(f"{name}.bias", (n_out,)))

  def __call__(self, x):
    return x @ self.kernel[...].astype(x.dtype) + self.bias[...].astype(
        x.dtype)


class LayerNorm(nnx.Module):
  """LayerNorm over the last axis, statistics in float32."""

  def __init__(self, w: ckpt.Weights, name: str, n: int, eps: float):
    self.scale = _param(w(f"{name}.weight", (n,)))
    self.bias = _param(w(f"{name}.bias", (n,)))
    self.eps = eps

  def __call__(self, x):
    return _normalize(x, -1, None, self.scale[...], self.bias[...], self.eps)


def _conv(x, kernel, stride=1, padding=0, groups=1):
  """x [B, T, C_in], kernel [K, C_in / groups, C_out] -> [B, T', C_out]."""
  return jax.lax.conv_general_dilated(
      x, kernel.astype(x.dtype), (stride,), [(padding, padding)],
      dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=groups)


class FeatureEncoder(nnx.Module):
  """The convolutional front end: waveform [B, L] -> frames [B, T, C]."""

  def __init__(self, w: ckpt.Weights, cfg: ckpt.EncoderConfig):
    self.norm = cfg.feat_extract_norm
    self.kernels, self.strides = cfg.conv_kernel, cfg.conv_stride
    dims = (1,) + cfg.conv_dim
    self.weights = nnx.List()
    self.biases = nnx.List()
    self.norm_scale = nnx.List()
    self.norm_bias = nnx.List()
    for i, k in enumerate(cfg.conv_kernel):
      name = f"feature_extractor.conv_layers.{i}"
      # torch Conv1d weight [out, in, K] -> [K, in, out]
      self.weights.append(_param(w(f"{name}.conv.weight",
                                   (dims[i + 1], dims[i], k)).transpose(
                                       2, 1, 0)))
      self.biases.append(_param(w(f"{name}.conv.bias", (dims[i + 1],)))
                         if cfg.conv_bias else None)
      if cfg.feat_extract_norm == "layer" or i == 0:
        self.norm_scale.append(_param(w(f"{name}.layer_norm.weight",
                                        (dims[i + 1],))))
        self.norm_bias.append(_param(w(f"{name}.layer_norm.bias",
                                       (dims[i + 1],))))

  def __call__(self, audio, lengths):
    x = audio[..., None]
    n = lengths
    for i, (k, s) in enumerate(zip(self.kernels, self.strides)):
      x = _conv(x, self.weights[i][...], s)
      if self.biases[i] is not None:
        x = x + self.biases[i][...].astype(x.dtype)
      n = jnp.maximum((n - k) // s + 1, 0)
      if self.norm == "layer":  # LayerNorm over channels, per frame (1e-5)
        x = _normalize(x, -1, None, self.norm_scale[i][...],
                       self.norm_bias[i][...])
      elif i == 0:  # GroupNorm, one group per channel: over valid frames
        valid = frame_mask(n, x.shape[1])
        x = _normalize(x, 1, valid, self.norm_scale[0][...],
                       self.norm_bias[0][...])
      x = _gelu(x)
    return x, n


def frame_mask(frames, t: int):
  """[B, t]: True at each clip's first frames[b] frames."""
  return jnp.arange(t)[None, :] < frames[:, None]


def _normalize(x, axis, valid, scale, bias, eps=1e-5):
  """(x - mean) / sqrt(var + eps) * scale + bias along `axis`, statistics
  in float32 over the `valid` positions [B, T] only (None: all)."""
  x32 = x.astype(jnp.float32)
  if valid is None:
    mean = x32.mean(axis, keepdims=True)
    var = jnp.square(x32 - mean).mean(axis, keepdims=True)
  else:
    m = valid[..., None].astype(jnp.float32)
    count = jnp.maximum(m.sum(axis, keepdims=True), 1.0)
    mean = (x32 * m).sum(axis, keepdims=True) / count
    var = (jnp.square(x32 - mean) * m).sum(axis, keepdims=True) / count
  y = (x32 - mean) * jax.lax.rsqrt(var + eps)
  return (y * scale + bias).astype(x.dtype)


class PositionConv(nnx.Module):
  """The grouped, weight-normalised convolution position embedding."""

  def __init__(self, w: ckpt.Weights, cfg: ckpt.EncoderConfig):
    h, k = cfg.hidden_size, cfg.num_conv_pos_embeddings
    g = cfg.num_conv_pos_embedding_groups
    name = "encoder.pos_conv_embed.conv"
    shape_v, shape_g = (h, h // g, k), (1, 1, k)
    if w.has(f"{name}.weight_g"):  # torch.nn.utils.weight_norm
      gain, v = w(f"{name}.weight_g", shape_g), w(f"{name}.weight_v", shape_v)
    elif w.has(f"{name}.parametrizations.weight.original0"):  # parametrize
      gain = w(f"{name}.parametrizations.weight.original0", shape_g)
      v = w(f"{name}.parametrizations.weight.original1", shape_v)
    else:  # weight norm already folded in
      gain, v = None, w(f"{name}.weight", shape_v)
    if gain is not None:  # weight_norm(dim=2): one norm per kernel tap
      v = gain * v / np.sqrt(np.square(v.astype(np.float64)).sum(
          (0, 1), keepdims=True)).astype(np.float32)
    self.kernel = _param(v.transpose(2, 1, 0))
    self.bias = _param(w(f"{name}.bias", (h,)))
    self.groups, self.width = g, k

  def __call__(self, x):
    y = _conv(x, self.kernel[...], 1, self.width // 2, self.groups)
    if self.width % 2 == 0:  # "same" padding of an even kernel: drop one
      y = y[:, :-1]
    return _gelu(y + self.bias[...].astype(y.dtype))


def relative_buckets(length: int, num_buckets: int, max_distance: int
                     ) -> np.ndarray:
  """WavLM's bucket of each relative position (key - query): [T, T]."""
  rel = np.arange(length)[None, :] - np.arange(length)[:, None]
  half = num_buckets // 2
  out = (rel > 0).astype(np.int64) * half
  rel = np.abs(rel)
  exact = half // 2
  large = np.log(np.maximum(rel, 1).astype(np.float32) / exact)  # rel >= exact
  large = large / math.log(max_distance / exact) * (half - exact)
  large = np.minimum((exact + large).astype(np.int64), half - 1)
  return out + np.where(rel < exact, rel, large)


class Attention(nnx.Module):
  """Multi-head self-attention; with WavLM's gated relative position bias
  when `gated` (the bias table is layer 0's, shared by every layer)."""

  def __init__(self, w: ckpt.Weights, cfg: ckpt.EncoderConfig, i: int):
    h = cfg.hidden_size
    name = f"encoder.layers.{i}.attention"
    self.q = Linear(w, f"{name}.q_proj", h, h)
    self.k = Linear(w, f"{name}.k_proj", h, h)
    self.v = Linear(w, f"{name}.v_proj", h, h)
    self.out = Linear(w, f"{name}.out_proj", h, h)
    self.heads = cfg.num_attention_heads
    self.gated = cfg.gated_relative_bias
    if self.gated:
      d = h // self.heads
      self.gate = Linear(w, f"{name}.gru_rel_pos_linear", d, 8)
      self.gate_const = _param(w(f"{name}.gru_rel_pos_const",
                                 (1, self.heads, 1, 1)).reshape(self.heads))

  def __call__(self, x, key_valid, position_bias):
    b, t, h = x.shape
    d = h // self.heads
    split = lambda y: y.reshape(b, t, self.heads, d).transpose(0, 2, 1, 3)
    q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
    scores = jnp.matmul(q * (d ** -0.5), k.transpose(0, 1, 3, 2),
                        preferred_element_type=jnp.float32)  # [B, H, T, T]
    if self.gated:
      g = self.gate(x.reshape(b, t, self.heads, d)).astype(jnp.float32)
      g = jax.nn.sigmoid(g.reshape(b, t, self.heads, 2, 4).sum(-1))
      gate = g[..., 0] * (g[..., 1] * self.gate_const[...] - 1.0) + 2.0
      scores = scores + gate.transpose(0, 2, 1)[..., None] * position_bias
    scores = jnp.where(key_valid[:, None, None, :], scores, -jnp.inf)
    p = jax.nn.softmax(scores, axis=-1).astype(x.dtype)
    return self.out((p @ v).transpose(0, 2, 1, 3).reshape(b, t, h))


class Layer(nnx.Module):
  """One Transformer layer, post-LN or pre-LN (stable)."""

  def __init__(self, w: ckpt.Weights, cfg: ckpt.EncoderConfig, i: int):
    h, eps = cfg.hidden_size, cfg.layer_norm_eps
    name = f"encoder.layers.{i}"
    self.attention = Attention(w, cfg, i)
    self.norm = LayerNorm(w, f"{name}.layer_norm", h, eps)
    self.ff_in = Linear(w, f"{name}.feed_forward.intermediate_dense", h,
                        cfg.intermediate_size)
    self.ff_out = Linear(w, f"{name}.feed_forward.output_dense",
                         cfg.intermediate_size, h)
    self.final_norm = LayerNorm(w, f"{name}.final_layer_norm", h, eps)
    self.pre_ln = cfg.do_stable_layer_norm

  def __call__(self, x, key_valid, position_bias):
    ff = lambda y: self.ff_out(_gelu(self.ff_in(y)))
    if self.pre_ln:
      x = x + self.attention(self.norm(x), key_valid, position_bias)
      return x + ff(self.final_norm(x))
    x = self.norm(x + self.attention(x, key_valid, position_bias))
    return self.final_norm(x + ff(x))


class Encoder(nnx.Module):
  """Waveforms -> the hidden states of every layer as transformers returns
  them ([0] the Transformer's input, [i] layer i's output), the last hidden
  state (the last layer's output; after the final LayerNorm in pre-LN
  models) and each clip's frame count."""

  def __init__(self, cfg: ckpt.EncoderConfig, w: ckpt.Weights):
    h, eps = cfg.hidden_size, cfg.layer_norm_eps
    self.cfg = cfg
    self.features = FeatureEncoder(w, cfg)
    self.proj_norm = (LayerNorm(w, "feature_projection.layer_norm",
                                cfg.conv_dim[-1], eps)
                      if cfg.feat_proj_layer_norm else None)
    self.proj = Linear(w, "feature_projection.projection", cfg.conv_dim[-1],
                       h)
    self.position = PositionConv(w, cfg)
    self.norm = LayerNorm(w, "encoder.layer_norm", h, eps)
    self.layers = nnx.List([Layer(w, cfg, i)
                            for i in range(cfg.num_hidden_layers)])
    if cfg.gated_relative_bias:
      self.bias_table = _param(w("encoder.layers.0.attention.rel_attn_embed"
                                 ".weight", (cfg.num_buckets,
                                             cfg.num_attention_heads)))

  def __call__(self, audio, lengths, dtype=jnp.float32
               ) -> tuple[list[jax.Array], jax.Array, jax.Array]:
    """audio [B, L] (zero-padded), lengths [B] -> ([L + 1] x [B, T, H],
    [B, T, H], frames [B])."""
    x, frames = self.features(audio.astype(dtype), lengths)
    if self.proj_norm is not None:
      x = self.proj_norm(x)
    x = self.proj(x)
    valid = frame_mask(frames, x.shape[1])
    x = jnp.where(valid[..., None], x, 0)
    x = x + self.position(x)
    if not self.cfg.do_stable_layer_norm:
      x = self.norm(x)
    bias = None
    if self.cfg.gated_relative_bias:
      t = x.shape[1]
      buckets = relative_buckets(t, self.cfg.num_buckets,
                                 self.cfg.max_bucket_distance)
      bias = self.bias_table[...][buckets].transpose(2, 0, 1)  # [H, T, T]
    states = [x]
    for layer in self.layers:
      x = layer(x, valid, bias)
      states.append(x)
    last = self.norm(x) if self.cfg.do_stable_layer_norm else x
    return states, last, frames


def load(directory: str) -> Encoder:
  """The encoder of a Hugging Face checkpoint directory."""
  cfg = ckpt.read_config(directory)
  tensors = ckpt.read_weights(directory)
  w = ckpt.Weights(tensors, f"{directory}/model.safetensors")
  return Encoder(cfg, w)
