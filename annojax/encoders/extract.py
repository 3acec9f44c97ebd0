"""Clip embeddings from a self-supervised speech encoder: batching, padding,
long audio in pieces, the layer and the pooling.

  enc = SpeechEncoder(DIR, layer="last", pooling="mean")
  emb = enc.embed([waveform, ...])          # [N, H] (mean_std: [N, 2H])

- layer: "last" (the last hidden state: the paper's input), "mean" (the
  mean over every hidden state transformers returns: the Transformer's input
  and each layer's output), or an integer i (hidden_states[i], 0..layers).
- pooling over each clip's valid frames: "mean", or "mean_std" (mean and
  standard deviation, concatenated).
- Audio is the model's sample rate (16 kHz; the feature job resamples) and,
  where preprocessor_config.json says do_normalize, normalised per clip to
  zero mean and unit variance (as transformers' feature extractor does).
- Long audio: a clip longer than chunk_seconds is cut into the fewest equal
  pieces no longer than that; each piece is encoded on its own (attention
  does not cross pieces) and the pooling runs over all their frames
  together.
- Batching: clips (pieces), longest first, in full batches of up to
  batch_seconds of padded audio, each padded to its longest piece's length
  on a geometric grid (ratio 1.1), so only a few shapes are compiled; a
  clip's result does not depend on its batch (encoders/wav2vec2.py).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from annojax.encoders import wav2vec2

LAYERS = ("last", "mean")  # or an integer
POOLINGS = ("mean", "mean_std")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
GRID_RATIO = 1.1


def parse_layer(layer, num_layers: int):
  """'last' | 'mean' | an integer (as int or str) in 0..num_layers."""
  if isinstance(layer, str) and layer in LAYERS:
    return layer
  try:
    i = int(layer)
  except (TypeError, ValueError):
    raise ValueError(f"features.layer {layer!r}: expected 'last', 'mean' or "
                     f"a layer number 0..{num_layers}") from None
  if not 0 <= i <= num_layers:
    raise ValueError(f"features.layer {i}: this model has hidden states "
                     f"0..{num_layers} (0 = the Transformer's input)")
  return i


def pool_sums(states, last, frames, layer, pooling):
  """Sums over each clip's valid frames of the chosen layer (hidden states
  [layers + 1] x [B, T, H], last [B, T, H]): (sum [B, H], sum of squares
  [B, H] or None, frames [B])."""
  if layer == "last":
    x = last
  elif layer == "mean":
    x = jnp.mean(jnp.stack([s.astype(jnp.float32) for s in states]), 0)
  else:
    x = states[layer]
  x = x.astype(jnp.float32)
  x = jnp.where(wav2vec2.frame_mask(frames, x.shape[1])[..., None], x, 0.0)
  sq = jnp.square(x).sum(1) if pooling == "mean_std" else None
  return x.sum(1), sq, frames


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _forward(graphdef, state, audio, lengths, dtype, pooled):
  """The encoder on one padded batch: pool_sums of (layer, pooling) =
  `pooled`, or (None) every hidden state, the last and the frame counts.
  Module-level, so encoders of one checkpoint share compiled shapes."""
  states, last, frames = nnx.merge(graphdef, state)(audio, lengths, dtype)
  if pooled:
    return pool_sums(states, last, frames, *pooled)
  return states, last, frames


class SpeechEncoder:
  """A checkpoint directory's encoder, jit-compiled, with its options."""

  def __init__(self, checkpoint: str | wav2vec2.Encoder, *, layer="last",
               pooling: str = "mean", dtype: str = "float32",
               chunk_seconds: float = 30.0, batch_seconds: float = 32.0):
    """checkpoint: a model directory, or an Encoder already built."""
    self.model = (checkpoint if isinstance(checkpoint, wav2vec2.Encoder)
                  else wav2vec2.load(checkpoint))
    self.cfg = self.model.cfg
    self.layer = parse_layer(layer, self.cfg.num_hidden_layers)
    if pooling not in POOLINGS:
      raise ValueError(f"features.pooling {pooling!r}: one of {POOLINGS}")
    if dtype not in DTYPES:
      raise ValueError(f"features.dtype {dtype!r}: one of {sorted(DTYPES)}")
    self.pooling, self.dtype = pooling, DTYPES[dtype]
    rate = self.cfg.sample_rate
    self.min_samples = self.cfg.receptive_field
    self.chunk = max(int(chunk_seconds * rate), self.min_samples)
    self.batch_samples = max(int(batch_seconds * rate), self.chunk)
    self.graphdef, self.state = nnx.split(self.model)

  def prepare(self, y: np.ndarray) -> np.ndarray:
    """One clip's samples as the model expects them (do_normalize)."""
    y = np.asarray(y, np.float32)
    if y.ndim != 1:
      raise ValueError(f"expected mono samples [L], got shape {y.shape}")
    if y.size < self.min_samples:
      raise ValueError(
          f"{y.size} samples: shorter than the encoder's first frame "
          f"({self.min_samples} samples, "
          f"{1000 * self.min_samples / self.cfg.sample_rate:.0f} ms)")
    if self.cfg.do_normalize:
      y = (y - y.mean()) / np.sqrt(y.var() + 1e-7)
    return y

  def pieces(self, n: int) -> list[tuple[int, int]]:
    """(start, end) of the fewest equal pieces of <= chunk samples."""
    k = max(1, math.ceil(n / self.chunk))
    edges = np.linspace(0, n, k + 1).round().astype(int)
    return list(zip(edges[:-1], edges[1:]))

  def _padded_length(self, n: int) -> int:
    """The grid length a piece of n samples is padded to."""
    step = self.min_samples
    length = step
    while length < n:
      length = max(length + step, int(length * GRID_RATIO))
    return min(length, max(n, self.chunk))

  def _batches(self, lengths: list[int]):
    """Pieces in batches, longest first: [(padded length, [piece index,
    ...], rows), ...]. A batch starts at the longest piece left, is padded
    to that piece's grid length L and filled with the next longest pieces
    up to rows(L) = batch_samples // L: every batch is full but the last,
    whose rows are rounded up to a power of two (filler rows of zeros), so
    a corpus compiles few shapes."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out = []
    while order:
      length = self._padded_length(lengths[order[0]])
      rows = max(1, self.batch_samples // length)
      out.append((length, order[:rows], rows))
      order = order[rows:]
    return out

  def _run(self, pieces: list[np.ndarray], pooled: bool,
           one_batch: bool = False):
    """Runs every piece; yields (piece indices, outputs) per batch (or all
    in one batch padded to the longest)."""
    if one_batch:
      n = max(len(p) for p in pieces)
      batches = [(n, list(range(len(pieces))), len(pieces))]
    else:
      batches = self._batches([len(p) for p in pieces])
    for length, idx, per in batches:
      size = min(1 << max(0, (len(idx) - 1).bit_length()), per)
      audio = np.zeros((size, length), np.float32)
      lengths = np.full(size, length, np.int32)  # filler rows: zeros
      for row, i in enumerate(idx):
        audio[row, :len(pieces[i])] = pieces[i]
        lengths[row] = len(pieces[i])
      out = _forward(self.graphdef, self.state, jnp.asarray(audio),
                     jnp.asarray(lengths), self.dtype,
                     (self.layer, self.pooling) if pooled else None)
      yield idx, jax.device_get(out)

  def embed(self, clips: list[np.ndarray]) -> np.ndarray:
    """Pooled embeddings [N, dim] of N clips (mono, the model's rate)."""
    return self.embed_prepared([self.prepare(y) for y in clips])

  def embed_prepared(self, clips: list[np.ndarray]) -> np.ndarray:
    """embed() of clips already through prepare()."""
    pieces, owner = [], []
    for c, y in enumerate(clips):
      for s, e in self.pieces(len(y)):
        pieces.append(y[s:e])
        owner.append(c)
    h = self.cfg.hidden_size
    total = np.zeros((len(clips), h), np.float64)
    total_sq = np.zeros((len(clips), h), np.float64)
    count = np.zeros(len(clips), np.float64)
    for idx, (s, sq, frames) in self._run(pieces, pooled=True):
      for row, i in enumerate(idx):
        total[owner[i]] += s[row]
        count[owner[i]] += frames[row]
        if sq is not None:
          total_sq[owner[i]] += sq[row]
    mean = total / count[:, None]
    if self.pooling == "mean":
      return mean.astype(np.float32)
    sd = np.sqrt(np.maximum(total_sq / count[:, None] - mean ** 2, 0.0))
    return np.concatenate([mean, sd], 1).astype(np.float32)

  def hidden_states(self, clips: list[np.ndarray]
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per clip, the clips whole (no pieces) in one batch zero-padded to the
    longest: every hidden state [layers + 1, T, H] and the last hidden state
    [T, H], the clip's frames only."""
    prepared = [self.prepare(y) for y in clips]
    out = [None] * len(clips)
    for idx, (states, last, frames) in self._run(prepared, pooled=False,
                                                 one_batch=True):
      for row, i in enumerate(idx):
        t = int(frames[row])
        out[i] = (np.stack([np.asarray(s[row, :t], np.float32)
                            for s in states]),
                  np.asarray(last[row, :t], np.float32))
    return out
