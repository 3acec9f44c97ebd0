"""openSMILE eGeMAPS functionals: extraction from audio, and CSV import.

Extraction uses the `opensmile` package (audEERING; its wheel ships the
native library and the configs and runs offline; free for research and
personal use, commercial use needs audEERING's licence). eGeMAPSv01a gives
the 88 functionals of Eyben et al. (2016) per clip, the features the NSC
corpus authors published; eGeMAPSv02 is the revised set (also 88).

  --mode=features --config.features.extractor=opensmile \
      --config.features.audio_dir=/data/wav

CSV import reads what openSMILE users already have, one row per clip:
  - SMILExtract -csvoutput:  name;frameTime;F0semitone...;...  (names
    quoted 'like_this'),
  - the Python package's DataFrame.to_csv():  file,start,end,F0semitone...,
  - a name column + functionals (NSC: sample_heard,F0semitone...).
The first column (or `name` / `file`) names the clip (ratings.clip_id of
it); `frameTime`, `start` and `end` are skipped; every other column must be
a number. Several files (e.g. one per speaker gender) must have the same
feature columns.

  --mode=features --config.features.opensmile_csv=a.csv,b.csv
"""

from __future__ import annotations

import csv
import os

import numpy as np

from annojax.corpora import generic_csv
from annojax.corpora import ratings as ratings_lib

FEATURE_SETS = ("eGeMAPSv01a", "eGeMAPSv02")
_SKIP = ("frametime", "start", "end")
_smile = {}


def smile(feature_set: str = "eGeMAPSv01a"):
  """The (per-process, cached) opensmile.Smile for `feature_set`."""
  if feature_set not in FEATURE_SETS:
    raise ValueError(f"openSMILE feature set {feature_set!r}; one of "
                     f"{FEATURE_SETS}")
  if feature_set not in _smile:
    import opensmile  # pylint: disable=g-import-not-at-top  (optional, slow)
    import warnings  # pylint: disable=g-import-not-at-top
    with warnings.catch_warnings():  # v01a is "deprecated" in favour of v02
      warnings.simplefilter("ignore")
      _smile[feature_set] = opensmile.Smile(
          feature_set=getattr(opensmile.FeatureSet, feature_set),
          feature_level=opensmile.FeatureLevel.Functionals)
  return _smile[feature_set]


def feature_names(feature_set: str = "eGeMAPSv01a") -> list[str]:
  return list(smile(feature_set).feature_names)


def functionals(y: np.ndarray, sr: int, feature_set: str = "eGeMAPSv01a"
                ) -> np.ndarray:
  """The functionals of one mono signal -> [88] float32."""
  x = np.asarray(smile(feature_set).process_signal(y, sr), np.float32)[0]
  if not np.isfinite(x).all():
    raise ValueError("openSMILE returned non-finite functionals")
  return x


def clip_functionals(path: str, feature_set: str = "eGeMAPSv01a",
                     sample_rate: int = 16000) -> np.ndarray:
  """The functionals of one audio file (features.load_audio) -> [88]."""
  from annojax import features  # pylint: disable=g-import-not-at-top
  return functionals(*features.load_audio(path, sample_rate), feature_set)


def read_csv(paths) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """openSMILE CSV file(s) -> (clip ids [C], functionals [C, F], names)."""
  if isinstance(paths, str):
    paths = generic_csv.embedding_files(paths)
  if not paths:
    raise ValueError("no openSMILE CSV file given")
  ids, rows, names, first = [], [], None, None
  for path in paths:
    if not os.path.isfile(path):
      raise FileNotFoundError(f"openSMILE CSV {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as f:
      head = f.readline()
      f.seek(0)
      delim = ";" if head.count(";") > head.count(",") else ","
      lines = csv.reader(f, delimiter=delim)
      header = [h.strip().strip("'\"") for h in next(lines, [])]
      lower = [h.lower() for h in header]
      name_col = next((lower.index(k) for k in ("name", "file")
                       if k in lower), 0)
      cols = [j for j, h in enumerate(lower)
              if j != name_col and h not in _SKIP]
      file_names = [header[j] for j in cols]
      if names is None:
        names, first = file_names, path
      elif file_names != names:
        diff = next((a, b) for a, b in zip(names + [None], file_names + [None])
                    if a != b)
        raise ratings_lib.RatingsError(
            f"{path}: feature columns differ from {first}'s ({len(file_names)}"
            f" vs {len(names)}; first difference {diff[1]!r} vs {diff[0]!r})")
      for line_no, row in enumerate(lines, start=2):
        if not row or not "".join(row).strip():
          continue
        if len(row) != len(header):
          raise ratings_lib.RatingsError(
              f"{path}:{line_no}: {len(row)} fields, the header has "
              f"{len(header)}")
        try:
          rows.append([float(row[j]) for j in cols])
        except ValueError:
          bad = next(j for j in cols if not _is_number(row[j]))
          raise ratings_lib.RatingsError(
              f"{path}:{line_no}: {header[bad]}={row[bad]!r} is not a "
              "number") from None
        ids.append(row[name_col].strip().strip("'\""))
  if not rows:
    raise ratings_lib.RatingsError(f"{', '.join(paths)}: no clip rows")
  ids, emb = generic_csv.checked(ids, rows, ", ".join(paths))
  return ids, emb, names


def _is_number(text: str) -> bool:
  try:
    float(text)
    return True
  except ValueError:
    return False
