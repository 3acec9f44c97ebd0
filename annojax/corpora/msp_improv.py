"""MSP-IMPROV per-evaluator ratings -> Ratings (activation, valence, dominance).

As distributed: Evalution.txt (sic; Evaluation.txt is accepted too). One
block per clip: a header line with the clip's consensus, then one line per
evaluator, blank lines between blocks:

  UTD-IMPROV-S01A-F01-R-FM01.avi; N; A:3.000000; V:3.000000; D:3.000000; N:4.000000;
  mturk_120; Neutral; Neutral; A:3.0; V:3.0; D:2.0; N:4.0;

Attributes are on 1-5 scales; the ACTIVATION scale of the questionnaire is
reversed (1 = very active), so activation is flipped to 6 - a here and means
"higher = more active" like every other corpus. Clip ids are the audio stems
(MSP-IMPROV-S01A-F01-R-FM01; the UTD- prefix of the evaluation file is
mapped, then ratings.clip_id); speaker = the actor code (F01, M03...). An
empty or `NaN` value (clips whose dominance was not collected write `D:NaN`)
is a missing value: the rating is dropped only where a run uses that
dimension. An evaluator listed twice on a clip (the release copies some
lines) is averaged by ratings.validate and counted as merged. A line that is
neither a header, an evaluator line nor blank is an error naming file and
line.
"""

from __future__ import annotations

import os
import re

from annojax.corpora import ratings as ratings_lib
from annojax.corpora import rows as rows_lib

DIMS = ("activation", "valence", "dominance")
SCALE = (1.0, 5.0)
_CLIP = re.compile(r"^(?:UTD|MSP)-IMPROV-(S\d+[A-Z]-([FM]\d+)-[^.;\s]+)")
_ATTR = re.compile(r"\b([AVDN]):\s*([^;]*)")


def _unreverse_activation(vals):
  a, v, d = vals
  return [SCALE[0] + SCALE[1] - a, v, d]  # 1 <-> 5


def find(path: str) -> str:
  if os.path.isfile(path):
    return path
  for name in ("Evalution.txt", "Evaluation.txt"):
    if os.path.isfile(os.path.join(path, name)):
      return os.path.join(path, name)
  raise FileNotFoundError(f"{path}: no Evalution.txt / Evaluation.txt "
                          "(MSP-IMPROV evaluation file)")


def read(path: str) -> ratings_lib.Ratings:
  path = find(path)
  rows = rows_lib.Rows(path, DIMS, SCALE)
  clip = speaker = None
  with open(path, encoding="utf-8", errors="replace") as f:
    for line_no, line in enumerate(f, start=1):
      line = line.strip()
      where = f"{path}:{line_no}"
      if not line:
        continue
      m = _CLIP.match(line)
      if m:
        clip, speaker = "MSP-IMPROV-" + m.group(1), m.group(2)
        continue
      fields = [x.strip() for x in line.split(";")]
      attrs = dict(_ATTR.findall(line))
      if clip is None or len(fields) < 2 or not fields[0] or "A" not in attrs:
        raise ratings_lib.RatingsError(
            f"{where}: expected a clip header or an evaluator line "
            f"'<id>; <emotion>; ...; A:x; V:x; D:x;', got {line!r}")
      rows.add_raw(clip, fields[0], speaker, [attrs.get(k) for k in "AVD"],
                   where, transform=_unreverse_activation)
  return rows.table()
