"""MSP-Podcast (and WHiSER) per-worker labels -> Ratings.

`read(path)` takes the release root or its label folder (named `Labels`,
`labels` or `label` depending on the release) holding

  labels_consensus.csv (spelt labels_concensus.csv up to v1.9):
    FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set
  labels_detailed.csv, in one of the release styles (told apart by header):
    v1.7-1.12, WHiSER  FileName, EmoDetail
        EmoDetail = "WORKERnnnnnnnn; <primary>; <secondary,list>; A:x; V:x; D:x;"
        (CSV-quoted when the list holds commas; the primary may be free text
        such as "Other- concerned", so the attributes are read from the
        anchored tail "A:..; V:..; D:..;", never by splitting on ";")
    v2.0               FileName, WorkerID, EmoClass_Major, ..., EmoAct, EmoVal,
                       EmoDom
    v1.6               the same with the worker column named Workers

Attributes are on 1-7 scales. Clip = ratings.clip_id(FileName) (".wav"
stripped); annotator = the worker id; speaker = SpkrID. Clips of speaker
"Unknown" form one pseudo speaker, so they never straddle folds (WHiSER is
all "Unknown"); `unknown_speaker=<regex>` gives them the regex's first group
of the clip id instead (e.g. r"^([^.]+)", the text before the first dot,
groups WHiSER clips by source recording, a proxy for the speaker).

`splits` keeps the clips of those Split_Set values (default ("Train",): the
method pre-trains on the training split); "all" keeps every clip. The rest
are counted as dropped. A worker who rated a clip twice is averaged by
ratings.validate (counted as merged). A value that is empty or NaN is a
missing value (dropped only where a run uses that dimension); a row that does
not parse, a missing column, or a clip absent from the consensus file is an
error naming the file and line.
"""

from __future__ import annotations

import csv
import os
import re

from absl import logging
import numpy as np

from annojax.corpora import ratings as ratings_lib
from annojax.corpora import rows as rows_lib

DIMS = ("activation", "valence", "dominance")
SCALE = (1.0, 7.0)
_COLS = {"activation": "EmoAct", "valence": "EmoVal", "dominance": "EmoDom"}
_WORKER_COLS = ("WorkerID", "Workers")  # v2.0, v1.6
LABEL_DIRS = ("Labels", "labels", "label")
CONSENSUS_FILES = ("labels_consensus.csv", "labels_concensus.csv")
# Worker id first, the attributes anchored at the end; the primary and the
# secondary list in between may hold any character.
_PACKED = re.compile(
    r"^\s*([^;]+?)\s*;(.*)\bA:\s*([^;]*?)\s*;\s*V:\s*([^;]*?)\s*;"
    r"\s*D:\s*([^;]*?)\s*;?\s*$", re.S)


def find_labels(path: str) -> tuple[str, str]:
  """(labels_detailed.csv, consensus file) under a release root or label
  folder; a FileNotFoundError lists what was looked for."""
  tried = []
  for d in (path, *(os.path.join(path, n) for n in LABEL_DIRS)):
    detailed = os.path.join(d, "labels_detailed.csv")
    tried.append(detailed)
    if os.path.isfile(detailed):
      for name in CONSENSUS_FILES:
        if os.path.isfile(os.path.join(d, name)):
          return detailed, os.path.join(d, name)
      raise FileNotFoundError(f"{d}: labels_detailed.csv but no "
                              f"{' / '.join(CONSENSUS_FILES)} (speakers)")
  raise FileNotFoundError(f"{path}: no MSP-Podcast labels; looked for "
                          f"{tried}")


def read_consensus(path: str) -> dict[str, tuple[str, str]]:
  """{clip id: (speaker, Split_Set)}."""
  with open(path, newline="") as f:
    r = csv.DictReader(f)
    rows_lib.require_columns(r.fieldnames, ["FileName", "SpkrID"], path)
    has_split = "Split_Set" in r.fieldnames
    out = {}
    for row in r:
      split = (row["Split_Set"] or "").strip() if has_split else "NA"
      out[ratings_lib.clip_id(row["FileName"])] = (
          (row["SpkrID"] or "").strip() or "Unknown", split)
  return out


def parse_packed(text: str, where: str) -> tuple[str, list[str]]:
  """EmoDetail -> (worker id, [A, V, D] as written)."""
  m = _PACKED.match(text or "")
  if not m:
    raise ratings_lib.RatingsError(
        f"{where}: EmoDetail {text!r} is not 'WORKER..; <primary>; "
        "<secondary>; A:x; V:x; D:x;'")
  return m.group(1), [m.group(3), m.group(4), m.group(5)]


def _entries(path: str):
  """Yields (line, file name, worker, [A, V, D] text) in any style."""
  with open(path, newline="") as f:
    r = csv.DictReader(f)
    header = r.fieldnames or []
    if "EmoDetail" in header:
      rows_lib.require_columns(header, ["FileName", "EmoDetail"], path)
      for line, row in enumerate(r, start=2):
        worker, vals = parse_packed(row["EmoDetail"], f"{path}:{line}")
        yield line, row["FileName"], worker, vals
      return
    worker_col = next((c for c in _WORKER_COLS if c in header), None)
    if worker_col is None:
      raise ratings_lib.RatingsError(
          f"{path}: no worker column ({' / '.join(_WORKER_COLS)}, or the "
          f"packed EmoDetail of releases 1.7-1.12); header is {header}")
    rows_lib.require_columns(header, ["FileName", *_COLS.values()], path)
    for line, row in enumerate(r, start=2):
      yield (line, row["FileName"], row[worker_col],
             [row[_COLS[d]] for d in DIMS])


def read(path: str, splits=("Train",), unknown_speaker: str | None = None
         ) -> ratings_lib.Ratings:
  detailed, consensus_path = find_labels(path)
  consensus = read_consensus(consensus_path)
  splits = (splits,) if isinstance(splits, str) else tuple(splits)
  keep_all = "all" in splits
  present = sorted({s for _, s in consensus.values()})
  if not keep_all and not set(splits) & set(present):
    raise ratings_lib.RatingsError(
        f"{consensus_path}: no clip in Split_Set {list(splits)}; the file "
        f"has {present} (options.splits='all' keeps every clip)")
  pattern = re.compile(unknown_speaker) if unknown_speaker else None
  rows = rows_lib.Rows(detailed, DIMS, SCALE)
  for line, name, worker, vals in _entries(detailed):
    where = f"{detailed}:{line}"
    clip = ratings_lib.clip_id(name)
    if clip not in consensus:
      raise ratings_lib.RatingsError(
          f"{where}: clip {clip!r} is not in "
          f"{os.path.basename(consensus_path)} (no speaker)")
    speaker, split = consensus[clip]
    if not keep_all and split not in splits:
      rows.drop(f"clip in Split_Set {split} (options.splits keeps "
                f"{list(splits)})")
      continue
    if pattern is not None and speaker.lower() == "unknown":
      m = pattern.search(clip)
      if not m:
        raise ratings_lib.RatingsError(
            f"{where}: unknown_speaker pattern {unknown_speaker!r} does not "
            f"match clip {clip!r}")
      speaker = m.group(1)
    worker = (worker or "").strip()
    if not worker:
      raise ratings_lib.RatingsError(f"{where}: empty worker id")
    rows.add_raw(clip, worker, speaker, vals, where)
  table = rows.table()
  n = int((np.char.lower(table.speaker) == "unknown").sum())
  if n:
    logging.info("%s: %d ratings of clips of unknown speaker form one "
                 "pseudo speaker (options.unknown_speaker can split them)",
                 detailed, n)
  return table
