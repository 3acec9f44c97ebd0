"""Row collection shared by the corpus readers: values, drops, errors.

A reader appends (clip, annotator, speaker, values) rows, or a drop with its
reason; `table()` logs every drop count by reason (nothing is lost silently)
and returns the Ratings table on the corpus scale rescaled to [-1, 1].
"""

from __future__ import annotations

import collections

from absl import logging
import numpy as np

from annojax.corpora import ratings as ratings_lib


class Rows:

  def __init__(self, source: str, dims, scale: tuple[float, float]):
    self.source, self.dims, self.scale = source, tuple(dims), scale
    self.clip, self.annotator, self.speaker, self.values = [], [], [], []
    self.drops = collections.Counter()

  def add(self, clip, annotator, speaker, values):
    self.clip.append(clip)
    self.annotator.append(annotator)
    self.speaker.append(speaker)
    self.values.append(values)

  def add_raw(self, clip, annotator, speaker, raw, where: str,
              transform=None) -> bool:
    """Adds a row from the values' text, on the corpus scale.

    An empty or "NaN" value is a MISSING value, kept as NaN: the row stays,
    and readers.select_dims drops it only if a run uses that dimension
    (MSP-IMPROV's `D:NaN` must not cost the activation and valence
    ratings). A row with no value at all, or a value outside the scale, is
    a counted drop; non-numeric text is an error naming `where`.
    `transform` maps the checked values (e.g. to reverse a scale). Returns
    whether the row was kept."""
    raw = [(x or "").strip() for x in raw]
    vals = [np.nan if x == "" or x.lower() == "nan" else number(x, where)
            for x in raw]
    if all(np.isnan(v) for v in vals):
      self.drop("no value in any dimension")
      return False
    lo, hi = self.scale
    if not all(np.isnan(v) or lo <= v <= hi for v in vals):
      self.drop(f"value outside the {lo:g}-{hi:g} scale")
      return False
    self.add(clip, annotator, speaker, transform(vals) if transform else vals)
    return True

  def drop(self, reason: str, n: int = 1):
    self.drops[reason] += n

  def table(self) -> ratings_lib.Ratings:
    for reason, n in sorted(self.drops.items()):
      logging.warning("%s: dropped %d rating(s): %s", self.source, n, reason)
    if not self.clip:
      raise ratings_lib.RatingsError(
          f"{self.source}: no usable ratings (drops: {dict(self.drops)})")
    values = np.asarray(self.values, np.float32).reshape(-1, len(self.dims))
    for d, n in zip(self.dims, np.isnan(values).sum(0)):
      if n:
        logging.info("%s: %d rating(s) have no %s value (kept; dropped only "
                     "where a run uses %s)", self.source, n, d, d)
    return ratings_lib.make_ratings(
        self.clip, self.annotator, self.speaker,
        ratings_lib.rescale(values, *self.scale), self.dims,
        source=self.source, scale=self.scale, dropped=self.drops)


def number(text: str, where: str) -> float:
  """float(text), or a RatingsError naming `where` (file:line)."""
  try:
    return float(text)
  except (TypeError, ValueError):
    raise ratings_lib.RatingsError(
        f"{where}: {text!r} is not a number") from None


def require_columns(header, required, path):
  missing = [c for c in required if c not in (header or [])]
  if missing:
    raise ratings_lib.RatingsError(
        f"{path}: missing column(s) {missing}; header is {header}")
