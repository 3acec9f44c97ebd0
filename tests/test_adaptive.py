"""Adaptive enrollment (annojax/adaptive.py): which clip to rate next."""

import numpy as np

from annojax import adaptive
from annojax import enroll
from annojax import posterior


def _weighted_cov(pred, w):
  """Posterior covariance of the heads' predictions between clips, summed
  over dimensions (numpy, float64): [C, C]."""
  dev = pred - np.einsum("a,cad->cd", w, pred)[:, None]
  return np.einsum("a,cad,ead->ce", w, dev, dev)


def test_first_pick_is_where_the_weighted_heads_disagree_most():
  rng = np.random.default_rng(0)
  pred = np.zeros((6, 4, 2), np.float32)
  pred[2] = rng.normal(size=(4, 2))        # every head differs on clip 2
  pred[4, :2] = [[0.0, 0.0], [0.9, -0.9]]  # only heads 0 and 1 differ on 4
  uniform = np.full((2, 4), 0.25)
  two = np.array([[0.5, 0.5, 0.0, 0.0]] * 2)
  clips, var = adaptive.propose(pred, np.concatenate([uniform[:1], two[:1]]),
                                np.ones((2, 6), bool), 1)
  assert clips[:, 0].tolist() == [2, 4]
  want = [_weighted_cov(pred.astype(np.float64), w)[c, c]
          for w, c in ((uniform[0], 2), (two[0], 4))]
  np.testing.assert_allclose(var[:, 0], want, rtol=1e-5)
  # A clip the annotator may not be asked is never proposed; once the
  # candidates run out, -1.
  avail = np.zeros((2, 6), bool)
  avail[:, [1, 4]] = True
  clips, _ = adaptive.propose(pred, two, avail, 3)
  assert clips.tolist() == [[4, 1, -1], [4, 1, -1]]


def test_a_round_does_not_spend_clips_on_duplicates():
  """Clips 0 and 1 are the same clip twice (the heads' most disputed);
  clip 2 is a little less disputed, in another direction. One round of two
  picks takes 0 and 2 (after 0, clip 1's conditional variance is
  v * noise / (v + noise)); without the conditioning (huge noise), the
  duplicate. Variances are the Gaussian-process conditional ones."""
  rng = np.random.default_rng(1)
  a = 50
  pred = np.zeros((5, a, 2), np.float32)
  pred[0, :, 0] = pred[1, :, 0] = rng.normal(size=a) * 1.0
  pred[2, :, 1] = rng.normal(size=a) * 0.8
  w = np.full((1, a), 1.0 / a)
  avail = np.ones((1, 5), bool)
  clips, var = adaptive.propose(pred, w, avail, 2, noise=0.05)
  assert clips[0].tolist() == [0, 2]
  k = _weighted_cov(pred.astype(np.float64), w[0])
  cond = k[2, 2] - k[2, 0] ** 2 / (k[0, 0] + 0.05)
  np.testing.assert_allclose(var[0], [k[0, 0], cond], rtol=1e-4)
  clips, _ = adaptive.propose(pred, w, avail, 2, noise=1e9)
  assert sorted(clips[0].tolist()) == [0, 1]


def _planted(seed=0, a=30, h=6, flat=40, informative=4):
  """A pool where all heads agree on `flat` clips (trunk features ~ 0) and
  differ on `informative` ones; the new annotator rates like head 7 plus
  a little noise (which drowns the heads' tiny differences on the flat
  clips). -> z [C, 2, H], kernel, bias, pool (clips, ratings), informative
  ids."""
  rng = np.random.default_rng(seed)
  kernel = rng.normal(size=(a, 2, h)).astype(np.float32)
  bias = np.zeros((a, 2), np.float32)
  z = rng.normal(size=(flat + informative, 2, h)).astype(np.float32)
  z[:flat] *= 1e-3
  info = np.arange(flat, flat + informative)
  ratings = (np.einsum("cdh,dh->cd", z, kernel[7]) + bias[7]
             + 0.05 * rng.normal(size=(len(z), 2)))
  clips = rng.permutation(flat + informative)
  return z, kernel, bias, (clips, ratings[clips]), info


def test_adaptive_choice_finds_the_informative_clips_and_the_planted_head():
  z, kernel, bias, pool, info = _planted()
  pred = adaptive.head_predictions(z, kernel, bias)
  order = adaptive.simulate(z, pred, [pool], kernel, bias, temperature=1.0,
                            steps=4)[0]
  chosen = pool[0][order]
  assert sorted(chosen.tolist()) == info.tolist()
  m = enroll.enroll(z, [chosen], [pool[1][order]], kernel, bias)
  assert m.heads[0, 0] == 7
  # Four random clips of the same pool are mostly uninformative: the
  # planted head is found far less often.
  rng = np.random.default_rng(0)
  hits = 0
  for _ in range(20):
    pick = rng.choice(len(pool[0]), 4, replace=False)
    hits += enroll.enroll(z, [pool[0][pick]], [pool[1][pick]], kernel,
                          bias).heads[0, 0] == 7
  assert hits <= 10


def test_simulate_chooses_only_from_each_pool_without_repeats():
  """Per annotator, only clips of their own pool (the clips they rated),
  each at most once; a pool smaller than the steps is used whole, in one
  order whose prefixes are the k-clip sets."""
  z, kernel, bias, pool, _ = _planted(seed=2)
  rng = np.random.default_rng(3)
  pools = []
  for size in (3, 10, 25):
    idx = rng.choice(len(pool[0]), size, replace=False)
    pools.append((pool[0][idx], pool[1][idx]))
  pred = adaptive.head_predictions(z, kernel, bias)
  orders = adaptive.simulate(z, pred, pools, kernel, bias, 1.0, steps=12)
  for (clips, _), order in zip(pools, orders):
    assert len(order) == min(12, len(clips))
    assert len(set(order.tolist())) == len(order)
    assert order.min() >= 0 and order.max() < len(clips)


def test_categorical_heads_are_asked_where_their_labels_disagree():
  """Categorical heads are compared on their class probabilities: on clip 1
  each head's logits differ from the others' by a constant (the same
  probabilities: uniform), on clip 2 head a favours class a. Clip 2 is
  asked; on the raw logits it would be clip 1. With the log-likelihood
  score and T = 1 the posterior over heads is Bayes' rule: proportional to
  the product of each head's probabilities of the labels given."""
  a = k = 3
  kernel = np.zeros((a, k, 2), np.float32)
  kernel[..., 0] = np.eye(a)  # the class-specific cue
  kernel[..., 1] = 5.0 * np.arange(a)[:, None]  # a shift per head
  bias = np.zeros((a, k), np.float32)
  z = np.zeros((3, k, 2), np.float32)
  z[1, :, 1] = 1.0
  z[2, :, 0] = 3.0
  probs = np.asarray(adaptive.head_predictions(z, kernel, bias, True))
  logits = np.einsum("ckh,akh->cak", z, kernel)
  want = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  np.testing.assert_allclose(probs, want, rtol=1e-5)
  np.testing.assert_allclose(probs[1], 1.0 / k, rtol=1e-5)
  uniform = np.full((1, a), 1.0 / a)
  ask = np.ones((1, 3), bool)
  assert adaptive.propose(probs, uniform, ask, 1)[0][0, 0] == 2
  raw = np.asarray(adaptive.head_predictions(z, kernel, bias))
  assert adaptive.propose(raw, uniform, ask, 1)[0][0, 0] == 1
  # Two labels of class 0 on clip 2 and one of class 1 on clip 0.
  clips = [np.array([2, 2, 0])]
  labels = [np.array([[1, -1, -1], [1, -1, -1], [-1, 1, -1]], np.float32)]
  scores, _, _, mask = enroll.enrollment_scores(
      z, clips, labels, kernel, bias, score="loglik")
  weights = np.asarray(posterior.mixture_weights(scores, mask.sum(1), 1.0))
  lik = probs[2, :, 0] ** 2 * probs[0, :, 1]
  np.testing.assert_allclose(weights[0], lik / lik.sum(), rtol=1e-4)
  assert weights[0].argmax() == 0
