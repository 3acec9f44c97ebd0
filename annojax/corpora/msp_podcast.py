"""MSP-Podcast detailed (per-annotator) labels -> Ratings.

As distributed (Labels/ of releases 1.x): labels_detailed.csv, one row per
(file, worker), and labels_consensus.csv, one row per file with its speaker:

  labels_detailed.csv:  FileName, WorkerID, EmoClass, EmoAct, EmoVal, EmoDom, ...
  labels_consensus.csv: FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID,
                        Gender, Split_Set

Attributes are on 1-7 scales. Clip = FileName without extension; annotator =
WorkerID; speaker = SpkrID (clips of speaker "Unknown" are all one pseudo
speaker, so they never straddle folds; counted in the log). Rows with an
empty or out-of-scale attribute are dropped and counted; a file without the
needed columns, or a clip absent from labels_consensus.csv, is an error
naming the file and line.
"""

from __future__ import annotations

import csv
import os

from absl import logging

from annojax.corpora import ratings as ratings_lib
from annojax.corpora import rows as rows_lib

DIMS = ("activation", "valence", "dominance")
SCALE = (1.0, 7.0)
_COLS = {"activation": "EmoAct", "valence": "EmoVal", "dominance": "EmoDom"}


def _stem(name: str) -> str:
  return os.path.splitext(name.strip())[0]


def read_speakers(path: str) -> dict[str, str]:
  with open(path, newline="") as f:
    r = csv.DictReader(f)
    rows_lib.require_columns(r.fieldnames, ["FileName", "SpkrID"], path)
    spk = {_stem(row["FileName"]): row["SpkrID"].strip() for row in r}
  unknown = sum(s.lower() == "unknown" for s in spk.values())
  if unknown:
    logging.info("%s: %d clips of unknown speaker form one pseudo speaker",
                 path, unknown)
  return spk


def read(labels_dir: str) -> ratings_lib.Ratings:
  detailed = os.path.join(labels_dir, "labels_detailed.csv")
  speakers = read_speakers(os.path.join(labels_dir, "labels_consensus.csv"))
  rows = rows_lib.Rows(detailed, DIMS, SCALE)
  with open(detailed, newline="") as f:
    r = csv.DictReader(f)
    rows_lib.require_columns(r.fieldnames,
                             ["FileName", "WorkerID", *_COLS.values()],
                             detailed)
    for line_no, row in enumerate(r, start=2):
      where = f"{detailed}:{line_no}"
      clip = _stem(row["FileName"])
      if clip not in speakers:
        raise ratings_lib.RatingsError(
            f"{where}: clip {clip!r} is not in labels_consensus.csv (no "
            "speaker)")
      rows.add_raw(clip, row["WorkerID"].strip(), speakers[clip],
                   [row[_COLS[d]] for d in DIMS], where)
  return rows.table()
