"""prepare(config, workdir): corpus files -> validated tables -> TFDS datasets.

The source (pre-training) corpus is split by speaker into train / validation /
test; the target corpus is stored whole as split `full` (the evaluation protocol
makes its own speaker folds). Annotators with fewer than
`config.data.min_ratings` source ratings are dropped, counted and logged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from annojax.corpora import corpus as corpus_lib
from annojax.corpora import readers
from annojax.corpora import ratings as ratings_lib
from annojax.corpora import synthetic
from annojax.data import builder as builder_lib


@dataclasses.dataclass(frozen=True)
class Prepared:
  source: str  # dataset directory of the pre-training population
  target: str  # dataset directory of the target corpus


def load_corpora(cfg: ml_collections.ConfigDict
                 ) -> tuple[corpus_lib.Corpus, corpus_lib.Corpus]:
  """Reads (source, target) corpora as the data config says."""
  if cfg.corpus == "synthetic":
    return synthetic.make_pair(cfg.synthetic)
  if cfg.corpus == "files":
    src, tgt = cfg.files.source, cfg.files.target
    if not tgt.path:  # one corpus in both roles (e.g. configs/crema_d.py)
      tgt = ml_collections.ConfigDict(tgt.to_dict())
      tgt.path, tgt.embeddings = src.path, src.embeddings
    return readers.load(src), readers.load(tgt)
  raise ValueError(f"unknown config.data.corpus {cfg.corpus!r}; "
                   "one of 'synthetic', 'files'")


def speaker_splits(speakers: np.ndarray, fractions: dict[str, float],
                   seed: int) -> dict[str, np.ndarray]:
  """Splits clip rows by speaker; `fractions` for all splits but 'train'."""
  uniq = np.random.default_rng(seed).permutation(np.unique(speakers))
  out, start = {}, 0
  for name, frac in fractions.items():
    n = max(1, int(round(frac * len(uniq))))
    out[name] = np.flatnonzero(np.isin(speakers, uniq[start:start + n]))
    start += n
  out["train"] = np.flatnonzero(np.isin(speakers, uniq[start:]))
  if not len(out["train"]):
    raise ValueError(f"no training speakers left out of {len(uniq)}")
  return out


def data_dir(config, workdir: str) -> str:
  return config.data.data_dir or os.path.join(workdir, "data")


def prepare(config: ml_collections.ConfigDict, workdir: str) -> Prepared:
  """Builds (or reuses) the TFDS datasets of the configured corpora.

  Multi-process: process 0 builds while the others wait at a barrier, then
  they reuse what it wrote (the data dir must be on a shared filesystem).
  """
  if jax.process_count() > 1:
    if jax.process_index() == 0:
      out = _prepare(config, workdir)
    multihost_utils.sync_global_devices("annojax_prepare")
    if jax.process_index() == 0:
      return out
  return _prepare(config, workdir)


def _prepare(config: ml_collections.ConfigDict, workdir: str) -> Prepared:
  cfg = config.data
  out_dir = data_dir(config, workdir)
  tfds.disable_progress_bar()
  # A changed data config must never reuse a stale dataset: the dataset name
  # carries a fingerprint of everything that decides its content.
  fingerprint = hashlib.sha1(cfg.to_json(sort_keys=True).encode()).hexdigest()
  source, target = load_corpora(cfg)
  paths = []
  for corpus, min_ratings, fractions in (
      (source, cfg.min_ratings, dict(validation=cfg.val_fraction,
                                     test=cfg.test_fraction)),
      (target, 1, None)):
    table = ratings_lib.validate(corpus.ratings, known_clips=corpus.clips)
    table = ratings_lib.filter_min_ratings(table, min_ratings)
    if not len(table):
      raise ratings_lib.RatingsError(
          f"{corpus.name}: no annotator has >= {min_ratings} ratings")
    keep = np.isin(corpus.clips, table.clip)
    if (~keep).any():
      logging.info("%s: %d of %d clips have no rating left and are dropped.",
                   corpus.name, int((~keep).sum()), len(keep))
    corpus = dataclasses.replace(
        corpus, name=f"{corpus.name}_{fingerprint[:10]}",
        clips=corpus.clips[keep], speakers=corpus.speakers[keep],
        embeddings=corpus.embeddings[keep], ratings=table)
    splits = (speaker_splits(corpus.speakers, fractions, cfg.split_seed)
              if fractions else {"full": np.arange(len(corpus.clips))})
    index = ratings_lib.AnnotatorIndex.from_ids(table.annotator)
    logging.info("%s: %d clips, %d annotators, %d ratings; splits %s",
                 corpus.name, len(corpus.clips), len(index), len(table),
                 {k: len(v) for k, v in splits.items()})
    paths.append(builder_lib.build(corpus, splits, index, out_dir))
  return Prepared(*paths)
