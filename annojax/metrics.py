"""Evaluation metrics (numpy): CCC, CCC_ind, CCC_con and run statistics.

Definitions (../shared/METHOD.md, "Evaluation protocol"): CCC is Lin's concordance
correlation with population moments (divisor n),
2 cov(p, y) / (var p + var y + (mean p - mean y)^2); CCC_ind is each
annotator's CCC on their own test ratings, averaged over annotators with
>= 2 test pairs, every annotator counting once (an unweighted mean, not
weighted by their number of ratings); CCC_con is the CCC of each clip's
mean prediction against the consensus (the mean of the clip's ratings).
Where CCC is undefined (both sides constant and equal: denominator 0) it is
0; a NaN among the inputs gives NaN, never a number.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def ccc_from_moments(cov, vp, vy, mp, my) -> np.ndarray:
  """Lin's CCC from population moments: 0 where the denominator is 0
  (undefined: both sides constant and equal), NaN where a moment is NaN."""
  den = vp + vy + (mp - my) ** 2
  undefined = np.where(np.isnan(den), np.nan, 0.0)
  return np.where(den > 0, 2 * cov / np.where(den > 0, den, 1), undefined)


def ccc(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
  """Concordance correlation over axis 0 -> [D] (population moments; 0
  where undefined, NaN if an input is NaN)."""
  pred = np.asarray(pred, np.float64)
  label = np.asarray(label, np.float64)
  mp, my = pred.mean(0), label.mean(0)
  vp, vy = pred.var(0), label.var(0)
  cov = ((pred - mp) * (label - my)).mean(0)
  return ccc_from_moments(cov, vp, vy, mp, my)


def masked_moments(x, mask):
  """Per row of padded sets x [N, K, D] with mask [N, K]: (count [N, 1],
  mean [N, D], variance [N, D]) over the unmasked entries (float64; rows
  with no entry give mean and variance 0)."""
  m = np.asarray(mask, np.float64)[..., None]
  x = np.asarray(x, np.float64)
  n = m.sum(1)
  nn = np.maximum(n, 1)
  mean = (m * x).sum(1) / nn
  return n, mean, (m * (x - mean[:, None]) ** 2).sum(1) / nn


def _group_moments(x, groups, n_groups):
  counts = np.bincount(groups, minlength=n_groups).astype(np.float64)
  sums = np.stack([np.bincount(groups, x[:, d], n_groups)
                   for d in range(x.shape[1])], 1)
  return counts, sums


def ccc_per_group(pred, label, groups) -> tuple[np.ndarray, np.ndarray]:
  """CCC of each group's pairs: returns ([G, D] CCC, [G] pair counts)."""
  groups = np.asarray(groups)
  uniq, g = np.unique(groups, return_inverse=True)
  n = len(uniq)
  pred = np.asarray(pred, np.float64)
  label = np.asarray(label, np.float64)
  cnt, sp = _group_moments(pred, g, n)
  _, sy = _group_moments(label, g, n)
  mp, my = sp / cnt[:, None], sy / cnt[:, None]
  dp, dy = pred - mp[g], label - my[g]
  _, vp = _group_moments(dp * dp, g, n)
  _, vy = _group_moments(dy * dy, g, n)
  _, cov = _group_moments(dp * dy, g, n)
  vp, vy, cov = vp / cnt[:, None], vy / cnt[:, None], cov / cnt[:, None]
  return ccc_from_moments(cov, vp, vy, mp, my), cnt


def ccc_ind(pred, label, annotator, min_count: int = 2) -> np.ndarray:
  """CCC_ind (METHOD.md): each annotator's CCC over their own pairs, then
  the UNWEIGHTED mean over the annotators with >= min_count pairs (each
  annotator counts once, however many ratings) -> [D]; NaN if none has
  min_count pairs."""
  per, cnt = ccc_per_group(pred, label, annotator)
  keep = cnt >= min_count
  if not keep.any():
    return np.full(per.shape[1], np.nan)
  return per[keep].mean(0)


def ccc_con(pred, label, clip) -> np.ndarray:
  """CCC_con (METHOD.md): CCC over clips of each clip's mean prediction vs
  its mean label (the consensus; the protocol passes every pair the
  consensus of ALL the clip's ratings), each clip counting once."""
  clip = np.asarray(clip)
  uniq, g = np.unique(clip, return_inverse=True)
  cnt, sp = _group_moments(np.asarray(pred, np.float64), g, len(uniq))
  _, sy = _group_moments(np.asarray(label, np.float64), g, len(uniq))
  return ccc(sp / cnt[:, None], sy / cnt[:, None])


MIN_PAIRS = 3  # fewer paired units: no test (its p is no evidence)


def paired_tests(values: np.ndarray, baseline: np.ndarray) -> dict:
  """Paired t-test (t = mean(d) / (s.d.(d, ddof 1) / sqrt(n)), n - 1
  degrees of freedom, two-sided) and Wilcoxon signed-rank (two-sided, zero
  differences dropped; scipy's exact distribution for small n) of the
  differences d = values - baseline, pair by pair. NaN p-values with fewer
  than MIN_PAIRS pairs or no nonzero difference."""
  values, baseline = np.asarray(values), np.asarray(baseline)
  out = {"t_p": float("nan"), "wilcoxon_p": float("nan")}
  diff = values - baseline
  if len(values) >= MIN_PAIRS and np.any(diff != 0):
    out["t_p"] = float(stats.ttest_rel(values, baseline).pvalue)
    try:
      out["wilcoxon_p"] = float(stats.wilcoxon(values, baseline).pvalue)
    except ValueError:
      pass
  return out


# The tables' marks: p < MARK_LEVEL after the Benjamini-Hochberg correction
# over every comparison of the same test in the same table (one family).
MARK_LEVEL = 0.05
CORRECTION = "Benjamini-Hochberg"


def adjust_p(p_values) -> np.ndarray:
  """Benjamini-Hochberg adjusted p-values of one family of comparisons:
  sorted p_(1) <= ... <= p_(m), adjusted p_(i) = min over j >= i of
  m p_(j) / j, capped at 1; p_adj < q marks the comparisons the step-up
  procedure rejects at false discovery rate q. NaN (no test) stays NaN and
  does not count in m."""
  p = np.asarray(p_values, np.float64)
  out = np.full(p.shape, np.nan)
  ok = np.isfinite(p)
  m = int(ok.sum())
  if m:
    q = p[ok]
    order = np.argsort(q, kind="stable")
    scaled = q[order] * m / np.arange(1, m + 1)
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1],
                                 1.0)
    out[ok] = adjusted
  return out


def _per_annotator_mean(x, annotator) -> np.ndarray:
  """Mean of x over each annotator's pairs -> [annotators present]."""
  ids, g = np.unique(annotator, return_inverse=True)
  cnt, sums = _group_moments(np.asarray(x, np.float64)[:, None], g, len(ids))
  return sums[:, 0] / cnt


def log_softmax(logits) -> np.ndarray:
  """Numerically stable log-softmax over the last axis (numpy, float64)."""
  logits = np.asarray(logits, np.float64)
  top = logits.max(-1, keepdims=True)
  return logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))


def agreement_ind(logits, label, annotator) -> np.ndarray:
  """Categorical: per annotator, the fraction of their clips where the top
  predicted class is the class they chose (label one-hot on [-1, 1])."""
  hit = (np.asarray(logits).argmax(-1) == np.asarray(label).argmax(-1))
  return _per_annotator_mean(hit.astype(np.float64), annotator)


def loglik_ind(logits, label, annotator) -> np.ndarray:
  """Categorical: per annotator, mean log-probability of their choices."""
  target = (np.asarray(label) + 1.0) / 2.0
  return _per_annotator_mean((target * log_softmax(logits)).sum(-1),
                             annotator)


def categorical_ind(logits, label, annotator) -> dict[str, float]:
  """The categorical counterparts of CCC_ind: agreement_ind and loglik_ind,
  each the UNWEIGHTED mean over annotators of their own value (an
  annotator counts once, however many clips they labelled)."""
  return {"agreement_ind": float(agreement_ind(logits, label,
                                               annotator).mean()),
          "loglik_ind": float(loglik_ind(logits, label, annotator).mean())}
