"""Listening tests: one row per (listener, stimulus), one column per item.

The layout of a questionnaire-style listening test, e.g. the NSC speaker-
characteristics test (../shared/data/nsc, SC_ratings.csv):

  listener_pseudonym,...,sample_heard,speaker_ID,...,aktiv,angenehm,...
  Rater001,...,m016_beirut_stimulus.wav,016,...,93,70,...

Options (spec.options):
  columns    {dimension: item column}, e.g. {"activation": "aktiv",
             "valence": "angenehm"}; the table's dimensions, in this order.
  scale      (low, high) of the items (sliders: (0, 100)).
  listener   column of the listener id (default "listener_pseudonym").
  stimulus   column of the stimulus file name (default "sample_heard");
             clip id = ratings.clip_id of it, after `variants`.
  speaker    regex on the stimulus name whose first group is the speaker
             (default r"^([^_]+)_": "m016_beirut_stimulus.wav" -> "m016"),
             or "column:<name>" to read a column.
  variants   name suffixes (before the extension) that denote the same
             stimulus; each is replaced by the first, so the ratings'
             "w296_avarua_d5.wav" and the features' "w296_avarua_stimulus"
             are one clip (default ("_stimulus", "_d5")).
  partition  split one test into pre-training and target material with
             nothing shared: dict(part="source" | "target", fraction=2/3,
             seed=0). Listeners and speakers are each permuted (seeded) and
             the first `fraction` of each goes to the source; `part` keeps
             the ratings whose listener AND speaker are in it. Ratings that
             cross the groups are dropped (counted), so no listener,
             speaker or clip is in both parts. Empty = the whole test.

Every row must have a listener, a stimulus and a number (or an empty cell =
missing) in each item; errors name the file and the line.
"""

from __future__ import annotations

import csv
import os
import re

import numpy as np

from annojax.corpora import ratings as ratings_lib
from annojax.corpora import rows as rows_lib

DEFAULT_VARIANTS = ("_stimulus", "_d5")


def stimulus_id(name: str, variants=DEFAULT_VARIANTS) -> str:
  """ratings.clip_id of a stimulus name, its variant suffix unified."""
  clip = ratings_lib.clip_id(name)
  for suffix in variants[1:]:
    if clip.endswith(suffix):
      return clip[:-len(suffix)] + variants[0]
  return clip


def _groups(ids, fraction: float, seed: int) -> set:
  """The first `fraction` of the sorted ids after a seeded permutation."""
  ids = sorted(set(ids))
  order = np.random.default_rng(seed).permutation(len(ids))
  return {ids[i] for i in order[:int(round(fraction * len(ids)))]}


def read(path: str, columns: dict, scale=(0.0, 100.0),
         listener: str = "listener_pseudonym", stimulus: str = "sample_heard",
         speaker: str = r"^([^_]+)_", variants=DEFAULT_VARIANTS,
         partition: dict | None = None) -> ratings_lib.Ratings:
  if not columns:
    raise ValueError("listening_test: options.columns maps each dimension to "
                     "its item column, e.g. {'activation': 'aktiv'}")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"listening-test ratings file {path} does not "
                            "exist")
  columns = dict(columns)
  dims, items = tuple(columns), tuple(columns.values())
  speaker_col = speaker[len("column:"):] if speaker.startswith(
      "column:") else None
  pattern = None if speaker_col else re.compile(speaker)
  with open(path, newline="", encoding="utf-8-sig") as f:
    reader = csv.DictReader(f)
    rows_lib.require_columns(
        reader.fieldnames, [listener, stimulus, *items,
                            *([speaker_col] if speaker_col else [])], path)
    lines = list(enumerate(reader, start=2))
  part = dict(partition or {})
  keep_l = keep_s = None
  if part.get("part"):
    if part["part"] not in ("source", "target"):
      raise ValueError(f"listening_test: partition part={part['part']!r}; "
                       "'source' or 'target'")
    fraction, seed = float(part.get("fraction", 2 / 3)), int(
        part.get("seed", 0))
    keep_l = _groups((r[listener] for _, r in lines), fraction, seed)
    keep_s = _groups((_speaker(r, stimulus, speaker_col, pattern, path, n)
                      for n, r in lines), fraction, seed)
    want = part["part"] == "source"
  rows = rows_lib.Rows(path, dims, tuple(scale))
  for line_no, row in lines:
    where = f"{path}:{line_no}"
    who, name = (row[listener] or "").strip(), (row[stimulus] or "").strip()
    if not who or not name:
      raise ratings_lib.RatingsError(
          f"{where}: no {listener if not who else stimulus}")
    spk = _speaker(row, stimulus, speaker_col, pattern, path, line_no)
    if keep_l is not None and ((who in keep_l) != want
                               or (spk in keep_s) != want):
      rows.drop(f"listener or speaker in the other partition "
                f"(partition={part['part']}, seed {seed})")
      continue
    rows.add_raw(stimulus_id(name, variants), who, spk,
                 [row[c] for c in items], where)
  return rows.table()


def _speaker(row, stimulus, speaker_col, pattern, path, line_no) -> str:
  if speaker_col:
    return (row[speaker_col] or "").strip()
  name = ratings_lib.clip_id(row[stimulus] or "")
  m = pattern.search(name)
  if not m or not m.groups():
    raise ratings_lib.RatingsError(
        f"{path}:{line_no}: speaker regex {pattern.pattern!r} has no group "
        f"matching the stimulus name {name!r} (options.speaker)")
  return m.group(1)
