"""TFDS builder: one example per clip, embedding + its sparse ratings.

Stored as array_record and read with `as_data_source()`, so neither writing
nor reading needs TensorFlow. Each example holds the clip's embedding, its
speaker, the dense indices of the annotators who rated it and their ratings.
The annotator index, dimension names and (synthetic only) ground-truth
annotator types are stored as dataset metadata, so a dataset is
self-describing.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from annojax.corpora import corpus as corpus_lib
from annojax.corpora import ratings as ratings_lib

NAME = "annojax_ratings"
VERSION = "1.2.0"  # 1.1: consensus of all ratings; standardizer; 1.2: dropped


class AnnojaxRatings(tfds.core.GeneratorBasedBuilder):
  """Clips with sparse per-annotator ratings. One builder config per corpus."""

  VERSION = tfds.core.Version(VERSION)

  def __init__(self, *, corpus: corpus_lib.Corpus,
               splits: dict[str, np.ndarray], index: ratings_lib.AnnotatorIndex,
               consensus: np.ndarray, standardizer=(None, None), **kwargs):
    self._corpus = corpus
    self._splits = splits
    self._index = index
    self._consensus = np.asarray(consensus, np.float32)  # [C, D]
    self._standardizer = standardizer
    super().__init__(config=tfds.core.BuilderConfig(name=corpus.name),
                     file_format="array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    c = self._corpus
    dims = len(c.dims)
    types = c.annotator_types
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"annojax ratings for corpus {c.name}",
        features=tfds.features.FeaturesDict({
            "clip_id": tfds.features.Text(),
            "speaker": tfds.features.Text(),
            "embedding": tfds.features.Tensor(
                shape=(c.embeddings.shape[1],), dtype=np.float32),
            "annotators": tfds.features.Tensor(shape=(None,),
                                               dtype=np.int32),
            "ratings": tfds.features.Tensor(shape=(None, dims),
                                            dtype=np.float32),
            # Mean of ALL the clip's ratings (also of annotators without
            # a head): the aggregate model's target and CCC_con's label.
            "consensus": tfds.features.Tensor(shape=(dims,),
                                              dtype=np.float32),
        }),
        metadata=tfds.core.MetadataDict(
            corpus=c.name,
            dims=list(c.dims),
            annotator_ids=list(self._index.ids),
            annotator_types=(None if types is None else
                             [types.get(a, -1) for a in self._index.ids]),
            # Embeddings are stored standardised: (x - mean) / std, with
            # the source training split's statistics (None: as given).
            feature_mean=_list(self._standardizer[0]),
            feature_std=_list(self._standardizer[1]),
            # {reason: rating rows} dropped or merged between the corpus
            # files and this dataset (Ratings.dropped).
            dropped={str(k): int(v)
                     for k, v in c.ratings.dropped.items()},
        ))

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is in memory already
    return {name: self._generate_examples(rows)
            for name, rows in self._splits.items()}

  def _generate_examples(self, clip_rows):
    c = self._corpus
    ann = self._index.lookup(c.ratings.annotator)
    rows_of = rows_by_clip(c.ratings.clip)
    empty = np.zeros(0, np.int64)
    for i in clip_rows:
      clip = c.clips[i]
      rows = rows_of.get(clip, empty)
      yield clip, {
          "clip_id": clip,
          "speaker": c.speakers[i],
          "embedding": c.embeddings[i],
          "annotators": ann[rows],
          "ratings": c.ratings.values[rows],
          "consensus": self._consensus[i],
      }


def _list(x):
  return None if x is None else np.asarray(x, np.float64).tolist()


def rows_by_clip(clips: np.ndarray) -> dict[str, np.ndarray]:
  """{clip id: indices of its rows} in one sort."""
  order = np.argsort(clips, kind="stable")
  uniq, starts = np.unique(clips[order], return_index=True)
  return dict(zip(uniq, np.split(order, starts[1:])))


def dataset_dir(data_dir: str, corpus_name: str) -> str:
  return os.path.join(data_dir, NAME, corpus_name, VERSION)


def build(corpus: corpus_lib.Corpus, splits: dict[str, np.ndarray],
          index: ratings_lib.AnnotatorIndex, data_dir: str,
          consensus: np.ndarray | None = None,
          standardizer=(None, None)) -> str:
  """Writes the dataset (if not there yet); returns its directory.

  consensus [C, D]: per clip (aligned with corpus.clips) the mean of all its
  ratings; default: the mean of the ratings in corpus.ratings.
  """
  if consensus is None:
    consensus = ratings_lib.consensus_of(corpus.ratings, corpus.clips)
  builder = AnnojaxRatings(corpus=corpus, splits=splits, index=index,
                           consensus=consensus, standardizer=standardizer,
                           data_dir=data_dir)
  builder.download_and_prepare()
  return dataset_dir(data_dir, corpus.name)


def open_dataset(path: str) -> tfds.core.DatasetBuilder:
  """Opens a prepared dataset directory without the corpus or the class."""
  if not os.path.exists(os.path.join(path, "dataset_info.json")):
    raise FileNotFoundError(
        f"no prepared annojax dataset at {path}; run --mode=prepare first")
  return tfds.builder_from_directory(path)
