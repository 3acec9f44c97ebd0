"""Input pipeline: TFDS data source -> per-host numpy batches -> jax.Arrays.

Every process draws the same global permutation per epoch (seeded by
(seed, epoch), so a resumed run sees the same order) and reads only its own
rows of each global batch. Batches come in one of two label layouts:

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
  # {reason: rating rows} dropped or merged on the way from the files.
  dropped: dict = dataclasses.field(default_factory=dict)

  @property
  def num_annotators(self) -> int:
    return len(self.annotator_ids)


def read_meta(path: str) -> Meta:
  b = builder_lib.open_dataset(path)
  md = b.info.metadata
  types = md.get("annotator_types")
  return Meta(dims=tuple(md["dims"]), annotator_ids=tuple(md["annotator_ids"]),
              annotator_types=None if types is None else np.asarray(types),
              embedding_dim=b.info.features["embedding"].shape[0],
              split_sizes={k: v.num_examples for k, v in b.info.splits.items()},
              feature_mean=_array(md.get("feature_mean")),
              feature_std=_array(md.get("feature_std")),
              dropped=dict(md.get("dropped") or {}))


def _array(x):
  return None if x is None else np.asarray(x, np.float32)


class SplitReader:
  """Random access to one split; decoded examples optionally cached."""

  def __init__(self, path: str, split: str, cache: bool = True):
    b = builder_lib.open_dataset(path)
    if split not in b.info.splits:
      raise KeyError(f"{path}: no split {split!r}; has "
                     f"{sorted(b.info.splits)}")
    self._source = b.as_data_source(split=split)
    self._cache = {} if cache else None

  def __len__(self) -> int:
    return len(self._source)

  def get(self, indices) -> list[dict]:
    indices = [int(i) for i in indices]
    if self._cache is None:
      return list(self._source.__getitems__(indices))
    missing = [i for i in indices if i not in self._cache]
    if missing:
      for i, ex in zip(missing, self._source.__getitems__(missing)):
        self._cache[i] = ex
    return [self._cache[i] for i in indices]


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


def load_table(path: str, split: str, chunk: int = 4096) -> ClipTable:
  reader = SplitReader(path, split, cache=False)
  exs = []
  for s in range(0, len(reader), chunk):
    exs += reader.get(range(s, min(s + chunk, len(reader))))
  counts = np.array([len(e["annotators"]) for e in exs])
  dims = exs[0]["ratings"].shape[1] if exs else 0
  return ClipTable(
      clip_ids=np.array([_str(e["clip_id"]) for e in exs]),
      speakers=np.array([_str(e["speaker"]) for e in exs]),
      embeddings=np.stack([e["embedding"] for e in exs]).astype(np.float32),
      pair_clip=np.repeat(np.arange(len(exs)), counts),
      pair_annotator=np.concatenate(
          [e["annotators"] for e in exs]).astype(np.int32),
      pair_values=np.concatenate(
          [e["ratings"].reshape(-1, dims) for e in exs]).astype(np.float32),
      consensus=np.stack([e["consensus"] for e in exs]).astype(np.float32))


def _str(x) -> str:
  return x.decode() if isinstance(x, bytes) else str(x)


def make_batch(examples: list[dict], layout: str, num_annotators: int,
               num_dims: int, max_raters: int, embedding_dim: int,
               pad_to: int | None = None) -> dict[str, np.ndarray]:
  """Stacks decoded examples into one numpy batch of the given layout."""
  if layout not in LAYOUTS:
    raise ValueError(f"unknown label layout {layout!r}; one of {LAYOUTS}")
  n = len(examples)
  b = pad_to or n
  emb = np.zeros((b, embedding_dim), np.float32)
  valid = np.zeros((b,), np.float32)
  width = {"dense": num_annotators, "sparse": max_raters, "consensus": 1}
  k = width[layout]
  labels = np.zeros((b, k, num_dims), np.float32)
  mask = np.zeros((b, k), np.float32)
  annotators = np.zeros((b, k), np.int32)
  for i, ex in enumerate(examples):
    emb[i] = ex["embedding"]
    valid[i] = 1.0
    ann, r = ex["annotators"], ex["ratings"].reshape(-1, num_dims)
    if layout == "consensus":  # all the clip's ratings, not only the heads'
      labels[i, 0] = ex["consensus"]
      mask[i, 0] = 1.0
      continue
    if not len(ann):
      continue
    if layout == "dense":
      labels[i, ann] = r
      mask[i, ann] = 1.0
    elif layout == "sparse":
      if len(ann) > k:
        raise ValueError(f"clip {_str(ex['clip_id'])!r} has {len(ann)} "
                         f"raters > max_raters={k}")
      labels[i, :len(ann)] = r
      mask[i, :len(ann)] = 1.0
      annotators[i, :len(ann)] = ann
  batch = {"embedding": emb, "labels": labels, "label_mask": mask,
           "valid": valid}
  if layout == "sparse":
    batch["annotators"] = annotators
  return batch


def max_raters(path: str, split: str) -> int:
  reader = SplitReader(path, split, cache=False)
  return max((len(e["annotators"]) for e in
              reader.get(range(len(reader)))), default=1)


def _local_slice(global_batch: int) -> slice:
  pc = jax.process_count()
  if global_batch % pc:
    raise ValueError(f"global batch {global_batch} is not divisible by "
                     f"{pc} processes")
  local = global_batch // pc
  return slice(jax.process_index() * local, (jax.process_index() + 1) * local)


def train_batches(reader: SplitReader, global_batch: int, seed: int,
                  epoch: int, **batch_kw) -> Iterator[dict[str, np.ndarray]]:
  """One epoch of this process's slices of shuffled global batches."""
  n = len(reader)
  steps = n // global_batch  # drop the remainder: static shapes, one compile
  if steps == 0:
    raise ValueError(f"split has {n} examples < global batch {global_batch}")
  perm = np.random.default_rng([seed, epoch]).permutation(n)
  sl = _local_slice(global_batch)
  for s in range(steps):
    rows = perm[s * global_batch:(s + 1) * global_batch][sl]
    yield make_batch(reader.get(rows), **batch_kw)


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
    yield rows, make_batch(reader.get(rows), pad_to=local, **batch_kw)


def to_global(batch: dict[str, np.ndarray], sharding) -> dict[str, jax.Array]:
  """Assembles per-process batches into global arrays sharded on 'data'."""
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in batch.items()}
