"""Every reported metric against an independent computation.

Hand-worked cases (values you can check on paper, written out below) and
random cases compared with tests/reference_metrics.py (plain loops from the
definitions), with annotators of 1, 2 and many ratings, min_count at its
boundary, constant predictions or ratings, and NaN.
"""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from annojax import label_stats
from annojax import metrics
from annojax.corpora import ratings as ratings_lib
from annojax.protocol import summary
from tests import reference_metrics as ref


def test_ccc_hand_worked():
  # means 2, 3; var_p 2/3, var_y 2; cov 1: CCC = 2 / (2/3 + 2 + 1) = 6/11
  # (a sample-variance CCC would give 3 / 5).
  p = np.array([[1.0, 0.0], [2.0, 2.0], [3.0, 1.0]])
  y = np.array([[2.0, 1.0], [2.0, 1.0], [5.0, 1.0]])
  # Dimension 1: constant ratings -> cov 0 -> CCC 0.
  np.testing.assert_allclose(metrics.ccc(p, y), [6 / 11, 0.0], atol=1e-12)
  # p = (0, 2), y = (0, 1): var_p 1, var_y 1/4, cov 1/2, mean gap 1/2:
  # CCC = 1 / (1 + 1/4 + 1/4) = 2/3 (Pearson would be 1).
  np.testing.assert_allclose(
      metrics.ccc([[0.0], [2.0]], [[0.0], [1.0]]), [2 / 3])
  # Both sides constant: equal (undefined) or not (den = gap^2): 0.
  np.testing.assert_array_equal(metrics.ccc([[2.0], [2.0]], [[2.0], [2.0]]),
                                [0.0])
  np.testing.assert_array_equal(metrics.ccc([[1.0], [1.0]], [[0.0], [0.0]]),
                                [0.0])
  # A NaN gives NaN in its dimension only, never a number.
  got = metrics.ccc([[1.0, 0.0], [np.nan, 2.0], [3.0, 1.0]],
                    [[2.0, 1.0], [2.0, 1.0], [5.0, 1.0]])
  assert np.isnan(got[0]) and got[1] == 0.0


def _three_annotators():
  """A: 4 pairs, CCC (1, -1); B: 2 pairs, CCC (2/3, 0) (constant
  predictions in dimension 1); C: 1 pair, CCC (0, 0)."""
  rows = [("A", (0, 0), (0, 3)), ("A", (1, 1), (1, 2)), ("A", (2, 2), (2, 1)),
          ("A", (3, 3), (3, 0)), ("B", (0, 1), (0, 0)), ("B", (2, 1), (1, 2)),
          ("C", (1, 1), (0, 1))]
  ann = np.array([r[0] for r in rows])
  pred = np.array([r[1] for r in rows], np.float64)
  label = np.array([r[2] for r in rows], np.float64)
  return pred, label, ann


def test_ccc_ind_is_the_unweighted_mean_over_annotators_with_min_count():
  pred, label, ann = _three_annotators()
  per, cnt = metrics.ccc_per_group(pred, label, ann)
  np.testing.assert_allclose(per, [[1, -1], [2 / 3, 0], [0, 0]], atol=1e-12)
  np.testing.assert_array_equal(cnt, [4, 2, 1])
  # Default min_count 2: A and B, each once: ((1 + 2/3) / 2, (-1 + 0) / 2).
  # (Weighted by pairs it would be (8/9, -2/3); with C, (5/9, -1/3).)
  np.testing.assert_allclose(metrics.ccc_ind(pred, label, ann),
                             [5 / 6, -1 / 2])
  np.testing.assert_allclose(metrics.ccc_ind(pred, label, ann, 1),
                             [5 / 9, -1 / 3])
  np.testing.assert_allclose(metrics.ccc_ind(pred, label, ann, 3), [1, -1])
  # min_count at A's count (4) keeps A; one above leaves nobody: NaN.
  np.testing.assert_allclose(metrics.ccc_ind(pred, label, ann, 4), [1, -1])
  assert np.isnan(metrics.ccc_ind(pred, label, ann, 5)).all()
  # A NaN prediction of B's in dimension 0: NaN there, dimension 1 intact.
  pred[4, 0] = np.nan
  got = metrics.ccc_ind(pred, label, ann)
  assert np.isnan(got[0])
  np.testing.assert_allclose(got[1], -1 / 2)


def test_ccc_con_is_over_clips_hand_worked():
  # Clip means: pred (1, 3, 1), label (1, 2, 1) from 2, 1 and 3 pairs.
  # var_p 8/9, var_y 2/9, cov 4/9, gap 1/3: CCC = (8/9) / (11/9) = 8/11.
  clip = np.array([0, 0, 1, 2, 2, 2])
  pred = np.array([[0.0], [2.0], [3.0], [1.0], [1.0], [1.0]])
  label = np.array([[1.0], [1.0], [2.0], [0.0], [0.0], [3.0]])
  np.testing.assert_allclose(metrics.ccc_con(pred, label, clip), [8 / 11])


def _onehot(classes, n=3):
  return 2.0 * np.eye(n)[classes] - 1.0  # one-hot on [-1, 1]


def test_categorical_agreement_and_loglik_hand_worked():
  # Probabilities (1/2, 1/4, 1/4) rotated: the top class is the 2.
  logits = np.log([[2, 1, 1], [1, 2, 1], [1, 1, 2], [2, 1, 1]])
  label = _onehot([0, 1, 0, 0])
  ann = np.array(["A", "A", "A", "B"])
  np.testing.assert_allclose(metrics.agreement_ind(logits, label, ann),
                             [2 / 3, 1])
  got = metrics.categorical_ind(logits, label, ann)
  # Unweighted over annotators (pooled over clips: 3/4 and -5/4 ln 2).
  np.testing.assert_allclose(got["agreement_ind"], 5 / 6)
  # A: (ln 1/2 + ln 1/2 + ln 1/4) / 3 = -4/3 ln 2; B: -ln 2.
  np.testing.assert_allclose(got["loglik_ind"], -7 / 6 * math.log(2))


def _exact_wilcoxon_p(diff) -> float:
  """Two-sided exact signed-rank p (no ties, no zeros) by enumerating every
  sign assignment."""
  ranks = stats.rankdata(np.abs(diff))
  w = ranks[np.asarray(diff) > 0].sum()
  null = [sum(r for r, s in zip(ranks, signs) if s)
          for signs in itertools.product((0, 1), repeat=len(ranks))]
  mean = ranks.sum() / 2
  return min(1.0, np.mean([abs(v - mean) >= abs(w - mean) - 1e-9
                           for v in null]))


def test_paired_tests_hand_worked():
  # d = (1, 2, 3): t = 2 / (1 / sqrt 3) = sqrt 12 on 2 df, whose two-sided
  # p is 1 - t / sqrt(t^2 + 2) = 1 - sqrt(6/7); Wilcoxon: all 3 signs
  # positive, 2 of the 8 sign assignments as extreme: 1/4.
  got = metrics.paired_tests([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
  np.testing.assert_allclose(got["t_p"], 1 - math.sqrt(6 / 7))
  np.testing.assert_allclose(got["wilcoxon_p"], 0.25)
  # d = (1, -2, 3, 4): t = 1.5 / (sqrt 7 / 2) on 3 df; W- = 2: subsets of
  # ranks summing to <= 2 or >= 8 are 6 of 16.
  got = metrics.paired_tests([1.0, -2.0, 3.0, 4.0], [0.0] * 4)
  np.testing.assert_allclose(got["t_p"],
                             2 * stats.t.sf(3 / math.sqrt(7), 3))
  np.testing.assert_allclose(got["wilcoxon_p"], 6 / 16)
  # Fewer than 2 pairs, or no difference: no test.
  for v, b in (([1.0], [0.0]), ([1.0, 2.0], [1.0, 2.0])):
    assert np.isnan(list(metrics.paired_tests(v, b).values())).all()


def _random_pairs(rng, dims=2):
  """Annotators with 1, 2, 3 and many pairs; one predicted constantly, one
  rating constantly, one with identical constant predictions and
  ratings."""
  counts = [1, 1, 2, 2, 3, 5, 8, 13, 30] + list(rng.integers(1, 20, 4))
  ann = np.repeat(np.arange(len(counts)) * 7 + 3, counts)  # sparse ids
  rng.shuffle(ann)
  n = len(ann)
  label = rng.normal(size=(n, dims))
  pred = 0.6 * label + rng.normal(0.2, 0.8, size=(n, dims))
  ids = np.unique(ann)
  pred[ann == ids[5]] = 0.4
  label[ann == ids[6]] = -0.3
  label[ann == ids[4]] = pred[ann == ids[4]] = 0.1
  clip = rng.integers(0, n // 3, n)
  return pred, label, ann, clip


@pytest.mark.parametrize("seed", range(12))
def test_dimensional_metrics_match_the_reference(seed):
  rng = np.random.default_rng(seed)
  pred, label, ann, clip = _random_pairs(rng)
  np.testing.assert_allclose(metrics.ccc(pred, label), ref.ccc(pred, label),
                             atol=1e-12)
  for min_count in (1, 2, 3, 5, 13, 14, 31):
    np.testing.assert_allclose(
        metrics.ccc_ind(pred, label, ann, min_count),
        ref.ccc_ind(pred, label, ann, min_count), atol=1e-12,
        err_msg=f"min_count {min_count}")
  np.testing.assert_allclose(metrics.ccc_con(pred, label, clip),
                             ref.ccc_con(pred, label, clip), atol=1e-12)
  pred[rng.integers(len(pred)), 1] = np.nan
  np.testing.assert_allclose(metrics.ccc_ind(pred, label, ann),
                             ref.ccc_ind(pred, label, ann), atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_categorical_metrics_match_the_reference(seed):
  rng = np.random.default_rng(seed)
  counts = [1, 2, 3, 9, 25]
  ann = rng.permutation(np.repeat(np.arange(5), counts))
  logits = rng.normal(0, 2, size=(len(ann), 4))
  label = 2.0 * np.eye(4)[rng.integers(0, 4, len(ann))] - 1.0
  got = metrics.categorical_ind(logits, label, ann)
  want = ref.categorical_ind(logits, label, ann)
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-12, err_msg=k)


def test_summary_tests_match_an_independent_computation():
  """summarize's per-run and per-seed paired tests, recomputed: the t
  statistic from its formula, Wilcoxon by exact enumeration, the seed
  level over each seed's mean of its folds."""
  rng = np.random.default_rng(3)
  keys = [(s, f) for s in range(3) for f in range(3)]
  base = {k: rng.uniform(0, 0.5) for k in keys}
  row = {k: base[k] + rng.normal(0.03, 0.05) for k in keys}
  cells = {"aggregate": {k: {"ccc_ind": [base[k]]} for k in keys},
           "row": {k: {"ccc_ind": [row[k]]} for k in keys}}
  got = summary.summarize(cells, ("a",), ("ccc_ind",))["rows"]["row"][
      "ccc_ind"]["a"]

  def t_p(d):
    d = np.asarray(d)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    return 2 * stats.t.sf(abs(t), len(d) - 1)
  diff = [row[k] - base[k] for k in keys]
  np.testing.assert_allclose(got["mean"], np.mean([row[k] for k in keys]))
  np.testing.assert_allclose(got["std"], np.std([row[k] for k in keys]))
  np.testing.assert_allclose(got["t_p"], t_p(diff))
  np.testing.assert_allclose(got["wilcoxon_p"], _exact_wilcoxon_p(diff))
  by_seed = [np.mean([row[k] - base[k] for k in keys if k[0] == s])
             for s in range(3)]
  np.testing.assert_allclose(got["seed_t_p"], t_p(by_seed))


def _random_ratings(rng):
  """12 annotators on 40 clips on 1-5: some rate nearly everything, some a
  handful; a few clips have a single rater (no leave-one-out consensus)."""
  rate = np.r_[np.full(4, 0.9), np.full(4, 0.4), np.full(4, 0.12)]
  truth = rng.normal(size=40)
  rows = []
  for a in range(12):
    bias, scale = rng.normal(0, 0.5), rng.uniform(0.5, 1.5)
    for c in np.flatnonzero(rng.random(40) < rate[a]):
      v = np.clip(np.round(3 + scale * truth[c] + bias
                           + rng.normal(0, 0.7)), 1, 5)
      rows.append((f"c{c}", f"r{a}", v))
  clip, ann, raw = zip(*rows)
  return ratings_lib.make_ratings(
      clip, ann, ["s"] * len(clip),
      ratings_lib.rescale(np.array(raw)[:, None], 1, 5), ("activation",),
      scale=(1, 5))


def _reference_agreement(t, min_ratings):
  v = t.values[:, 0].astype(np.float64)
  by_clip = {}
  for i, c in enumerate(t.clip):
    by_clip.setdefault(c, []).append(i)
  loo = {}
  for idx in by_clip.values():
    for i in idx:
      others = [v[j] for j in idx if j != i]
      if others:
        loo[i] = sum(others) / len(others)
  cccs, pearsons = [], []
  for a in np.unique(t.annotator):
    idx = [i for i in np.flatnonzero(t.annotator == a) if i in loo]
    if len(idx) < min_ratings:
      continue
    y, c = v[idx], np.array([loo[i] for i in idx])
    cccs.append(ref.ccc1(y, c))
    pearsons.append(stats.pearsonr(y, c)[0] if y.std() > 0 and c.std() > 0
                    else 0.0)
  return cccs, pearsons


def _reference_best_peer(t, min_common):
  v = t.values[:, 0].astype(np.float64)
  rated = {}
  for i, (a, c) in enumerate(zip(t.annotator, t.clip)):
    rated.setdefault(a, {})[c] = v[i]
  best, peers = [], []
  for a, mine in rated.items():
    scores = []
    for b, theirs in rated.items():
      common = sorted(set(mine) & set(theirs))
      if b != a and len(common) >= min_common:
        scores.append(ref.ccc1([mine[c] for c in common],
                               [theirs[c] for c in common]))
    peers.append(len(scores))
    if scores:
      best.append(max(scores))
  return best, peers


@pytest.mark.parametrize("seed", range(3))
def test_label_statistics_match_the_reference(seed):
  t = _random_ratings(np.random.default_rng(seed))
  for min_ratings in (1, 5, 15, 30):
    cccs, pearsons = _reference_agreement(t, min_ratings)
    got = label_stats.agreement(t, min_ratings)["activation"]
    assert got["annotators"] == len(cccs), min_ratings
    if cccs:
      np.testing.assert_allclose(got["ccc_mean"], np.mean(cccs), atol=1e-6)
      np.testing.assert_allclose(got["ccc_median"], np.median(cccs),
                                 atol=1e-6)
      np.testing.assert_allclose(got["pearson_mean"], np.mean(pearsons),
                                 atol=1e-6)
  for min_common in (3, 10, 20):
    best, peers = _reference_best_peer(t, min_common)
    got = label_stats.best_peer(t, min_common)["activation"]
    assert got["annotators"] == len(best)
    assert got["peers_median"] == np.median(peers)
    if best:
      np.testing.assert_allclose(got["best_ccc_mean"], np.mean(best),
                                 atol=1e-6)
      np.testing.assert_allclose(got["best_ccc_median"], np.median(best),
                                 atol=1e-6)


def test_benjamini_hochberg_by_hand_and_against_scipy():
  # m = 3 tests (NaN: no test, not counted): sorted .01, .03, .04 scaled by
  # m / rank: .03, .045, .04; step-up minimum from the largest: .03, .04,
  # .04.
  got = metrics.adjust_p([0.04, np.nan, 0.01, 0.03])
  np.testing.assert_allclose(got, [0.04, np.nan, 0.03, 0.04])
  assert np.isnan(metrics.adjust_p([np.nan])).all()
  np.testing.assert_allclose(metrics.adjust_p([0.9, 0.95]), [0.95, 0.95])
  rng = np.random.default_rng(0)
  for _ in range(20):
    p = rng.uniform(size=rng.integers(1, 60)) ** 4
    np.testing.assert_allclose(metrics.adjust_p(p),
                               stats.false_discovery_control(p))
