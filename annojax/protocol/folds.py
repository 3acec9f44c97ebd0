"""Which pairs each run of the protocol tests and enrolls on.

A seed is an independent replicate: seed s evaluates the models pre-trained
with seed s on its own random speaker-to-fold partition of the target
corpus (fixed folds instead where config.eval.fold_by names them, e.g. one
per IEMOCAP session). For each (seed, fold): test speakers = the fold, a
quarter of the other speakers is validation, the rest are training
speakers. A target annotator's enrollment clips are drawn (seeded) from the
clips of training speakers they rated (their pool); they are tested on the
clips of test speakers they rated (annotators with < eval.min_test test
ratings leave the run, counted).
"""

from __future__ import annotations

import re

import numpy as np


def num_replicates(config) -> int:
  """Independent replicates = evaluation seeds: each pre-trains its own."""
  return int(config.eval.seeds)


def speaker_folds(speakers: np.ndarray, n_folds: int, seed: int = 0,
                  fold_by: str = "") -> list[np.ndarray]:
  r"""Speaker-independent folds.

  Default: the speakers are randomly partitioned into n_folds folds, a new
  partition for every seed. fold_by: a regex whose first group names a fixed
  fold of each speaker (e.g. r"^(Ses\d+)" for IEMOCAP's sessions); those
  folds are the same for every seed (n_folds is then the number of groups).
  """
  uniq = np.unique(speakers)
  if fold_by:
    pattern = re.compile(fold_by)
    keys = []
    for s in uniq:
      m = pattern.search(str(s))
      if not m:
        raise ValueError(f"config.eval.fold_by={fold_by!r} does not match "
                         f"speaker {str(s)!r}")
      keys.append(m.group(1) if m.groups() else m.group(0))
    keys = np.asarray(keys)
    return [uniq[keys == k] for k in np.unique(keys)]
  if len(uniq) < n_folds:
    raise ValueError(f"{len(uniq)} speakers cannot make {n_folds} folds")
  perm = np.random.default_rng([seed, 0xF01D]).permutation(uniq)
  return [np.sort(f) for f in np.array_split(perm, n_folds)]


def adaptive_sizes(ev) -> tuple[int, ...]:
  """config.eval.adaptive_sizes, checked: each a positive size that the
  random rows have too (the comparison the adaptive rows exist for)."""
  sizes = tuple(int(k) for k in ev.adaptive_sizes)
  bad = [k for k in sizes if k <= 0 or k not in ev.enroll_sizes]
  if bad:
    raise ValueError(
        f"config.eval.adaptive_sizes {sizes}: {bad} must be positive and in "
        f"config.eval.enroll_sizes {tuple(ev.enroll_sizes)}, so that each "
        "adaptive row has its random row")
  return sizes


def size_name(k: int) -> str:
  """A row's enrollment size in its name: k, or all (k = 0)."""
  return "all" if k == 0 else str(k)


def sample_enrollment(rng, pool_rows_by_ann, k):
  """Per annotator, k random pool pairs (all if k == 0 or fewer exist)."""
  return [rows if (k == 0 or len(rows) <= k) else
          rng.choice(rows, size=k, replace=False) for rows in
          pool_rows_by_ann]


def rows_by_annotator(rows, annotator, ids):
  """`rows` grouped by their annotator: one array per id of the sorted
  `ids` (every row's annotator among them), rows in their given order."""
  order = np.argsort(annotator[rows], kind="stable")
  starts = np.searchsorted(annotator[rows][order], ids)
  return np.split(rows[order], starts[1:])


class Run:
  """One (seed, fold): which pairs are test / enrollment pool."""

  def __init__(self, table, speaker_of_clip, test_speakers, seed, fold,
               min_test):
    rng = np.random.default_rng([seed, fold])
    others = np.setdiff1d(np.unique(speaker_of_clip), test_speakers)
    n_val = len(others) // 4
    val = rng.choice(others, size=n_val, replace=False) if n_val else []
    train_speakers = np.setdiff1d(others, val)
    pair_spk = speaker_of_clip[table.pair_clip]
    is_test = np.isin(pair_spk, test_speakers)
    is_pool = np.isin(pair_spk, train_speakers)
    ann = table.pair_annotator
    n_test = np.bincount(ann[is_test], minlength=ann.max() + 1)
    n_pool = np.bincount(ann[is_pool], minlength=ann.max() + 1)
    self.annotators = np.flatnonzero((n_test >= min_test) & (n_pool >= 1))
    self.excluded = int(((n_test > 0) & ~np.isin(
        np.arange(len(n_test)), self.annotators)).sum())
    keep = np.isin(ann, self.annotators)
    self.test_rows = np.flatnonzero(is_test & keep)
    pool = np.flatnonzero(is_pool & keep)
    # Position of each annotator in self.annotators.
    self.pos = {a: i for i, a in enumerate(self.annotators)}
    self.pool_by_ann = rows_by_annotator(pool, ann, self.annotators)
    self.rng = rng


def fold_runs(table, seed: int, ev) -> list[Run]:
  """The protocol's (seed, fold) runs of one seed, fold by fold."""
  return [Run(table, table.speakers, speakers, seed, f, ev.min_test)
          for f, speakers in enumerate(speaker_folds(
              table.speakers, ev.folds, seed, ev.fold_by))]
