"""prepare(config, workdir): corpus files -> validated tables -> TFDS datasets.

The source (pre-training) corpus is split by speaker into train / validation /
test; the target corpus is stored whole as split `full` (the evaluation protocol
makes its own speaker folds). Annotators with fewer than
`config.data.min_ratings` source ratings are dropped, counted and logged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from annojax.corpora import corpus as corpus_lib
from annojax.corpora import embeddings
from annojax.corpora import readers
from annojax.corpora import ratings as ratings_lib
from annojax.corpora import synthetic
from annojax.data import builder as builder_lib


@dataclasses.dataclass(frozen=True)
class Prepared:
  source: str  # dataset directory of the pre-training population
  target: str  # dataset directory of the target corpus
  # Clips / speakers / annotators the target shares with the pre-training
  # data, and which kinds config.data.allow_overlap allowed (see overlap()).
  overlap: dict = dataclasses.field(default_factory=dict)


class LeakageError(ValueError):
  """The target's test material overlaps the pre-training data."""


OVERLAP_KINDS = ("clips", "speakers", "annotators")


def load_corpora(cfg: ml_collections.ConfigDict
                 ) -> tuple[corpus_lib.Corpus, corpus_lib.Corpus]:
  """Reads (source, target) corpora as the data config says."""
  if cfg.corpus == "synthetic":
    return synthetic.make_pair(cfg.synthetic)
  if cfg.corpus == "files":
    specs = readers.resolved(cfg.files)
    src, tgt = specs["source"], specs["target"]
    for role, spec in specs.items():
      if not spec.path:
        raise ValueError(
            f"config.data.files.{role}.path is empty: name the {role} "
            "corpus. One corpus in both roles must be configured explicitly "
            "(target.path = source.path) with options that hold raters, "
            "clips and speakers apart (see configs/crema_d.py); the leakage "
            "check after prepare enforces it.")
    pair = readers.load(src), readers.load(tgt)
    widths = [c.embeddings.shape[1] for c in pair]
    if widths[0] != widths[1]:
      raise ValueError(
          f"{tgt.embeddings}: embeddings of {widths[1]} features, but the "
          f"source's ({src.embeddings}) have {widths[0]}: the model takes "
          "one width; extract both corpora's features the same way")
    return pair
  raise ValueError(f"unknown config.data.corpus {cfg.corpus!r}; "
                   "one of 'synthetic', 'files'")


def overlap(source: ratings_lib.Ratings, target: ratings_lib.Ratings,
            allow=()) -> dict:
  """Counts what the target's test material shares with pre-training.

  Every target clip is a test clip in some fold, so the whole target table
  is test material; the pre-training side is every source rating kept for
  the source dataset. Raises LeakageError naming the counts (and examples)
  unless each overlapping kind is listed in `allow`.
  """
  bad = [k for k in allow if k not in OVERLAP_KINDS]
  if bad:
    raise ValueError(f"config.data.allow_overlap: unknown {bad}; any of "
                     f"{OVERLAP_KINDS}")
  cols = {"clips": "clip", "speakers": "speaker", "annotators": "annotator"}
  shared = {k: np.intersect1d(getattr(source, c), getattr(target, c))
            for k, c in cols.items()}
  out = {k: int(len(v)) for k, v in shared.items()}
  out["allowed"] = sorted(k for k in allow if out[k])
  leaks = [k for k in OVERLAP_KINDS if out[k] and k not in allow]
  if leaks:
    detail = "; ".join(f"{out[k]} {k} (e.g. {shared[k][:3].tolist()})"
                       for k in leaks)
    raise LeakageError(
        f"the target corpus ({target.source}) shares {detail} with the "
        f"pre-training data ({source.source}), so its test material is not "
        "unseen. Split the corpora apart, or set config.data.allow_overlap="
        f"{tuple(leaks)} to run anyway (the results then report it).")
  _warn_allowed(out)
  return out


def _warn_allowed(counts: dict) -> None:
  if counts.get("allowed"):
    logging.warning("overlap allowed by config.data.allow_overlap: %s",
                    {k: counts[k] for k in counts["allowed"]})


def _hash_path(h, path: str):
  """Feeds a file's bytes (or a directory's files, sorted) into `h`."""
  if not path:
    return
  if os.path.isdir(path):
    for root, dirs, files in os.walk(path):
      dirs.sort()
      for name in sorted(files):
        full = os.path.join(root, name)
        h.update(os.path.relpath(full, path).encode())
        _hash_path(h, full)
  elif os.path.isfile(path):
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)


# config.data keys that decide how a dataset is read, not what it holds: a
# change of them reuses the dataset.
_HOW_READ = ("layout", "cache", "shuffle_window")


def fingerprint(cfg: ml_collections.ConfigDict) -> str:
  """Hash of everything that decides a dataset's content: the data config,
  the dataset format, the bytes of every input file (an edited ratings or
  embedding file gives a new dataset, never a stale one) and, for the
  embedded corpus, the generator's version (a changed simulator is new
  data even under the same config)."""
  content = {k: v for k, v in cfg.to_dict().items() if k not in _HOW_READ}
  h = hashlib.sha1(json.dumps(content, sort_keys=True, default=str).encode())
  h.update(builder_lib.VERSION.encode())
  if cfg.corpus == "synthetic":
    h.update(synthetic.VERSION.encode())
  elif cfg.corpus == "files":
    for spec in (cfg.files.source, cfg.files.target):
      _hash_path(h, spec.path)
      for path in embeddings.embedding_files(spec.embeddings):
        _hash_path(h, path)
  return h.hexdigest()


def standardizer(embeddings: np.ndarray, chunk: int = 1 << 16
                 ) -> tuple[np.ndarray, np.ndarray]:
  """(mean, s.d.) per feature, accumulated in float64 over row chunks (no
  float64 copy of the whole matrix); a constant feature gets s.d. 1 (it
  becomes 0 after centring rather than dividing by zero)."""
  x = np.asarray(embeddings)
  n = len(x)
  mean = sum(x[i:i + chunk].sum(0, dtype=np.float64)
             for i in range(0, n, chunk)) / n
  var = sum(np.square(x[i:i + chunk] - mean).sum(0)
            for i in range(0, n, chunk)) / n
  std = np.sqrt(var)
  const = std < 1e-8 * np.maximum(1.0, np.abs(mean))
  if const.any():
    logging.info("%d of %d features are constant on the source training "
                 "split (left at 0 after centring)", int(const.sum()),
                 len(std))
  std = np.where(const, 1.0, std)
  return mean.astype(np.float32), std.astype(np.float32)


def apply_standardizer(embeddings: np.ndarray, mean, std, clip=None,
                       what: str = "embeddings") -> np.ndarray:
  """(x - mean) / std in float32, in one new array, then limited to
  [-clip, clip] when clip is set (None / 0: not limited); how many values
  were limited, and in which features, is logged (naming `what`)."""
  out = np.array(embeddings, np.float32)
  if mean is None:
    return out
  out -= np.asarray(mean, np.float32)
  out /= np.asarray(std, np.float32)
  if clip:
    beyond = np.abs(out) > clip
    if beyond.any():
      per = beyond.sum(0)
      worst = np.argsort(-per)[:5]
      logging.warning(
          "%s: %d of %d standardised feature values lie beyond +-%g s.d. of "
          "the source training split and are clipped to it "
          "(config.data.feature_clip); most in features %s, largest |z| "
          "%.1f", what, int(beyond.sum()), beyond.size, clip,
          {int(j): int(per[j]) for j in worst if per[j]},
          float(np.abs(out).max()))
      np.clip(out, -clip, clip, out=out)
  return out


def feature_clip(cfg) -> float | None:
  """config.data.feature_clip, checked: None (off) or a positive number of
  source-training s.d.s; only standardised features are limited."""
  clip = cfg.get("feature_clip")
  if clip is None or clip == 0 or not cfg.standardize:
    return None
  if not clip > 0:
    raise ValueError(f"config.data.feature_clip={clip!r}: use a positive "
                     "number of s.d.s (e.g. 5), or 0 / None for none")
  return float(clip)


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
  # A changed data config or input file must never reuse a stale dataset:
  # the dataset name carries a fingerprint of everything that decides it.
  fp = fingerprint(cfg)
  record = os.path.join(out_dir, "prepared", f"{fp}.json")
  done = _reuse(record, out_dir)
  if done:
    return done
  source, target = load_corpora(cfg)
  tables, kept = [], []
  for corpus, min_ratings, fractions in (
      (source, cfg.min_ratings, dict(validation=cfg.val_fraction,
                                     test=cfg.test_fraction)),
      (target, 1, None)):
    full = ratings_lib.validate(corpus.ratings, known_clips=corpus.clips)
    table = ratings_lib.filter_min_ratings(full, min_ratings)
    if not len(table):
      raise ratings_lib.RatingsError(
          f"{corpus.name}: no annotator has >= {min_ratings} ratings")
    keep = np.isin(corpus.clips, table.clip)
    if (~keep).any():
      logging.info("%s: %d of %d clips have no rating left and are dropped.",
                   corpus.name, int((~keep).sum()), len(keep))
    # The consensus of a clip is the mean of ALL its ratings, including
    # those of annotators min_ratings keeps out of the heads.
    cons = ratings_lib.consensus_of(full, corpus.clips[keep])
    corpus = dataclasses.replace(
        corpus, name=f"{corpus.name}_{fp[:10]}",
        clips=corpus.clips[keep], speakers=corpus.speakers[keep],
        embeddings=corpus.embeddings[keep], ratings=table)
    splits = (speaker_splits(corpus.speakers, fractions, cfg.split_seed)
              if fractions else {"full": np.arange(len(corpus.clips))})
    tables.append(table)
    kept.append((corpus, splits, cons))
  shared = overlap(tables[0], tables[1], tuple(cfg.allow_overlap))
  # Standardise every embedding with the source TRAINING split's statistics
  # (stored in the datasets' metadata and the export bundle).
  # Values beyond +-config.data.feature_clip s.d. are limited to it: a
  # feature nearly constant on the pre-training speakers can put a new
  # speaker hundreds of s.d.s out (NSC eGeMAPS: |z| up to 486), and the
  # model's output on that clip with it.
  mean = std = None
  clip = feature_clip(cfg)
  if cfg.standardize:
    src_corpus, src_splits, _ = kept[0]
    mean, std = standardizer(src_corpus.embeddings[src_splits["train"]])
  paths = []
  for corpus, splits, cons in kept:
    corpus = dataclasses.replace(corpus, embeddings=apply_standardizer(
        corpus.embeddings, mean, std, clip, corpus.name))
    index = ratings_lib.AnnotatorIndex.from_ids(corpus.ratings.annotator)
    logging.info("%s: %d clips, %d annotators, %d ratings; splits %s; "
                 "rating rows dropped or merged: %s",
                 corpus.name, len(corpus.clips), len(index),
                 len(corpus.ratings), {k: len(v) for k, v in splits.items()},
                 corpus.ratings.dropped or "none")
    paths.append(builder_lib.build(corpus, splits, index, out_dir,
                                   consensus=cons,
                                   standardizer=(mean, std, clip)))
  write_json(record, {"source": os.path.relpath(paths[0], out_dir),
                      "target": os.path.relpath(paths[1], out_dir),
                      "overlap": shared})
  return Prepared(*paths, overlap=shared)


def write_json(path: str, obj, indent: int = 1) -> None:
  """Writes `obj` as JSON atomically (a reader never sees half a file)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(obj, f, indent=indent)
  os.replace(path + ".tmp", path)


def _reuse(record: str, out_dir: str) -> Prepared | None:
  """The datasets an earlier prepare built from the same fingerprint, so
  train / evaluate / export do not read and validate the corpora again (the
  fingerprint covers config.data and every input file's bytes)."""
  if not os.path.exists(record):
    return None
  with open(record) as f:
    r = json.load(f)
  paths = [os.path.join(out_dir, r[k]) for k in ("source", "target")]
  if not all(os.path.exists(os.path.join(p, "dataset_info.json"))
             for p in paths):
    return None
  logging.info("reusing the prepared datasets %s (same data config and "
               "input files; corpora not read again)", paths)
  _warn_allowed(r["overlap"])
  return Prepared(*paths, overlap=r["overlap"])
