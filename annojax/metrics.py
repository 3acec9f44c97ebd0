"""Evaluation metrics (numpy): CCC, CCC_ind, CCC_con and run statistics."""

from __future__ import annotations

import numpy as np
from scipy import stats


def ccc(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
  """Concordance correlation over axis 0 -> [D] (0 where undefined)."""
  pred = np.asarray(pred, np.float64)
  label = np.asarray(label, np.float64)
  mp, my = pred.mean(0), label.mean(0)
  vp, vy = pred.var(0), label.var(0)
  cov = ((pred - mp) * (label - my)).mean(0)
  den = vp + vy + (mp - my) ** 2
  return np.where(den > 0, 2 * cov / np.where(den > 0, den, 1), 0.0)


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
  den = vp + vy + (mp - my) ** 2
  out = np.where(den > 0, 2 * cov / np.where(den > 0, den, 1), 0.0)
  return out, cnt


def ccc_ind(pred, label, annotator, min_count: int = 2) -> np.ndarray:
  """Mean over annotators (with >= min_count pairs) of their own CCC -> [D]."""
  per, cnt = ccc_per_group(pred, label, annotator)
  keep = cnt >= min_count
  if not keep.any():
    return np.full(per.shape[1], np.nan)
  return per[keep].mean(0)


def ccc_con(pred, label, clip) -> np.ndarray:
  """CCC of the per-clip mean prediction vs the consensus (mean rating)."""
  clip = np.asarray(clip)
  uniq, g = np.unique(clip, return_inverse=True)
  cnt, sp = _group_moments(np.asarray(pred, np.float64), g, len(uniq))
  _, sy = _group_moments(np.asarray(label, np.float64), g, len(uniq))
  return ccc(sp / cnt[:, None], sy / cnt[:, None])


def paired_tests(values: np.ndarray, baseline: np.ndarray) -> dict:
  """Paired t-test and Wilcoxon signed-rank of runs vs baseline runs."""
  values, baseline = np.asarray(values), np.asarray(baseline)
  out = {"t_p": float("nan"), "wilcoxon_p": float("nan")}
  diff = values - baseline
  if len(values) >= 2 and np.any(diff != 0):
    out["t_p"] = float(stats.ttest_rel(values, baseline).pvalue)
    try:
      out["wilcoxon_p"] = float(stats.wilcoxon(values, baseline).pvalue)
    except ValueError:
      pass
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
