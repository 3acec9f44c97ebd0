"""The reported metrics written again, independently of annojax.metrics.

Plain Python loops over dictionaries, straight from the definitions in
../shared/METHOD.md ("Evaluation protocol"), so a test that compares the
product with these does not check a metric through itself:

- CCC (Lin): 2 cov / (var_p + var_y + (mean_p - mean_y)^2), population
  moments (divisor n); 0 where that denominator is 0; NaN in, NaN out.
- CCC_ind: each annotator's CCC on their own pairs, the unweighted mean over
  annotators with >= min_count pairs.
- CCC_con: the CCC over clips of the clip's mean prediction vs its mean
  label.
- agreement_ind / loglik_ind: per annotator the share of clips whose top
  class is theirs / the mean log-probability of their class, unweighted
  mean over annotators.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np


def ccc1(p, y) -> float:
  """Lin's CCC of two sequences of numbers."""
  p, y = [float(v) for v in p], [float(v) for v in y]
  if any(math.isnan(v) for v in p + y):
    return float("nan")
  n = len(p)
  mp, my = sum(p) / n, sum(y) / n
  vp = sum((v - mp) ** 2 for v in p) / n
  vy = sum((v - my) ** 2 for v in y) / n
  cov = sum((a - mp) * (b - my) for a, b in zip(p, y)) / n
  den = vp + vy + (mp - my) ** 2
  return 2 * cov / den if den > 0 else 0.0


def ccc(pred, label) -> np.ndarray:
  pred, label = np.asarray(pred), np.asarray(label)
  return np.array([ccc1(pred[:, d], label[:, d])
                   for d in range(pred.shape[1])])


def _groups(keys) -> dict:
  out = defaultdict(list)
  for i, k in enumerate(np.asarray(keys).tolist()):
    out[k].append(i)
  return out


def ccc_ind(pred, label, annotator, min_count: int = 2) -> np.ndarray:
  pred, label = np.asarray(pred), np.asarray(label)
  per = [ccc(pred[idx], label[idx]) for idx in _groups(annotator).values()
         if len(idx) >= min_count]
  if not per:
    return np.full(pred.shape[1], np.nan)
  return np.array([sum(v[d] for v in per) / len(per)
                   for d in range(pred.shape[1])])


def ccc_con(pred, label, clip) -> np.ndarray:
  pred, label = np.asarray(pred), np.asarray(label)
  groups = list(_groups(clip).values())
  return ccc([pred[idx].mean(0) for idx in groups],
             [label[idx].mean(0) for idx in groups])


def categorical_ind(logits, label, annotator) -> dict[str, float]:
  logits, label = np.asarray(logits, np.float64), np.asarray(label)
  hits, logliks = [], []
  for idx in _groups(annotator).values():
    hit = ll = 0.0
    for i in idx:
      chose = int(np.argmax(label[i]))
      z = [math.exp(v) for v in logits[i]]
      hit += float(int(np.argmax(logits[i])) == chose)
      ll += math.log(z[chose] / sum(z))
    hits.append(hit / len(idx))
    logliks.append(ll / len(idx))
  return {"agreement_ind": sum(hits) / len(hits),
          "loglik_ind": sum(logliks) / len(logliks)}
