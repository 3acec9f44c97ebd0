"""A corpus = clip embeddings + the Ratings table (+ ground truth, if any)."""

from __future__ import annotations

import dataclasses

from absl import logging
import numpy as np

from annojax.corpora import ratings as ratings_lib


@dataclasses.dataclass(frozen=True)
class Corpus:
  """Everything the data layer stores for one corpus.

  Attributes:
    name: corpus name, also the TFDS config name.
    clips: [C] clip ids.
    speakers: [C] speaker of each clip.
    embeddings: [C, F] float32 utterance embeddings.
    ratings: long-format ratings whose clips are all in `clips`.
    annotator_types: optional ground truth {annotator id: latent type}
      (synthetic corpora only), kept so tests can check enrollment.
  """
  name: str
  clips: np.ndarray
  speakers: np.ndarray
  embeddings: np.ndarray
  ratings: ratings_lib.Ratings
  annotator_types: dict[str, int] | None = None

  def __post_init__(self):
    if len(self.clips) != len(self.embeddings):
      raise ratings_lib.RatingsError(
          f"{self.name}: {len(self.clips)} clips but "
          f"{len(self.embeddings)} embeddings")
    if len(np.unique(self.clips)) != len(self.clips):
      raise ratings_lib.RatingsError(f"{self.name}: duplicate clip ids")

  @property
  def dims(self) -> tuple[str, ...]:
    return self.ratings.dims


def join(name: str, table: ratings_lib.Ratings, ids: np.ndarray,
         embeddings: np.ndarray, row_offset: int = 0,
         row_word: str = "row") -> Corpus:
  """Validates a ratings table against clip embeddings and keeps the rated
  clips: a rated clip without an embedding is an error (validate names its
  row/line), an embedded clip nobody rated is left out and counted."""
  table = ratings_lib.validate(table, known_clips=ids, row_offset=row_offset,
                               row_word=row_word)
  rated = np.isin(ids, table.clip)
  if (~rated).any():
    logging.info("%s: %d of %d embedded clips have no rating", name,
                 int((~rated).sum()), len(ids))
  speaker = dict(zip(table.clip, table.speaker))
  ids = ids[rated]
  return Corpus(name=name, clips=ids,
                speakers=np.array([speaker[c] for c in ids]),
                embeddings=embeddings[rated], ratings=table)
