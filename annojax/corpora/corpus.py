"""A corpus = clip embeddings + the Ratings table (+ ground truth, if any)."""

from __future__ import annotations

import dataclasses

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
