"""TFDS builder: each record a block of clips, embeddings + sparse ratings.

Stored as array_record and read with `as_data_source()`, so neither writing
nor reading needs TensorFlow. A record holds CLIPS_PER_RECORD consecutive
clips of a split (the last one fewer) in CSR form: their ids, speakers and
embeddings, each clip's number of ratings, then the dense indices of the
annotators who rated them and their ratings, in clip order. Numeric arrays
are stored as raw bytes: a record decodes with a handful of np.frombuffer
calls instead of one protobuf value per float, and reads ~40x faster per
clip than one record per clip (bench/README.md). Records are written in
order (a split's clips in a fixed shuffled order), so clip i of a split is
clip i % CLIPS_PER_RECORD of record i // CLIPS_PER_RECORD. The annotator
index, dimension names, (synthetic only) ground-truth annotator types and
each split's clip count and largest raters-per-clip are dataset metadata,
so a dataset is self-describing.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from annojax.corpora import corpus as corpus_lib
from annojax.corpora import ratings as ratings_lib

NAME = "annojax_ratings"
# 1.1: consensus of all ratings; standardizer; 1.2: dropped; 2.0: records
# hold blocks of clips.
VERSION = "2.0.0"
CLIPS_PER_RECORD = 128
_BYTES = tfds.features.Encoding.BYTES
# The order of each split's clips in the records: fixed, so a dataset is a
# function of its inputs, and shuffled, so a record is a random block.
_ORDER_SEED = 0


class AnnojaxRatings(tfds.core.GeneratorBasedBuilder):
  """Clips with sparse per-annotator ratings. One builder config per corpus."""

  VERSION = tfds.core.Version(VERSION)

  def __init__(self, *, corpus: corpus_lib.Corpus,
               splits: dict[str, np.ndarray], index: ratings_lib.AnnotatorIndex,
               consensus: np.ndarray, standardizer=(None, None, None), **kwargs):
    self._corpus = corpus
    self._splits = splits
    self._index = index
    self._consensus = np.asarray(consensus, np.float32)  # [C, D]
    self._standardizer = standardizer
    self._rows_of = rows_by_clip(corpus.ratings.clip)
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
            "clip_id": tfds.features.Tensor(shape=(None,),
                                            dtype=np.object_),
            "speaker": tfds.features.Tensor(shape=(None,),
                                            dtype=np.object_),
            "embedding": tfds.features.Tensor(
                shape=(None, c.embeddings.shape[1]), dtype=np.float32,
                encoding=_BYTES),
            "num_ratings": tfds.features.Tensor(shape=(None,),
                                                dtype=np.int32,
                                                encoding=_BYTES),
            "annotators": tfds.features.Tensor(shape=(None,),
                                               dtype=np.int32,
                                               encoding=_BYTES),
            "ratings": tfds.features.Tensor(shape=(None, dims),
                                            dtype=np.float32,
                                            encoding=_BYTES),
            # Mean of ALL the clip's ratings (also of annotators without
            # a head): the aggregate model's target and CCC_con's label.
            "consensus": tfds.features.Tensor(shape=(None, dims),
                                              dtype=np.float32,
                                              encoding=_BYTES),
        }),
        disable_shuffling=True,  # records in block order
        metadata=tfds.core.MetadataDict(
            corpus=c.name,
            dims=list(c.dims),
            # The corpus's own (low, high) rating scale, before [-1, 1].
            scale=[float(v) for v in c.ratings.scale],
            annotator_ids=list(self._index.ids),
            annotator_types=(None if types is None else
                             [types.get(a, -1) for a in self._index.ids]),
            # Embeddings are stored standardised: (x - mean) / std, with
            # the source training split's statistics (None: as given).
            feature_mean=_list(self._standardizer[0]),
            feature_std=_list(self._standardizer[1]),
            # ... then limited to [-clip, clip] (None: not limited).
            feature_clip=self._standardizer[2],
            # {reason: rating rows} dropped or merged between the corpus
            # files and this dataset (Ratings.dropped).
            dropped={str(k): int(v)
                     for k, v in c.ratings.dropped.items()},
            clips_per_record=CLIPS_PER_RECORD,
            split_clips={k: len(v) for k, v in self._splits.items()},
            max_raters={k: max((len(self._rows_of.get(c.clips[i], ()))
                                for i in v), default=0)
                        for k, v in self._splits.items()},
        ))

  # Nothing is downloaded: TFDS's "Downloading and preparing dataset" and
  # "downloaded and prepared" banners (printed, not logged) say otherwise.
  def _log_download_bytes(self) -> None:
    pass

  def _log_download_done(self) -> None:
    pass

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is in memory already
    return {name: self._generate_examples(rows)
            for name, rows in self._splits.items()}

  def _generate_examples(self, clip_rows):
    c = self._corpus
    ann = self._index.lookup(c.ratings.annotator)
    rows_of = self._rows_of
    empty = np.zeros(0, np.int64)
    order = np.random.default_rng(_ORDER_SEED).permutation(
        np.asarray(clip_rows))
    for b, s in enumerate(range(0, len(order), CLIPS_PER_RECORD)):
      block = order[s:s + CLIPS_PER_RECORD]
      rows = [rows_of.get(c.clips[i], empty) for i in block]
      flat = np.concatenate(rows) if rows else empty
      yield b, {
          "clip_id": np.asarray(c.clips[block], dtype=object),
          "speaker": np.asarray(c.speakers[block], dtype=object),
          "embedding": np.asarray(c.embeddings[block], np.float32),
          "num_ratings": np.array([len(r) for r in rows], np.int32),
          "annotators": ann[flat].astype(np.int32),
          "ratings": c.ratings.values[flat].astype(np.float32),
          "consensus": self._consensus[block],
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
          standardizer=(None, None, None)) -> str:
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
