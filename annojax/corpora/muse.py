"""MuSE (Multimodal Stressed Emotion) crowd-sourced ratings -> Ratings.

MuSE's per-worker perception annotations: one row per (utterance, worker)
with activation and valence on 1-9 scales. The reader takes that table as a
CSV with columns

  utterance (or clip), worker (or annotator), activation (or arousal), valence

(extra columns are ignored). Speaker = the subject id that prefixes the
utterance id (text before the first `speaker_sep`, default "_"), so folds
never share a subject. Rows with an empty or out-of-scale value are dropped
and counted; a missing column or a non-numeric value is an error naming
file and line.
"""

from __future__ import annotations

import csv

from annojax.corpora import ratings as ratings_lib
from annojax.corpora import rows as rows_lib

DIMS = ("activation", "valence")
SCALE = (1.0, 9.0)
_ALIASES = {"clip": ("utterance", "clip"), "annotator": ("worker",
                                                         "annotator"),
            "activation": ("activation", "arousal"), "valence": ("valence",)}


def read(path: str, speaker_sep: str = "_") -> ratings_lib.Ratings:
  rows = rows_lib.Rows(path, DIMS, SCALE)
  with open(path, newline="") as f:
    r = csv.DictReader(f)
    header = r.fieldnames or []
    col = {}
    for key, names in _ALIASES.items():
      hit = [n for n in names if n in header]
      if not hit:
        raise ratings_lib.RatingsError(
            f"{path}: missing column {' or '.join(names)}; header is "
            f"{header}")
      col[key] = hit[0]
    for line_no, row in enumerate(r, start=2):
      where = f"{path}:{line_no}"
      clip = (row[col["clip"]] or "").strip()
      if not clip:
        raise ratings_lib.RatingsError(f"{where}: empty utterance id")
      rows.add_raw(clip, row[col["annotator"]].strip(),
                   clip.split(speaker_sep)[0], [row[col[d]] for d in DIMS],
                   where)
  return rows.table()
