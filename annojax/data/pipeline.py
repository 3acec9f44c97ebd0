"""Input pipeline: TFDS data source -> per-host numpy batches -> jax.Arrays.

A dataset's records are blocks of clips (annojax/data/builder.py), decoded
into `Clips` (CSR arrays of many clips) and batched with vectorised numpy,
never clip by clip. Every process draws the same epoch order (seeded by
(seed, epoch), so a resumed run sees the same order) and builds only its own
rows of each global batch. The order: the records in random order, taken in
windows of `window` clips (whole records), each window shuffled clip by
clip; a window at least the split's size (the default for every corpus up
to 65,536 training clips) is one uniform permutation of all its clips.
Without the cache one window of records is decoded at a time, each record
once per epoch; with it, the whole split once. Either way the order, and so
training, is the same. Batches come in one of two label layouts:

  dense:  labels [B, A, D], label_mask [B, A]       (every head, masked)
  sparse: annotators [B, K], labels [B, K, D], label_mask [B, K]
          (only the K <= max raters-per-clip heads that rated each clip)

or, for the aggregate model, `consensus`: labels [B, 1, D], label_mask [B, 1].
Eval batches are padded with masked examples (`valid` = 0) so every process
runs the same number of steps.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import jax
import numpy as np

from annojax.data import builder as builder_lib

LAYOUTS = ("dense", "sparse", "consensus")
# layout="auto": dense below this many heads, sparse from it on. Measured on
# 2 CPU cores, batch 256 (bench/README.md): dense is faster at 100 heads,
# even at ~250, and sparse 2.3x faster at 1,000, 10x at 13,000.
AUTO_DENSE_BELOW = 256


# Default shuffle window (clips): config.data.shuffle_window.
WINDOW = 1 << 16


def choose_layout(layout: str, num_annotators: int) -> str:
  """Resolves "auto" by the number of heads; other layouts pass through."""
  if layout == "auto":
    return "dense" if num_annotators < AUTO_DENSE_BELOW else "sparse"
  return layout


@dataclasses.dataclass(frozen=True)
class Meta:
  """What the data tells the model and trainer (scenic's meta_data)."""
  dims: tuple[str, ...]
  annotator_ids: tuple[str, ...]
  annotator_types: np.ndarray | None
  embedding_dim: int
  split_sizes: dict[str, int]
  # Standardizer the stored embeddings went through (None: none).
  feature_mean: np.ndarray | None = None
  feature_std: np.ndarray | None = None
  feature_clip: float | None = None  # then limited to +-clip s.d.s
  # {reason: rating rows} dropped or merged on the way from the files.
  dropped: dict = dataclasses.field(default_factory=dict)
  # {split: the most ratings any of its clips has}.
  max_raters: dict = dataclasses.field(default_factory=dict)
  # The corpus's own (low, high) rating scale (None: datasets from before
  # it was recorded).
  scale: tuple[float, float] | None = None

  @property
  def num_annotators(self) -> int:
    return len(self.annotator_ids)


def read_meta(path: str) -> Meta:
  b = builder_lib.open_dataset(path)
  md = b.info.metadata
  types = md.get("annotator_types")
  return Meta(dims=tuple(md["dims"]), annotator_ids=tuple(md["annotator_ids"]),
              annotator_types=None if types is None else np.asarray(types),
              embedding_dim=b.info.features["embedding"].shape[-1],
              split_sizes={k: int(v) for k, v in md["split_clips"].items()},
              feature_mean=_array(md.get("feature_mean")),
              feature_std=_array(md.get("feature_std")),
              feature_clip=md.get("feature_clip"),
              dropped=dict(md.get("dropped") or {}),
              max_raters={k: int(v) for k, v in md["max_raters"].items()},
              scale=tuple(md["scale"]) if md.get("scale") else None)


def _array(x):
  return None if x is None else np.asarray(x, np.float32)


@dataclasses.dataclass(frozen=True)
class Clips:
  """Many clips in CSR form: clip i's ratings are rows offsets[i] to
  offsets[i + 1] of annotators / ratings."""
  clip_ids: np.ndarray     # [C] str
  speakers: np.ndarray     # [C] str
  embeddings: np.ndarray   # [C, F]
  offsets: np.ndarray      # [C + 1]
  annotators: np.ndarray   # [P] dense annotator index
  ratings: np.ndarray      # [P, D]
  consensus: np.ndarray    # [C, D] mean of ALL the clip's ratings

  def __len__(self) -> int:
    return len(self.clip_ids)

  @property
  def counts(self) -> np.ndarray:
    return np.diff(self.offsets)

  def take(self, rows) -> "Clips":
    """The clips at `rows` (any order, repeats allowed), vectorised."""
    rows = np.asarray(rows, np.int64)
    counts = self.counts[rows]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    pairs = (np.repeat(self.offsets[:-1][rows] - offsets[:-1], counts)
             + np.arange(offsets[-1]))
    return Clips(self.clip_ids[rows], self.speakers[rows],
                 self.embeddings[rows], offsets, self.annotators[pairs],
                 self.ratings[pairs], self.consensus[rows])

  @staticmethod
  def concat(parts: list["Clips"]) -> "Clips":
    starts = np.cumsum([0] + [p.offsets[-1] for p in parts[:-1]])
    return Clips(
        np.concatenate([p.clip_ids for p in parts]),
        np.concatenate([p.speakers for p in parts]),
        np.concatenate([p.embeddings for p in parts]),
        np.concatenate([[0]] + [p.offsets[1:] + s
                                for p, s in zip(parts, starts)]),
        np.concatenate([p.annotators for p in parts]),
        np.concatenate([p.ratings for p in parts]),
        np.concatenate([p.consensus for p in parts]))


def _decode(record: dict) -> Clips:
  counts = record["num_ratings"].astype(np.int64)
  return Clips(
      clip_ids=np.array([_str(x) for x in record["clip_id"]]),
      speakers=np.array([_str(x) for x in record["speaker"]]),
      embeddings=record["embedding"],
      offsets=np.concatenate([[0], np.cumsum(counts)]),
      annotators=record["annotators"],
      ratings=record["ratings"].reshape(-1, record["consensus"].shape[-1]),
      consensus=record["consensus"])


class SplitReader:
  """One split's clips by index, read record by record (blocks of clips).

  cache=True keeps the whole decoded split in memory after its first read;
  cache=False decodes the records each request needs, every time.
  """

  def __init__(self, path: str, split: str, cache: bool = True):
    b = builder_lib.open_dataset(path)
    if split not in b.info.splits:
      raise KeyError(f"{path}: no split {split!r}; has "
                     f"{sorted(b.info.splits)}")
    md = b.info.metadata
    self._source = b.as_data_source(split=split)
    self._n = int(md["split_clips"][split])
    self.block = int(md["clips_per_record"])
    self._cache = cache
    self._all: Clips | None = None

  def __len__(self) -> int:
    return self._n

  @property
  def num_blocks(self) -> int:
    return len(self._source)

  def _read(self, blocks) -> Clips:
    """The clips of these records (ascending), in record order."""
    records = self._source.__getitems__([int(b) for b in blocks])
    return Clips.concat([_decode(r) for r in records])

  def all(self) -> Clips:
    """Every clip of the split, in index order."""
    if self._all is not None:
      return self._all
    clips = Clips.concat([self._read(range(s, min(s + 256, self.num_blocks)))
                          for s in range(0, self.num_blocks, 256)])
    if len(clips) != self._n:
      raise ValueError(f"split holds {len(clips)} clips, its metadata says "
                       f"{self._n}")
    if self._cache:
      self._all = clips
    return clips

  def take(self, rows) -> Clips:
    """The clips at split indices `rows`, in that order."""
    clips, local = self.window(rows)
    return clips.take(local)

  def window(self, rows) -> tuple[Clips, np.ndarray]:
    """(clips, where each of `rows` is in them), without copying clips:
    the cached split itself, or the records holding `rows` as read."""
    rows = np.asarray(rows, np.int64)
    if self._cache or not len(rows):
      return self.all(), rows
    blocks = np.unique(rows // self.block)
    # Every record but the last holds `block` clips, and the last sorts
    # last: a row's place in the read clips follows from its record's rank.
    local = (np.searchsorted(blocks, rows // self.block) * self.block
             + rows % self.block)
    return self._read(blocks), local


@dataclasses.dataclass(frozen=True)
class ClipTable:
  """A whole split in memory, ratings in CSR form (for evaluation)."""
  clip_ids: np.ndarray     # [C]
  speakers: np.ndarray     # [C]
  embeddings: np.ndarray   # [C, F]
  pair_clip: np.ndarray    # [P] row into clip_ids
  pair_annotator: np.ndarray  # [P] dense annotator index
  pair_values: np.ndarray  # [P, D]
  consensus: np.ndarray    # [C, D] mean of ALL the clip's ratings


def load_table(path: str, split: str) -> ClipTable:
  c = SplitReader(path, split, cache=False).all()
  return ClipTable(
      clip_ids=c.clip_ids, speakers=c.speakers,
      embeddings=c.embeddings.astype(np.float32),
      pair_clip=np.repeat(np.arange(len(c)), c.counts),
      pair_annotator=c.annotators.astype(np.int32),
      pair_values=c.ratings.astype(np.float32),
      consensus=c.consensus.astype(np.float32))


def _str(x) -> str:
  return x.decode() if isinstance(x, bytes) else str(x)


def make_batch(clips: Clips, layout: str, num_annotators: int,
               num_dims: int, max_raters: int, embedding_dim: int,
               pad_to: int | None = None) -> dict[str, np.ndarray]:
  """One numpy batch of the given layout from these clips (vectorised)."""
  if layout not in LAYOUTS:
    raise ValueError(f"unknown label layout {layout!r}; one of {LAYOUTS}")
  n = len(clips)
  b = pad_to or n
  emb = np.zeros((b, embedding_dim), np.float32)
  emb[:n] = clips.embeddings
  valid = np.zeros((b,), np.float32)
  valid[:n] = 1.0
  width = {"dense": num_annotators, "sparse": max_raters, "consensus": 1}
  k = width[layout]
  labels = np.zeros((b, k, num_dims), np.float32)
  mask = np.zeros((b, k), np.float32)
  batch = {"embedding": emb, "labels": labels, "label_mask": mask,
           "valid": valid}
  if layout == "consensus":  # all the clip's ratings, not only the heads'
    labels[:n, 0] = clips.consensus
    mask[:n, 0] = 1.0
    return batch
  counts = clips.counts
  row = np.repeat(np.arange(n), counts)
  ratings = clips.ratings.reshape(-1, num_dims)
  if layout == "dense":
    labels[row, clips.annotators] = ratings
    mask[row, clips.annotators] = 1.0
    return batch
  if n and counts.max() > k:
    i = int(np.argmax(counts))
    raise ValueError(f"clip {clips.clip_ids[i]!r} has {counts[i]} "
                     f"raters > max_raters={k}")
  slot = np.arange(len(row)) - np.repeat(clips.offsets[:-1], counts)
  annotators = np.zeros((b, k), np.int32)
  labels[row, slot] = ratings
  mask[row, slot] = 1.0
  annotators[row, slot] = clips.annotators
  batch["annotators"] = annotators
  return batch


def max_raters(path: str, split: str) -> int:
  """The most ratings any clip of the split has (dataset metadata)."""
  return max(read_meta(path).max_raters[split], 1)


def _local_slice(global_batch: int) -> slice:
  pc = jax.process_count()
  if global_batch % pc:
    raise ValueError(f"global batch {global_batch} is not divisible by "
                     f"{pc} processes")
  local = global_batch // pc
  return slice(jax.process_index() * local, (jax.process_index() + 1) * local)


def epoch_order(reader: SplitReader, seed: int, epoch: int,
                window: int = WINDOW) -> list[np.ndarray]:
  """One epoch's clip order as windows: records in a random order, grouped
  `window` clips (whole records, at least one) at a time, each window's
  clips shuffled. Seeded by (seed, epoch)."""
  rng = np.random.default_rng([seed, epoch])
  per = max(1, window // reader.block)
  blocks = rng.permutation(reader.num_blocks)
  out = []
  for s in range(0, len(blocks), per):
    rows = np.concatenate([np.arange(b * reader.block,
                                     min((b + 1) * reader.block, len(reader)))
                           for b in blocks[s:s + per]])
    out.append(rng.permutation(rows))
  return out


def train_batches(reader: SplitReader, global_batch: int, seed: int,
                  epoch: int, window: int = WINDOW,
                  **batch_kw) -> Iterator[dict[str, np.ndarray]]:
  """One epoch of this process's slices of shuffled global batches.

  Without the cache each window's records are read and decoded once (all
  processes read every window; each builds only its own rows)."""
  n = len(reader)
  if n < global_batch:
    raise ValueError(f"split has {n} examples < global batch {global_batch}")
  sl = _local_slice(global_batch)
  ours = np.arange(global_batch)[sl]
  carry = None  # the last window's clips that did not fill a batch
  for rows in epoch_order(reader, seed, epoch, window):
    clips, local = reader.window(rows)
    start = 0
    if carry is not None:  # a batch across two windows
      start = min(global_batch - len(carry), len(local))
      carry = Clips.concat([carry, clips.take(local[:start])])
      if len(carry) == global_batch:
        yield make_batch(carry.take(ours), **batch_kw)
        carry = None
    end = start + (len(local) - start) // global_batch * global_batch
    for s in range(start, end, global_batch):
      yield make_batch(clips.take(local[s:s + global_batch][sl]), **batch_kw)
    if end < len(local):
      tail = clips.take(local[end:])
      carry = tail if carry is None else Clips.concat([carry, tail])
  # The last partial batch is dropped: static shapes, one compile.


def eval_batches(reader: SplitReader, global_batch: int, **batch_kw
                 ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
  """All examples in order, padded; yields (global row ids, local batch)."""
  n = len(reader)
  steps = -(-n // global_batch)
  sl = _local_slice(global_batch)
  local = sl.stop - sl.start
  for s in range(steps):
    rows = np.arange(s * global_batch, (s + 1) * global_batch)[sl]
    rows = rows[rows < n]
    yield rows, make_batch(reader.take(rows), pad_to=local, **batch_kw)


def to_global(batch: dict[str, np.ndarray], sharding) -> dict[str, jax.Array]:
  """Assembles per-process batches into global arrays sharded on 'data'."""
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in batch.items()}
