"""The documented generic long CSV, and embedding files keyed by clip id.

Ratings CSV: a header, then one row per (clip, annotator) rating.
  Required columns: clip, annotator, speaker, and one column per dimension
  (names given by the caller, e.g. activation, valence). Ratings are on
  [scale_low, scale_high] and are rescaled to [-1, 1]. Extra columns are
  ignored; a row with more fields than the header, a value outside the
  scale (reported as written in the file) and a file without rows are
  errors. Errors name the file and the 1-based line.
Embeddings: .npz with arrays `clip_ids` [C] and `embeddings` [C, F], a
  .npy of a dict {clip id: vector}, or openSMILE CSV output (one row per
  clip; several files separated by commas; annojax/egemaps.py).
Clip ids (ratings and embeddings alike) follow ratings.clip_id, the rule
every reader shares: "audio/x.wav" and "x" are the same clip.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from annojax.corpora import corpus as corpus_lib
from annojax.corpora import embeddings
from annojax.corpora import ratings as ratings_lib


def read_ratings(path: str, dims, scale=(-1.0, 1.0),
                 speaker_optional: bool = False) -> ratings_lib.Ratings:
  """Reads a ratings CSV into a (not yet validated) Ratings table.

  speaker_optional: a file without a speaker column gets speaker "" (fine
  for enrollment, which needs no speaker folds).
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"ratings file {path} does not exist")
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    header = reader.fieldnames or []
    no_speaker = speaker_optional and "speaker" not in header
    required = ["clip", "annotator", *([] if no_speaker else ["speaker"]),
                *dims]
    missing = [c for c in required if c not in header]
    if missing:
      raise ratings_lib.RatingsError(
          f"{path}: missing column(s) {missing}; header is {header}")
    cols = {c: [] for c in required}
    for line, row in enumerate(reader, start=2):
      if None in row:  # csv puts surplus fields under the key None
        raise ratings_lib.RatingsError(
            f"{path}: line {line}: {len(header) + len(row[None])} fields, "
            f"the header has {len(header)} ({header}); extra "
            f"{row[None]}")
      for c in required:
        v = row[c]
        if v is None:
          raise ratings_lib.RatingsError(f"{path}: line {line}: row is short, "
                                         f"no value for {c!r}")
        cols[c].append(v)
  if not cols["clip"]:
    raise ratings_lib.RatingsError(f"{path}: no rating rows (only a header)")
  lo, hi = scale
  values = np.empty((len(cols["clip"]), len(dims)), np.float32)
  for j, d in enumerate(dims):
    for i, v in enumerate(cols[d]):
      try:
        values[i, j] = float(v) if v.strip() else np.nan
      except ValueError:
        raise ratings_lib.RatingsError(
            f"{path}: line {i + 2}: {d}={v!r} is not a number") from None
      if not lo - 1e-9 <= values[i, j] <= hi + 1e-9 and np.isfinite(
          values[i, j]):
        raise ratings_lib.RatingsError(
            f"{path}: line {i + 2}: {d}={v.strip()} is outside the scale "
            f"[{lo:g}, {hi:g}] (config scale=(low, high))")
  speakers = [""] * len(cols["clip"]) if no_speaker else cols["speaker"]
  return ratings_lib.make_ratings(
      cols["clip"], cols["annotator"], speakers,
      ratings_lib.rescale(values, *scale), dims, source=path, scale=scale)


def load(name: str, ratings_path: str, embeddings_path: str, dims,
         scale=(-1.0, 1.0)) -> corpus_lib.Corpus:
  """Reads, validates and joins a ratings CSV with an embedding file."""
  # Row offset 2: line 1 is the header, rows are 0-based.
  return corpus_lib.join(name, read_ratings(ratings_path, dims, scale),
                         *embeddings.read_embeddings(embeddings_path), row_offset=2,
                         row_word="line")
