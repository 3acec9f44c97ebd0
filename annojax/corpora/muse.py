"""MuSE (Multimodal Stressed Emotion) crowd ratings -> Ratings.

As distributed, the ratings sit in one wide CSV, one row per sentence:

  Survey Information (Questions, Data etc)/Emotion data from crowdsourcing
  (C is when annotators had access to all previous sentences).csv

  Sentence_name, Duration, Gender, Type, Ques_Type, Activation_Mean, ...,
  Activation_Annotation, Valence_Annotation, C_..., S_Activation, S_Valence

where `Activation_Annotation` / `Valence_Annotation` hold the crowd ratings
as ";"-joined integers on 1-9 ("3;4;2;4;1;2;2;1"). The public file has NO
worker ids: which worker gave which rating is only in the authors'
per-clip annotator list (not distributed with the corpus),

  FileName, soft_act_labels, soft_val_labels, annotators
  x.wav, "[3, 4, 2, 5]", "[6, 6, 5, 4]", "['A2..', 'A3..', 'A1..', 'self_report_01']"

in the same order as the public lists, followed by the speaker's own
self-report (id self_report_<subject>, = S_Activation / S_Valence).

`read(path, annotators=...)`: `path` is the public CSV (or the release root
holding it) and `annotators` the annotator list; the list gives the worker
ids and every clip's crowd ratings are checked against the public file (a
mismatch is an error naming the clip). `path` may also be the annotator list
alone. The public file alone cannot give per-annotator ratings and is an
error saying so. The `C_` columns (ratings given with the preceding
sentences in view) are a second condition without worker ids; they are not
read.

Self-reports are not perception ratings: excluded by default (counted),
kept under their own id with self_reports=True. Clip = ratings.clip_id
(".wav" stripped); speaker = the subject id, the text before the first
`speaker_sep` ("01_DR-100_0150_1_sentence_1" -> "01"). Values outside 1-9
are dropped and counted.
"""

from __future__ import annotations

import ast
import csv
import glob
import os

from annojax.corpora import ratings as ratings_lib
from annojax.corpora import rows as rows_lib

DIMS = ("activation", "valence")
SCALE = (1.0, 9.0)
SURVEY_DIRS = ("Survey Information (Questions, Data etc)", "SurveyInformation")
SURVEY_GLOB = "Emotion data from crowdsourcing*.csv"
_PUBLIC = ("Sentence_name", "Activation_Annotation", "Valence_Annotation")
_LIST = ("FileName", "soft_act_labels", "soft_val_labels", "annotators")
SELF = "self_report"


def find_public(path: str) -> str:
  if os.path.isfile(path):
    return path
  for d in ("", *SURVEY_DIRS):
    hits = sorted(glob.glob(os.path.join(glob.escape(path), d, SURVEY_GLOB)))
    if hits:
      return hits[0]
  raise FileNotFoundError(
      f"{path}: no MuSE crowdsourcing CSV ({' or '.join(SURVEY_DIRS)}/"
      f"{SURVEY_GLOB})")


def _header(path: str) -> list[str]:
  with open(path, newline="") as f:
    return next(csv.reader(f), [])


def read_public(path: str) -> dict[str, tuple[list[str], list[str]]]:
  """{clip id: (activation ratings, valence ratings)} as written."""
  out = {}
  with open(path, newline="") as f:
    r = csv.DictReader(f)
    rows_lib.require_columns(r.fieldnames, list(_PUBLIC), path)
    for line, row in enumerate(r, start=2):
      a, v = ([x.strip() for x in (row[c] or "").split(";") if x.strip()]
              for c in _PUBLIC[1:])
      if len(a) != len(v):
        raise ratings_lib.RatingsError(
            f"{path}:{line}: {len(a)} activation but {len(v)} valence "
            "ratings")
      out[ratings_lib.clip_id(row["Sentence_name"])] = (a, v)
  return out


def _pylist(text: str, where: str) -> list[str]:
  try:
    value = ast.literal_eval((text or "").strip())
  except (ValueError, SyntaxError):
    value = None
  if not isinstance(value, (list, tuple)):
    raise ratings_lib.RatingsError(f"{where}: {text!r} is not a list")
  return [str(x).strip() for x in value]


def read(path: str, annotators: str | None = None,
         self_reports: bool = False, speaker_sep: str = "_"
         ) -> ratings_lib.Ratings:
  public = None
  if os.path.isfile(path) and "annotators" in _header(path):
    annotators = path
  else:
    public_path = find_public(path)
    public = read_public(public_path)
    if not annotators:
      raise ratings_lib.RatingsError(
          f"{public_path}: MuSE's public file has no worker ids, so it "
          "cannot give per-annotator ratings; pass the per-clip annotator "
          "list (options.annotators=<muse_annotators.csv>)")
  rows = rows_lib.Rows(annotators, DIMS, SCALE)
  seen = set()
  with open(annotators, newline="") as f:
    r = csv.DictReader(f)
    rows_lib.require_columns(r.fieldnames, list(_LIST), annotators)
    for line, row in enumerate(r, start=2):
      where = f"{annotators}:{line}"
      clip = ratings_lib.clip_id(row["FileName"])
      act, val, ids = (_pylist(row[c], where) for c in _LIST[1:])
      if not len(act) == len(val) == len(ids):
        raise ratings_lib.RatingsError(
            f"{where}: {len(act)} activation, {len(val)} valence ratings "
            f"and {len(ids)} annotator ids")
      crowd = [i for i, a in enumerate(ids) if not a.startswith(SELF)]
      if public is not None:
        if clip not in public:
          rows.drop("clip not in the public crowdsourcing file", len(ids))
          continue
        want = public[clip]
        got = ([act[i] for i in crowd], [val[i] for i in crowd])
        if [list(map(float, x)) for x in got] != [
            list(map(float, x)) for x in want]:
          raise ratings_lib.RatingsError(
              f"{where}: the crowd ratings of {clip!r} ({got}) differ from "
              f"the public file's ({want}); the annotator list does not "
              "belong to this release")
      seen.add(clip)
      speaker = clip.split(speaker_sep)[0]
      for i, ann in enumerate(ids):
        if ann.startswith(SELF) and not self_reports:
          rows.drop("speaker's self-report (options.self_reports=True "
                    "keeps it)")
          continue
        rows.add_raw(clip, ann, speaker, [act[i], val[i]], where)
  if public is not None:
    missing = [c for c in public if c not in seen]
    if missing:
      rows.drop("clip has no annotator ids in the annotator list",
                sum(len(public[c][0]) for c in missing))
  return rows.table()
