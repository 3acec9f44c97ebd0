"""The common Ratings table every corpus reader yields, and the annotator index.

Nothing downstream knows which corpus a table came from. Ratings are long
format: one row per (clip, annotator) with one value per emotion dimension,
already min-max scaled to [-1, 1] by the reader.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

from absl import logging
import numpy as np


class RatingsError(ValueError):
  """Bad input in a ratings table; the message names the file/row/annotator."""


@dataclasses.dataclass(frozen=True)
class Ratings:
  """Long-format ratings: row i says annotator[i] rated clip[i] as values[i].

  Attributes:
    clip: [N] clip ids (str).
    annotator: [N] annotator ids (str).
    speaker: [N] speaker of the clip (str), for speaker-independent folds.
    values: [N, D] float32 ratings in [-1, 1].
    dims: names of the D dimensions, e.g. ("activation", "valence").
    source: where the table came from, used in error messages.
    scale: the corpus's own (low, high) scale the values were rescaled from.
    dropped: {reason: number of rating rows} dropped or merged on the way
      from the files to this table (readers, select_dims, validate,
      filter_min_ratings add to it); stored in the prepared dataset.
  """
  clip: np.ndarray
  annotator: np.ndarray
  speaker: np.ndarray
  values: np.ndarray
  dims: tuple[str, ...]
  source: str = "<memory>"
  scale: tuple[float, float] = (-1.0, 1.0)
  dropped: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    n = len(self.clip)
    for name in ("annotator", "speaker"):
      if len(getattr(self, name)) != n:
        raise RatingsError(f"{self.source}: column {name!r} has "
                           f"{len(getattr(self, name))} rows, clip has {n}")
    if self.values.shape != (n, len(self.dims)):
      raise RatingsError(f"{self.source}: values shape {self.values.shape} != "
                         f"({n}, {len(self.dims)}) for dims {self.dims}")

  def __len__(self) -> int:
    return len(self.clip)

  def select(self, rows: np.ndarray) -> "Ratings":
    """Returns the table restricted to `rows` (bool mask or indices)."""
    return dataclasses.replace(
        self, clip=self.clip[rows], annotator=self.annotator[rows],
        speaker=self.speaker[rows], values=self.values[rows])


# Media and feature-file extensions the clip-id rule strips (repeatedly, so
# "x.wav.npy" -> "x"); any other dot belongs to the id (WHiSER's
# "001-105.1-2_14").
MEDIA_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a",
                    ".aac", ".avi", ".mp4", ".mkv", ".npy", ".pt")


def clip_id(name) -> str:
  """THE clip-id rule, shared by every reader, the embedding import and the
  feature job, so they join: the file name without directories and without
  media extensions, whitespace stripped.

    "Audio/MSP-PODCAST_0001_0008.wav" -> "MSP-PODCAST_0001_0008"
    "001-105.1-2_14.wav" -> "001-105.1-2_14";  "a.wav.npy" -> "a"
  """
  name = str(name).strip().replace("\\", "/").rsplit("/", 1)[-1]
  while True:
    stem, ext = os.path.splitext(name)
    if not stem or ext.lower() not in MEDIA_EXTENSIONS:
      return name
    name = stem


def clip_ids(names) -> np.ndarray:
  """clip_id over an array (each distinct name computed once)."""
  names = np.asarray(names, dtype=str)
  if not names.size:
    return names
  uniq, inverse = np.unique(names, return_inverse=True)
  return np.asarray([clip_id(u) for u in uniq], dtype=str)[
      inverse.reshape(names.shape)]


def make_ratings(clip: Sequence[str], annotator: Sequence[str],
                 speaker: Sequence[str], values, dims: Sequence[str],
                 source: str = "<memory>", scale=(-1.0, 1.0),
                 dropped=None) -> Ratings:
  """Builds a Ratings table with canonical dtypes; clip ids follow
  `clip_id`."""
  return Ratings(clip=clip_ids(clip),
                 annotator=np.asarray(annotator, dtype=str),
                 speaker=np.asarray(speaker, dtype=str),
                 values=np.asarray(values, dtype=np.float32).reshape(
                     len(clip), len(dims)),
                 dims=tuple(dims), source=source,
                 scale=(float(scale[0]), float(scale[1])),
                 dropped=dict(dropped or {}))


def with_dropped(table: Ratings, reason: str, n: int) -> Ratings:
  """The table with `n` more rows counted as dropped/merged for `reason`."""
  if not n:
    return table
  dropped = dict(table.dropped)
  dropped[reason] = dropped.get(reason, 0) + int(n)
  return dataclasses.replace(table, dropped=dropped)


def without_missing(table: Ratings, lines: np.ndarray | None = None
                    ) -> tuple[Ratings, np.ndarray | None]:
  """Drops the rows with no value (NaN) in some dimension, each counted
  once under its first missing dimension and logged (with its file lines
  where `lines` gives every row's) -> (table, the kept rows' lines)."""
  missing = np.isnan(table.values)
  if not missing.any():
    return table, lines
  first = missing.argmax(1)
  for j, d in enumerate(table.dims):
    rows = missing.any(1) & (first == j)
    if rows.any():
      where = ("" if lines is None else f" (lines {lines[rows][:10].tolist()}"
               + (" ...)" if rows.sum() > 10 else ")"))
      logging.warning("%s: dropped %d rating(s) with no %s value%s",
                      table.source, int(rows.sum()), d, where)
      table = with_dropped(table, f"no {d} value", int(rows.sum()))
  keep = ~missing.any(1)
  if not keep.any():
    raise RatingsError(f"{table.source}: no rating has a value in every "
                       f"dimension of {table.dims}")
  return table.select(keep), None if lines is None else lines[keep]


def rescale(values, low: float, high: float) -> np.ndarray:
  """Min-max scales ratings on a [low, high] scale to [-1, 1]."""
  values = np.asarray(values, dtype=np.float32)
  return (2.0 * (values - low) / (high - low) - 1.0).astype(np.float32)


def unscale(values, low: float, high: float) -> np.ndarray:
  """Inverse of `rescale`: [-1, 1] back to a [low, high] scale."""
  return low + (np.asarray(values) + 1.0) * (high - low) / 2.0


def validate(ratings: Ratings, known_clips: np.ndarray | None = None,
             row_offset=0, row_word: str = "row") -> Ratings:
  """Checks a table and resolves what has a documented resolution.

  Errors (never silent): a NaN/inf rating, a rating outside [-1, 1], a clip id
  not in `known_clips`, a clip with two different speakers. Rows are reported
  as `{row_word} {row_offset + i}` so readers can name the line of their
  file (row_word="line", row_offset=2 for a CSV with a header).
  Resolution (counted and logged): duplicate (clip, annotator) rows are
  averaged into one.

  Args:
    ratings: the table.
    known_clips: clip ids that have embeddings; None skips that check.
    row_offset: added to row indices in messages (e.g. 2 for a CSV header),
      or each row's own number (an array: rows were left out before).

  Returns:
    The table with duplicates averaged, rows in the original order of first
    appearance.
  """
  src = ratings.source
  bad = ~np.isfinite(ratings.values)
  if bad.any():
    i, d = np.argwhere(bad)[0]
    raise RatingsError(
        f"{src}: {row_word} {_numbers(row_offset, i)}: rating "
        f"{ratings.dims[d]!r} of "
        f"annotator {str(ratings.annotator[i])!r} on clip "
        f"{str(ratings.clip[i])!r} is "
        f"{ratings.values[i, d]} ({bad.any(1).sum()} such rows in total)")
  out = np.abs(ratings.values) > 1.0 + 1e-6
  if out.any():
    i, d = np.argwhere(out)[0]
    raise RatingsError(
        f"{src}: {row_word} {_numbers(row_offset, i)}: rating "
        f"{ratings.dims[d]!r} = "
        f"{ratings.values[i, d]} is outside [-1, 1]; readers must rescale")
  if known_clips is not None:
    unknown = ~np.isin(ratings.clip, known_clips)
    if unknown.any():
      i = int(np.argmax(unknown))
      raise RatingsError(
          f"{src}: {row_word} {_numbers(row_offset, i)}: clip "
          f"{str(ratings.clip[i])!r}"
          " has no "
          f"embedding ({unknown.sum()} rows, "
          f"{len(np.unique(ratings.clip[unknown]))} clips unknown)")
  _check_one_speaker_per_clip(ratings, row_offset, row_word)
  return _average_duplicates(ratings)


def _numbers(row_offset, rows):
  """The numbers messages give table rows: row_offset + i, or row_offset[i]
  where it lists every row's own number."""
  if np.ndim(row_offset):
    return np.asarray(row_offset)[rows]
  return np.asarray(rows) + row_offset


def _check_one_speaker_per_clip(ratings: Ratings, row_offset,
                                row_word: str):
  pairs = np.unique(np.stack([ratings.clip, ratings.speaker], 1), axis=0)
  clips, counts = np.unique(pairs[:, 0], return_counts=True)
  if (counts > 1).any():
    clip = clips[counts > 1][0]
    rows = np.flatnonzero(ratings.clip == clip)
    raise RatingsError(
        f"{ratings.source}: clip {str(clip)!r} has several speakers "
        f"{sorted(set(ratings.speaker[rows].tolist()))} ({row_word}s "
        f"{_numbers(row_offset, rows[:5]).tolist()})")


def _average_duplicates(ratings: Ratings) -> Ratings:
  keys = np.char.add(np.char.add(ratings.clip, "\x00"), ratings.annotator)
  uniq, first, inverse, counts = np.unique(
      keys, return_index=True, return_inverse=True, return_counts=True)
  if len(uniq) == len(keys):
    return ratings
  n_dup = int((counts > 1).sum())
  logging.warning("%s: %d (clip, annotator) pairs rated more than once "
                  "(%d extra rows); their ratings are averaged.",
                  ratings.source, n_dup, len(keys) - len(uniq))
  sums = np.zeros((len(uniq), ratings.values.shape[1]), np.float64)
  np.add.at(sums, inverse, ratings.values)
  means = (sums / counts[:, None]).astype(np.float32)
  order = np.argsort(first)  # keep the order of first appearance
  keep = first[order]
  return with_dropped(
      dataclasses.replace(ratings.select(keep), values=means[order]),
      "merged: the same annotator rated the clip again (averaged)",
      len(keys) - len(uniq))


@dataclasses.dataclass(frozen=True)
class AnnotatorIndex:
  """Dense 0..A-1 index of annotator ids, fixed once per dataset."""
  ids: tuple[str, ...]

  @classmethod
  def from_ids(cls, ids) -> "AnnotatorIndex":
    return cls(tuple(sorted(set(str(i) for i in ids))))

  def __len__(self) -> int:
    return len(self.ids)

  def lookup(self, ids) -> np.ndarray:
    """Maps ids to dense indices; an unknown id is an error naming it."""
    table = {a: i for i, a in enumerate(self.ids)}
    out = np.empty(len(ids), np.int32)
    for j, a in enumerate(ids):
      try:
        out[j] = table[str(a)]
      except KeyError:
        raise RatingsError(f"unknown annotator {str(a)!r} (not among the "
                           f"{len(self.ids)} indexed annotators)") from None
    return out

  def to_json(self) -> str:
    return json.dumps(list(self.ids))

  @classmethod
  def from_json(cls, text: str) -> "AnnotatorIndex":
    return cls(tuple(json.loads(text)))


def consensus(ratings: Ratings) -> tuple[np.ndarray, np.ndarray]:
  """Mean rating per clip: returns (clip ids [C], means [C, D])."""
  clips, inverse = np.unique(ratings.clip, return_inverse=True)
  sums = np.zeros((len(clips), ratings.values.shape[1]), np.float64)
  np.add.at(sums, inverse, ratings.values)
  counts = np.bincount(inverse, minlength=len(clips))
  return clips, (sums / counts[:, None]).astype(np.float32)


def consensus_of(ratings: Ratings, clips: np.ndarray) -> np.ndarray:
  """[C, D] consensus of each of `clips` (in that order); every clip must
  have at least one rating in the table."""
  ids, means = consensus(ratings)
  pos = np.minimum(np.searchsorted(ids, clips), max(len(ids) - 1, 0))
  if len(clips) and (not len(ids) or (ids[pos] != clips).any()):
    missing = np.asarray(clips)[~np.isin(clips, ids)]
    raise RatingsError(f"{ratings.source}: clip {str(missing[0])!r} has no "
                       f"rating ({len(missing)} such clips)")
  return means[pos]


def filter_min_ratings(ratings: Ratings, min_ratings: int) -> Ratings:
  """Keeps annotators with >= min_ratings rows; logs what was dropped."""
  ids, inverse, counts = np.unique(ratings.annotator, return_inverse=True,
                                   return_counts=True)
  keep = counts[inverse] >= min_ratings
  dropped = int((counts < min_ratings).sum())
  if dropped:
    logging.info("%s: dropped %d of %d annotators with < %d ratings "
                 "(%d of %d rows).", ratings.source, dropped, len(ids),
                 min_ratings, int((~keep).sum()), len(ratings))
  return with_dropped(
      ratings.select(keep),
      f"annotator has < {min_ratings} ratings: no head (still in the "
      "consensus)", int((~keep).sum()))
