"""The blended enrollment rule (annojax/blend.py): its algebra, the choice of
weights on source raters, and the oracle-vs-chance diagnostic."""

import dataclasses

import numpy as np
import pytest
from scipy import stats

from annojax import baselines
from annojax import blend
from annojax import enroll
from annojax import metrics
from annojax import posterior
from annojax.protocol import diagnostic

D, H = 2, 6


def _population(seed=0, a=40, c=300):
  """Trunk features z [C, D, H], heads in near-identical pairs (2i, 2i+1),
  and the consensus = the mean head's output."""
  rng = np.random.default_rng(seed)
  z = rng.standard_normal((c, D, H)).astype(np.float32)
  base = rng.standard_normal((a // 2, D, H)).astype(np.float32) / np.sqrt(H)
  kernel = np.repeat(base, 2, 0) + 0.01 * rng.standard_normal(
      (a, D, H)).astype(np.float32)
  bias = np.zeros((a, D), np.float32)
  agg = np.einsum("cdh,dh->cd", z, kernel.mean(0))
  return rng, z, kernel, bias, agg


def _heads(kernel, bias, rescale=(np.ones(D), np.zeros(D))):
  return blend.Heads(kernel=kernel, bias=bias,
                     prior=posterior.fit_prior(kernel, bias, 4),
                     temperature=0.3, noise=0.05, rescale=rescale)


def test_combine_is_the_stated_formula():
  """pred = base + g sum_r w_r (pred_r - base), with base = a x + c, the
  mixture / EB heads and the calibrated a' base + c', computed here from
  the rules' own functions; the gate sends an annotator below the
  threshold back to the base."""
  rng, z, kernel, bias, agg = _population()
  rescale = (np.array([1.3, 0.8]), np.array([0.1, -0.2]))
  h = _heads(kernel, bias, rescale)
  n, k = 5, 8
  clips = np.stack([rng.choice(len(z), k, replace=False) for _ in range(n)])
  y = rng.uniform(-1, 1, (n, k, D)).astype(np.float32)
  mask = np.ones((n, k), np.float32)
  mask[0, 5:] = 0  # one annotator with 5 clips
  scores = np.asarray(enroll.score_heads(z[clips], y, mask, kernel, bias))
  w = np.array([[0.2, 0.3, 0.4]])
  b = blend.Blend(sizes=(1,), weights=w, gate=("none",),
                  threshold=np.array([-np.inf]), raters=(10,),
                  ccc=np.zeros((1, 2)))
  got = blend.enroll_blended(b, h, z[clips], agg[clips], y, mask, scores)
  t = rng.choice(len(z), 7)  # test clips
  pred = blend.predictions(got, np.broadcast_to(z[t], (n, 7, D, H)),
                           np.broadcast_to(agg[t], (n, 7, D)))
  base = rescale[0] * agg[t] + rescale[1]
  mk, mb = posterior.mixture_heads(scores, mask.sum(1), kernel, bias, 0.3)
  ek, eb = posterior.eb_heads(z[clips], y, mask, h.prior, 0.05)
  ca, cc = baselines.calibrate(rescale[0] * agg[clips] + rescale[1], y, mask,
                               h.shrink)
  for i in range(n):
    mix = np.einsum("tdh,dh->td", z[t], mk[i]) + mb[i]
    e = np.einsum("tdh,dh->td", z[t], ek[i]) + eb[i]
    cal = ca[i] * base + cc[i]
    want = base + 0.2 * (mix - base) + 0.3 * (e - base) + 0.4 * (cal - base)
    np.testing.assert_allclose(pred[i], want, atol=2e-5)
  np.testing.assert_allclose(got.moved, 0.9)
  # A gate above every gain: everyone stays at the base.
  gated = blend.enroll_blended(
      dataclasses.replace(b, threshold=np.array([np.inf])), h, z[clips],
      agg[clips], y, mask, scores)
  np.testing.assert_allclose(
      blend.predictions(gated, np.broadcast_to(z[t], (n, 7, D, H)),
                        np.broadcast_to(agg[t], (n, 7, D)))[2], base,
      atol=1e-6)
  assert (gated.moved == 0).all()


def test_sizes_are_looked_up_at_or_below_the_count():
  b = blend.Blend(sizes=(2, 5, 20), weights=np.zeros((3, 3)),
                  gate=("none",) * 3, threshold=np.full(3, -np.inf),
                  raters=(1, 1, 1), ccc=np.zeros((3, 2)))
  np.testing.assert_array_equal(b.index([1, 2, 4, 5, 19, 20, 500]),
                                [0, 0, 0, 1, 1, 2, 2])
  back = blend.Blend.from_json(b.to_json())
  assert back.sizes == b.sizes and np.all(np.isneginf(back.threshold))


def test_candidate_ccc_equals_an_independent_ccc_ind():
  """The closed-form per-rater CCC of a coefficient vector equals
  metrics.ccc_per_group on the explicit predictions."""
  rng = np.random.default_rng(3)
  p, g = 200, 12
  f = rng.standard_normal((p, D, 4))
  y = rng.standard_normal((p, D)) + f[..., 0]
  who = rng.integers(0, g, p)
  coef = rng.uniform(0, 1, (3, g, 4))
  coef[..., 0] = 1
  got = blend._ccc_of_coefficients(coef, blend._moments(f, y, who, g))  # pylint: disable=protected-access
  for m in range(3):
    pred = np.einsum("pdf,pf->pd", f, coef[m][who])
    want, _ = metrics.ccc_per_group(pred, y, who)
    np.testing.assert_allclose(got[m], want.mean(1), atol=1e-9)


def _choose_case(signal, seed=0, g=200, per=10):
  """Source test pairs where the ratings are the base + signal x the EB
  rule's departure + noise."""
  rng = np.random.default_rng(seed)
  who = np.repeat(np.arange(g), per)
  f = rng.standard_normal((len(who), D, 4))
  y = f[..., 0] + signal * f[..., 2] + 0.5 * rng.standard_normal(
      (len(who), D))
  return f, y, who, rng.standard_normal(g)


def test_choose_finds_a_planted_rule_and_keeps_the_consensus_on_noise():
  f, y, who, gains = _choose_case(signal=1.0)
  w, gate, _, c0, c1 = blend.choose(f, y, who, gains, {"none": -np.inf})
  assert w[1] >= 0.7 and w[0] <= 0.1 and w[2] <= 0.1 and gate == "none"
  assert c1 > c0 + 0.1
  # No rule carries anything: the weights stay at zero (the consensus), in
  # each of several independent draws, though some weights beat it there
  # by luck (15 raters x 3 test clips: in 6 of these 8 by > .003).
  for seed in range(8):
    f, y, who, gains = _choose_case(signal=0.0, seed=seed, g=15, per=3)
    w, gate, t, c0, c1 = blend.choose(f, y, who, gains,
                                      {"none": -np.inf, "q": 0.0})
    assert (w == 0).all() and gate == "none" and c0 == c1


def test_tune_trusts_heads_only_where_source_raters_follow_them():
  """Source raters who rate like a pre-trained head (their own excluded,
  its near-twin kept) teach the blend to move from the consensus at larger
  sizes; raters who rate the consensus plus noise teach it to stay."""
  rng, z, kernel, bias, agg = _population(seed=1, a=60, c=400)
  h = _heads(kernel, bias)

  def raters(follow_heads: bool, n=60, per=40):
    clip, ann, val = [], [], []
    for a in range(n):
      c = rng.choice(len(z), per, replace=False)
      mean = (np.einsum("cdh,dh->cd", z[c], kernel[a]) + bias[a]
              if follow_heads else agg[c])
      clip.append(c)
      ann.append(np.full(per, a))
      val.append(mean + 0.1 * rng.standard_normal((per, D)))
    return (np.concatenate(clip), np.concatenate(ann),
            np.concatenate(val).astype(np.float32))

  follow = blend.tune(h, z, agg, *raters(True), sizes=(5, 20))
  assert follow.sizes == (5, 20)
  assert follow.weights[-1].sum() >= 0.5
  assert follow.ccc[-1, 1] > follow.ccc[-1, 0] + 0.1
  stay = blend.tune(h, z, agg, *raters(False), sizes=(5, 20))
  assert (stay.weights == 0).all()
  # Too few raters with that many ratings: no size, the consensus alone.
  few = blend.tune(h, z, agg, *raters(True, n=5), sizes=(5,))
  assert few.sizes == (1,) and (few.weights == 0).all()


def _results(oracle, chance):
  cell = lambda runs: {"runs": list(runs)}
  return {"protocol": {"metrics": ["ccc_ind"], "columns": ["act", "val"]},
          "rows": {"oracle": {"ccc_ind": {"act": cell(oracle[0]),
                                          "val": cell(oracle[1])}},
                   "oracle_chance": {"ccc_ind": {"act": cell(chance[0]),
                                                 "val": cell(chance[1])}}}}


def test_diagnostic_says_whether_heads_can_be_told_apart():
  rng = np.random.default_rng(0)
  chance = rng.normal(0.5, 0.05, (2, 15))
  # Above chance on act. only; at chance on val.
  oracle = np.stack([chance[0] + 0.02 + rng.normal(0, 0.04, 15),
                     chance[1] + rng.normal(0, 0.05, 15)])
  out = diagnostic.distinguishable(_results(oracle, chance))
  want = stats.ttest_rel(oracle[0], chance[0], alternative="greater").pvalue
  assert 1e-4 < want < 0.05
  assert out["columns"]["act"]["p_one_sided"] == pytest.approx(want, abs=0)
  assert out["columns"]["act"]["distinguishable"]
  assert not out["columns"]["val"]["distinguishable"]
  assert "On act only" in out["sentence"]
  same = diagnostic.distinguishable(_results(
      chance + rng.normal(0, 0.05, chance.shape), chance))
  assert "No:" in same["sentence"] and "not expected" in same["sentence"]
  assert diagnostic.distinguishable({"rows": {}, "protocol": {}}) is None


def _ccc_sum(pred, y):
  """Lin's CCC per dimension (population moments), summed: pred [..., k, D]
  against y [k, D], written out (enroll's score of a set of >= 2 clips)."""
  mp, my = pred.mean(-2), y.mean(0)
  cov = ((pred - mp[..., None, :]) * (y - my)).mean(-2)
  den = pred.var(-2) + y.var(0) + (mp - my) ** 2
  return (2 * cov / den).sum(-1)


def blended_by_hand(learned: dict, kernel, bias, prior, temperature, noise,
                    rescale, shrink, z_enr, agg_enr, y_enr, z_test, agg_test):
  """The blended rule for ONE annotator, from its definition (blend.py's
  docstring) in plain numpy: z_enr [k, D, H], agg_enr / y_enr [k, D] of
  their enrollment clips; z_test [T, D, H], agg_test [T, D] of the clips to
  predict; learned: Blend.to_json(). -> ([T, D] predictions, how far they
  moved from the consensus: the weights' sum) (k >= 2 clips)."""
  kernel, bias = np.asarray(kernel, np.float64), np.asarray(bias, np.float64)
  k, d = y_enr.shape
  a, c = (np.asarray(v, np.float64) for v in rescale)
  heads_enr = np.einsum("kdh,adh->akd", z_enr, kernel) + bias[:, None]
  scores = _ccc_sum(heads_enr, y_enr)                          # [A]
  # The tuned size: the largest <= k (else the smallest).
  sizes = np.asarray(learned["sizes"])
  i = max([j for j, s in enumerate(sizes) if s <= k], default=0)
  w = np.asarray(learned["weights"][i], np.float64)
  t = learned["threshold"][i]
  base_enr = a * agg_enr + c
  gain = (scores.max() - _ccc_sum(base_enr, y_enr)) / d
  if t is not None and not gain > t:
    w = np.zeros(3)
  # mixture: softmax(k score / T) over heads, their weighted mean.
  p = np.exp(k * scores / temperature - (k * scores / temperature).max())
  p /= p.sum()
  mix = (np.einsum("a,adh->dh", p, kernel), p @ bias)
  # EB: theta = mu + S X^T (X S X^T + noise I)^-1 (y - X mu), per dim.
  eb_k, eb_b = np.zeros(kernel.shape[1:]), np.zeros(d)
  for j in range(d):
    x = np.concatenate([z_enr[:, j], np.ones((k, 1))], 1)
    u = np.asarray(prior.factor[j], np.float64)
    sigma = u @ u.T + prior.rest[j] * np.eye(len(u))
    mu = np.asarray(prior.mean[j], np.float64)
    theta = mu + sigma @ x.T @ np.linalg.solve(
        x @ sigma @ x.T + noise * np.eye(k), y_enr[:, j] - x @ mu)
    eb_k[j], eb_b[j] = theta[:-1], theta[-1]
  # calibrated: the base at the annotator's mean and s.d., shrunk.
  wt = k / (k + shrink)
  ca = wt * y_enr.std(0) / base_enr.std(0) + (1 - wt)
  cc = wt * y_enr.mean(0) + (1 - wt) * base_enr.mean(0) - ca * base_enr.mean(
      0)
  base = a * agg_test + c
  rules = [np.einsum("tdh,dh->td", z_test, mix[0]) + mix[1],
           np.einsum("tdh,dh->td", z_test, eb_k) + eb_b, ca * base + cc]
  return base + sum(wr * (r - base) for wr, r in zip(w, rules)), w.sum()


def test_blended_by_hand_agrees_with_the_rule():
  """The reference above against blend.py on planted sets (the reference
  is what the protocol and enroll tests check against)."""
  rng, z, kernel, bias, agg = _population(seed=2)
  rescale = (np.array([1.2, 0.9]), np.array([0.05, -0.1]))
  h = _heads(kernel, bias, rescale)
  n, k = 6, 9
  clips = np.stack([rng.choice(len(z), k, replace=False) for _ in range(n)])
  y = rng.uniform(-1, 1, (n, k, D)).astype(np.float32)
  mask = np.ones((n, k), np.float32)
  scores = np.asarray(enroll.score_heads(z[clips], y, mask, kernel, bias))
  b = blend.Blend(sizes=(2, 5), weights=np.array([[0.5, 0, 0],
                                                  [0.2, 0.3, 0.4]]),
                  gate=("none", "chance_median"),
                  threshold=np.array([-np.inf, 0.3]), raters=(10, 10),
                  ccc=np.zeros((2, 2)))
  got = blend.enroll_blended(b, h, z[clips], agg[clips], y, mask, scores)
  assert 0 < (got.moved > 0).sum() < n  # the gate passes some, not all
  t = rng.choice(len(z), 5)
  pred = blend.predictions(got, np.broadcast_to(z[t], (n, 5, D, H)),
                           np.broadcast_to(agg[t], (n, 5, D)))
  for i in range(n):
    want, moved = blended_by_hand(
        b.to_json(), kernel, bias, h.prior, 0.3, 0.05, rescale, h.shrink,
        z[clips[i]], agg[clips[i]], y[i], z[t], agg[t])
    np.testing.assert_allclose(pred[i], want, atol=2e-4)
    assert got.moved[i] == pytest.approx(moved)
