"""The documented generic long CSV, and embedding files keyed by clip id.

Ratings CSV: a header, then one row per (clip, annotator) rating.
  Required columns: clip, annotator, speaker, and one column per dimension
  (names given by the caller, e.g. activation, valence). Ratings are on
  [scale_low, scale_high] and are rescaled to [-1, 1]. The scale is
  declared (config.data.files.<role>.scale) or, left empty, read from the
  ratings (their smallest and largest values, with a warning naming them);
  a declared scale wider than every rating uses is warned about (a 1-5 file
  read on 1-7). Extra columns are ignored; a row with more fields than the
  header, a value outside the scale (reported as written in the file) and a
  file without rows are errors. Errors name the file and the 1-based line.
  As a corpus (load), a rating with no value (empty) in a dimension the run
  uses is dropped, counted by dimension and logged with its lines.
Embeddings: .npz with arrays `clip_ids` [C] and `embeddings` [C, F], a
  .npy of a dict {clip id: vector}, or openSMILE CSV output (one row per
  clip; several files separated by commas; annojax/egemaps.py).
Clip ids (ratings and embeddings alike) follow ratings.clip_id, the rule
every reader shares: "audio/x.wav" and "x" are the same clip.
"""

from __future__ import annotations

import csv
import os

from absl import logging
import numpy as np

from annojax.corpora import corpus as corpus_lib
from annojax.corpora import embeddings
from annojax.corpora import ratings as ratings_lib


def read_ratings(path: str, dims, scale=(-1.0, 1.0),
                 speaker_optional: bool = False) -> ratings_lib.Ratings:
  """Reads a ratings CSV into a (not yet validated) Ratings table.

  scale: (low, high) the ratings were given on; None or () reads it from
    the file (its smallest and largest rating, logged as a warning).
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
  values = np.empty((len(cols["clip"]), len(dims)), np.float32)
  for j, d in enumerate(dims):
    for i, v in enumerate(cols[d]):
      try:
        values[i, j] = float(v) if v.strip() else np.nan
      except ValueError:
        raise ratings_lib.RatingsError(
            f"{path}: line {i + 2}: {d}={v!r} is not a number") from None
      if np.isinf(values[i, j]):
        raise ratings_lib.RatingsError(
            f"{path}: line {i + 2}: {d}={v.strip()} is not a finite number")
  scale = _scale(path, values, scale)
  lo, hi = scale
  out = np.isfinite(values) & ((values < lo - 1e-9) | (values > hi + 1e-9))
  if out.any():
    i, j = np.argwhere(out)[0]
    raise ratings_lib.RatingsError(
        f"{path}: line {i + 2}: {dims[j]}={cols[dims[j]][i].strip()} is "
        f"outside the scale [{lo:g}, {hi:g}] (config scale=(low, high))")
  speakers = [""] * len(cols["clip"]) if no_speaker else cols["speaker"]
  return ratings_lib.make_ratings(
      cols["clip"], cols["annotator"], speakers,
      ratings_lib.rescale(values, *scale), dims, source=path, scale=scale)


def _scale(path: str, values: np.ndarray, scale) -> tuple[float, float]:
  """The declared (low, high), or the file's own range where none is
  declared (a warning names it)."""
  seen = values[np.isfinite(values)]
  if scale is None or not len(scale):
    if not seen.size or seen.min() == seen.max():
      raise ratings_lib.RatingsError(
          f"{path}: no scale declared, and the ratings cannot show it (they "
          f"are {'all ' + format(seen.min(), 'g') if seen.size else 'empty'}"
          "); declare it: config.data.files.<source|target>.scale=(low, "
          "high)")
    lo, hi = float(seen.min()), float(seen.max())
    logging.warning(
        "%s: no scale declared; read from the ratings as [%g, %g] (their "
        "smallest and largest values). If they were given on a wider scale, "
        "declare it: config.data.files.<source|target>.scale=(low, high)",
        path, lo, hi)
    return lo, hi
  if len(scale) != 2 or not float(scale[0]) < float(scale[1]):
    raise ValueError(f"{path}: scale {tuple(scale)} is not (low, high) with "
                     "low < high")
  return float(scale[0]), float(scale[1])


def _warn_if_inside(table: ratings_lib.Ratings) -> None:
  """A corpus whose ratings all lie strictly inside its declared scale at
  one end or both (a 1-5 corpus declared 1-7) is named with its range."""
  raw = ratings_lib.unscale(table.values, *table.scale)
  raw = raw[np.isfinite(raw)]
  lo, hi = table.scale
  if raw.size and (raw.min() > lo + 1e-6 or raw.max() < hi - 1e-6):
    logging.warning(
        "%s: every rating lies in [%g, %g], inside the declared scale "
        "[%g, %g]; if they were given on a smaller scale, declare that one "
        "(the scale maps ratings to [-1, 1]: it changes every CCC)",
        table.source, float(raw.min()), float(raw.max()), lo, hi)


def load(name: str, ratings_path: str, embeddings_path: str, dims,
         scale=None) -> corpus_lib.Corpus:
  """Reads, validates and joins a ratings CSV with an embedding file (scale
  None or (): read from the ratings)."""
  table = read_ratings(ratings_path, dims, scale)
  if scale is not None and len(scale):
    _warn_if_inside(table)
  # Line numbers: line 1 is the header.
  table, lines = ratings_lib.without_missing(table,
                                             np.arange(len(table)) + 2)
  return corpus_lib.join(name, table,
                         *embeddings.read_embeddings(embeddings_path),
                         row_offset=lines, row_word="line")
