"""Embedding files: what a corpus's clips are, as numbers.

  .npz   arrays clip_ids [C] and embeddings [C, F] (the feature job's output)
  .npy   a pickled {clip id: vector} dict
  .csv   openSMILE functionals, one row per clip (several files separated by
         commas, e.g. one per speaker gender, with the same feature columns):
         - SMILExtract -csvoutput:  name;frameTime;F0semitone...;...  (names
           quoted 'like_this'),
         - the Python package's DataFrame.to_csv():  file,start,end,F0...,
         - a name column + functionals (NSC: sample_heard,F0semitone...).
         The first column (or `name` / `file`) names the clip (ratings.clip_id
         of it); `frameTime`, `start` and `end` are skipped; every other
         column must be a number.

Every source goes through `checked`: clip ids by the readers' rule, unique,
float32 embeddings, finite, one per id; an error names the file (and line).
"""

from __future__ import annotations

import csv
import os

import numpy as np

from annojax.corpora import ratings as ratings_lib

_SKIP = ("frametime", "start", "end")


def embedding_files(path: str) -> list[str]:
  """The files an embeddings setting names: one path, or several separated
  by commas (openSMILE CSVs, e.g. one per speaker gender)."""
  return [p for p in path.split(",") if p]


def read_embeddings(path: str) -> tuple[np.ndarray, np.ndarray]:
  """Returns (clip ids [C], embeddings [C, F]) from .npz, .npy or .csv."""
  if path.endswith(".csv"):  # openSMILE output (checked there)
    return read_opensmile_csv(path)[:2]
  if not os.path.exists(path):
    raise FileNotFoundError(f"embedding file {path} does not exist")
  if path.endswith(".npz"):
    with np.load(path) as z:
      for key in ("clip_ids", "embeddings"):
        if key not in z:
          raise ratings_lib.RatingsError(
              f"{path}: no array {key!r}; found {sorted(z.files)}")
      ids, emb = z["clip_ids"].astype(str), z["embeddings"]
  else:
    table = np.load(path, allow_pickle=True).item()
    ids = np.array(list(table), dtype=str)
    emb = np.stack([np.asarray(table[k]) for k in table])
  return checked(ids, emb, path)


def checked(ids, emb, where: str) -> tuple[np.ndarray, np.ndarray]:
  """(clip ids by the readers' rule, float32 [C, F] embeddings), or an error
  naming `where` for repeated clip ids, a shape mismatch or a non-finite
  value. Every embedding source (npz, npy, openSMILE CSV) goes through it."""
  ids = ratings_lib.clip_ids(ids)  # the readers' clip-id rule
  uniq, counts = np.unique(ids, return_counts=True)
  if (counts > 1).any():
    raise ratings_lib.RatingsError(
        f"{where}: several embeddings share the clip id(s) "
        f"{uniq[counts > 1][:5].tolist()} (clip id = file name without "
        "directories and media extensions)")
  emb = np.asarray(emb, np.float32)
  if emb.ndim != 2 or len(emb) != len(ids):
    raise ratings_lib.RatingsError(
        f"{where}: embeddings shape {emb.shape} does not match "
        f"{len(ids)} clip ids")
  bad = ~np.isfinite(emb).all(1)
  if bad.any():
    raise ratings_lib.RatingsError(
        f"{where}: clip {str(ids[bad][0])!r} has a non-finite embedding "
        f"({bad.sum()} clips)")
  return ids, emb


def read_opensmile_csv(paths) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """openSMILE CSV file(s) -> (clip ids [C], functionals [C, F], names)."""
  if isinstance(paths, str):
    paths = embedding_files(paths)
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
  ids, emb = checked(ids, rows, ", ".join(paths))
  return ids, emb, names


def _is_number(text: str) -> bool:
  try:
    float(text)
    return True
  except ValueError:
    return False
