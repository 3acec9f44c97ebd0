"""Corpus readers by name, and joining a Ratings table with embeddings.

  config.data.corpus = "files"
  config.data.files.source = dict(name=..., reader="msp_podcast",
                                  path=<labels dir>, embeddings=<.npz>)
  config.data.files.dims = ("activation", "valence")

Dimensional readers return every attribute their corpus has; `dims` keeps
those a run uses (source and target must agree): config.data.files.dims
for both, unless a corpus sets its own (one corpus's own dims apply to the
other too where the other sets none; resolved()).

Readers (each module documents the distributed format it reads, and its
spec.options; ../shared/formats/FORMATS.md has the formats' provenance):
  generic      long CSV: clip, annotator, speaker, <dims> (generic_csv.py)
  msp_podcast  release root or Labels/: labels_detailed.csv (packed EmoDetail
               of 1.7-1.12 and WHiSER, or the v1.6/v2.0 columns) +
               labels_consensus.csv; options splits=("Train",) | "all",
               unknown_speaker=<regex>
  iemocap      corpus root: Session*/dialog/EmoEvaluation/*.txt; options
               self_reports=False, per_session_ids=False
  msp_improv   Evalution.txt / Evaluation.txt (activation un-reversed)
  muse         the public crowdsourcing CSV + options.annotators=<per-clip
               annotator list> (the public file has no worker ids);
               self_reports=False
  crema_d      finishedResponses.csv (categorical, one-hot over 6 emotions);
               options stimulus, raters, actors
  listening_test  one row per (listener, stimulus), one column per item
               (NSC's SC_ratings.csv); options columns={dim: item}, scale,
               speaker, variants, partition (listening_test.py)

Every reader names clips by ratings.clip_id, the rule the embedding import
and the feature job share, and counts every rating it drops by reason
(Ratings.dropped, stored in the prepared dataset's metadata).
"""

from __future__ import annotations

import copy
import dataclasses

from absl import logging

from annojax.corpora import corpus as corpus_lib
from annojax.corpora import crema_d
from annojax.corpora import embeddings
from annojax.corpora import generic_csv
from annojax.corpora import iemocap
from annojax.corpora import listening_test
from annojax.corpora import msp_improv
from annojax.corpora import msp_podcast
from annojax.corpora import muse
from annojax.corpora import ratings as ratings_lib

def _options(spec) -> dict:
  return dict(spec.get("options", None) or {})


def _scale(spec) -> tuple:
  return tuple(spec.get("scale", None) or ())


READERS = {
    "generic": lambda spec: generic_csv.read_ratings(
        spec.path, tuple(spec.dims), _scale(spec)),
    "msp_podcast": lambda spec: msp_podcast.read(spec.path, **_options(spec)),
    "iemocap": lambda spec: iemocap.read(spec.path, **_options(spec)),
    "msp_improv": lambda spec: msp_improv.read(spec.path, **_options(spec)),
    "muse": lambda spec: muse.read(spec.path, **_options(spec)),
    "crema_d": lambda spec: crema_d.read(spec.path, **_options(spec)),
    "listening_test": lambda spec: listening_test.read(spec.path,
                                                       **_options(spec)),
}
CATEGORICAL = ("crema_d",)
ROLES = ("source", "target")


def resolved(files) -> dict:
  """{"source": spec, "target": spec} of config.data.files with each
  corpus's dims decided: its own where set; else the other corpus's where
  only that one is set (dims set once apply to both); else files.dims.
  The specs are copies: the config is not changed."""
  own = {r: tuple(files[r].get("dims", None) or ()) for r in ROLES}
  out = {}
  for role, other in zip(ROLES, ROLES[::-1]):
    spec = copy.deepcopy(files[role])
    dims = own[role] or own[other] or tuple(files.get("dims", None) or ())
    if not dims and spec.reader not in CATEGORICAL:
      raise ValueError(f"config.data.files.{role}.dims is empty (and so is "
                       "config.data.files.dims): name the dimensions, e.g. "
                       "('activation', 'valence')")
    if own[role] != dims:
      logging.info("config.data.files.%s.dims: %s (from %s)", role, dims,
                   f"files.{other}.dims" if own[other] else "files.dims")
    with spec.unlocked():
      spec.dims = dims
    out[role] = spec
  return out


def read(spec) -> ratings_lib.Ratings:
  if spec.reader not in READERS:
    raise ValueError(f"unknown reader {spec.reader!r}; one of "
                     f"{sorted(READERS)}")
  return READERS[spec.reader](spec)


def select_dims(table: ratings_lib.Ratings, dims) -> ratings_lib.Ratings:
  """Keeps `dims` (in that order), so corpora with different attribute sets
  (MuSE has no dominance) share the dimensions of a cross-corpus run."""
  missing = [d for d in dims if d not in table.dims]
  if missing:
    raise ratings_lib.RatingsError(
        f"{table.source}: no dimension(s) {missing}; it has {table.dims}")
  idx = [table.dims.index(d) for d in dims]
  table = dataclasses.replace(table, values=table.values[:, idx],
                              dims=tuple(dims))
  # A rating missing a dimension the run uses is dropped (counted per
  # dimension); one missing only an unused dimension is kept.
  return ratings_lib.without_missing(table)[0]


def read_used(spec) -> ratings_lib.Ratings:
  """read(spec); dimensional readers keep the run's spec.dims."""
  table = read(spec)
  if spec.reader not in CATEGORICAL:
    table = select_dims(table, tuple(spec.dims))
  return table


def load(spec) -> corpus_lib.Corpus:
  """Reads and joins one corpus; dimensional readers keep spec.dims."""
  if spec.reader == "generic":  # errors can name the CSV line
    return generic_csv.load(spec.name, spec.path, spec.embeddings,
                            tuple(spec.dims), _scale(spec))
  return corpus_lib.join(spec.name, read_used(spec),
                         *embeddings.read_embeddings(spec.embeddings))
