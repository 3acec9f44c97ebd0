"""IEMOCAP EmoEvaluation files -> Ratings (valence, activation, dominance).

As distributed: <root>/Session{1..5}/dialog/EmoEvaluation/*.txt. A turn
block starts with

  [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]

followed by categorical lines (C-E2: ...) and one dimensional line per
evaluator,

  A-E3:<TAB>val 3; act 2; dom  2;<TAB>()

on 1-5 scales. Annotator id = the evaluator code after "A-" (E1..E6),
prefixed with the session when per_session_ids (evaluator codes are not
documented as global). The codes A-F1, A-M3, ... are the ACTORS'
self-evaluations of their own turns, not perception ratings: excluded by
default (counted), kept with self_reports=True under the distinct id
"self-F1" etc. Speaker = session + the gender letter of the turn name's last
field (Ses01F_impro01_M000 -> Ses01_M), so folds are speaker independent.
Clip = turn name (the wav stem). Only the text before the TAB that starts
the comment is scanned for values; a blank or absent value is a missing
value (the rating is dropped only where a run uses that dimension); a
malformed turn line is an error naming file and line. The Categorical/,
Attribute/ and Self-evaluation/ sub-folders repeat these ratings in another
syntax and are not read.
"""

from __future__ import annotations

import glob
import os
import re

from annojax.corpora import ratings as ratings_lib
from annojax.corpora import rows as rows_lib

DIMS = ("activation", "valence", "dominance")
SCALE = (1.0, 5.0)
_TURN = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(\S+)\s+\S+\s+\[.*\]\s*$")
_ATTR = re.compile(r"^A-([A-Za-z0-9]+):\s*(.*)$")
_VALUE = re.compile(r"\b(val|act|dom)\s*([^;]*);")
SELF_PREFIXES = ("F", "M")  # A-F1, A-M3: the actors rating themselves


def files(root: str) -> list[str]:
  out = sorted(glob.glob(os.path.join(root, "Session*", "dialog",
                                      "EmoEvaluation", "*.txt")))
  if not out:
    raise FileNotFoundError(
        f"{root}: no Session*/dialog/EmoEvaluation/*.txt (IEMOCAP root?)")
  return out


def speaker_of(turn: str) -> str:
  # Ses01F_impro01_F000 -> Ses01_F ; Ses03M_script01_1_M012 -> Ses03_M
  return f"{turn[:5]}_{turn.rsplit('_', 1)[-1][0]}"


def read(root: str, per_session_ids: bool = False,
         self_reports: bool = False) -> ratings_lib.Ratings:
  rows = rows_lib.Rows(root, DIMS, SCALE)
  for path in files(root):
    turn = None
    with open(path, encoding="utf-8", errors="replace") as f:
      for line_no, line in enumerate(f, start=1):
        line = line.rstrip("\n")
        where = f"{path}:{line_no}"
        if line.startswith("["):
          m = _TURN.match(line)
          if not m:
            raise ratings_lib.RatingsError(f"{where}: malformed turn line "
                                           f"{line!r}")
          turn = m.group(1)
          continue
        m = _ATTR.match(line)
        if not m:
          continue
        if turn is None:
          raise ratings_lib.RatingsError(f"{where}: evaluator line before "
                                         "any turn line")
        # The free-text comment after the TAB may hold "; " and words.
        found = dict(_VALUE.findall(m.group(2).split("\t", 1)[0]))
        if not found:
          raise ratings_lib.RatingsError(
              f"{where}: expected 'val x; act y; dom z;', got {line!r}")
        ann = m.group(1)
        if ann.startswith(SELF_PREFIXES):
          if not self_reports:
            rows.drop("actor's self-evaluation (options.self_reports=True "
                      "keeps it)")
            continue
          ann = f"self-{ann}"
        if per_session_ids:
          ann = f"{turn[:5]}_{ann}"
        rows.add_raw(turn, ann, speaker_of(turn),
                     [found.get(k) for k in ("act", "val", "dom")], where)
  return rows.table()
