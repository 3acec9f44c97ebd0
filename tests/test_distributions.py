"""Rating distributions (annojax/distributions.py), against independent
computations (scipy's truncated normal, numerical integration, hand-worked
values) and on planted populations whose per-clip distributions are
known."""

import numpy as np
import pytest
from scipy import integrate
from scipy import optimize
from scipy import stats

from annojax import distributions as dist

LIKERT7 = dist.Scale(np.linspace(-1, 1, 7))


def _random_mixture(rng, clips=6, kernels=5):
  centres = rng.uniform(-1.3, 1.3, (clips, kernels, 2))
  centres[0, 0] = 1.0  # kernels on the scale's ends
  centres[1, 0] = -1.0
  weights = rng.dirichlet(np.ones(kernels), clips)
  widths = rng.uniform(0.02, 0.8, (clips, 2))
  widths[2] = 3.0  # nearly flat
  return dist.Mixture.of(centres, weights, widths), (
      np.clip(centres, -1, 1), weights, widths)


def _scipy_pdf(x, mu, w, s):
  """The truncated mixture's density, kernel by kernel with scipy."""
  return sum(wk * stats.truncnorm.pdf(x, (-1 - m) / s, (1 - m) / s, loc=m,
                                      scale=s) for m, wk in zip(mu, w))


def _scipy_cdf(x, mu, w, s):
  return sum(wk * stats.truncnorm.cdf(x, (-1 - m) / s, (1 - m) / s, loc=m,
                                      scale=s) for m, wk in zip(mu, w))


def test_densities_integrate_to_one_and_match_scipy():
  rng = np.random.default_rng(0)
  mix, (mu, w, s) = _random_mixture(rng)
  grid = np.linspace(-1, 1, 4001)
  for c in range(mix.num_clips):
    y = np.stack([grid, grid], 1)
    ll = dist.log_likelihood(mix, dist.Scale(), np.full(len(grid), c), y)
    for d in range(2):
      assert integrate.trapezoid(np.exp(ll[:, d]), grid) == pytest.approx(
          1.0, abs=2e-3)
      ref = _scipy_pdf(grid[::97], mu[c, :, d], w[c], s[c, d])
      np.testing.assert_allclose(np.exp(ll[::97, d]), ref, rtol=2e-4)
  # Likert: the levels' masses sum to 1 and are the density's integral
  # over each level's cell.
  p = dist.masses(mix, LIKERT7.edges())
  np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)
  edges = LIKERT7.edges()
  for c in (0, 3):
    ref = np.diff(_scipy_cdf(edges, mu[c, :, 1], w[c], s[c, 1]))
    np.testing.assert_allclose(p[c, 1], ref, atol=1e-6)
  ll7 = dist.log_likelihood(mix, LIKERT7, np.array([3, 3]),
                            np.array([[-1.0, 1 / 3], [1.0, 0.0]]))
  np.testing.assert_allclose(np.exp(ll7), [[p[3, 0, 0], p[3, 1, 4]],
                                           [p[3, 0, 6], p[3, 1, 3]]],
                             rtol=1e-9)


def test_spread_and_quantiles_match_scipy():
  rng = np.random.default_rng(1)
  mix, (mu, w, s) = _random_mixture(rng)
  mean, sd = dist.spread(mix, dist.Scale())
  q = dist.quantiles(mix, dist.Scale(), [0.05, 0.5, 0.95])
  for c in range(mix.num_clips):
    for d in range(2):
      f = lambda x, c=c, d=d: _scipy_pdf(x, mu[c, :, d], w[c], s[c, d])
      m = integrate.quad(lambda x: x * f(x), -1, 1, limit=200)[0]
      v = integrate.quad(lambda x: (x - m) ** 2 * f(x), -1, 1,
                         limit=200)[0]
      assert mean[c, d] == pytest.approx(m, abs=1e-5)
      assert sd[c, d] == pytest.approx(np.sqrt(v), abs=1e-5)
      for j, level in enumerate((0.05, 0.5, 0.95)):
        root = optimize.brentq(lambda x, c=c, d=d, level=level: _scipy_cdf(
            x, mu[c, :, d], w[c], s[c, d]) - level, -1, 1)
        assert q[c, d, j] == pytest.approx(root, abs=2e-3)
  # Likert: the lowest level whose cumulative mass reaches q; s.d. of the
  # levels' masses.
  p = dist.masses(mix, LIKERT7.edges())
  q7 = dist.quantiles(mix, LIKERT7, [0.05, 0.5, 0.95])
  _, sd7 = dist.spread(mix, LIKERT7)
  for c in range(mix.num_clips):
    for d in range(2):
      cdf = np.cumsum(p[c, d])
      for j, level in enumerate((0.05, 0.5, 0.95)):
        assert q7[c, d, j] == LIKERT7.levels[np.argmax(cdf >= level - 1e-9)]
      m = (p[c, d] * LIKERT7.levels).sum()
      assert sd7[c, d] == pytest.approx(np.sqrt(
          (p[c, d] * (LIKERT7.levels - m) ** 2).sum()), abs=1e-6)


def test_jsd_hand_worked_values():
  assert dist.jsd([0.3, 0.7], [0.3, 0.7]) == pytest.approx(0.0)
  assert dist.jsd([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
  # p = (1, 0), q = (.5, .5): m = (.75, .25); KL(p||m) = log2(4/3),
  # KL(q||m) = .5 log2(2/3) + .5 log2(2).
  want = (np.log2(4 / 3) + 0.5 * np.log2(2 / 3) + 0.5) / 2
  assert dist.jsd([1.0, 0.0], [0.5, 0.5]) == pytest.approx(want)


def test_detect_scale():
  rng = np.random.default_rng(2)
  seven = np.linspace(-1, 1, 7)[rng.integers(0, 7, (300, 2))]
  assert dist.detect_scale(seven).describe() == "Likert, 7 levels"
  five_sparse = np.linspace(-1, 1, 5)[rng.choice([0, 2, 4], (50, 2))]
  assert dist.detect_scale(five_sparse).describe() == "Likert, 3 levels"
  sliders = rng.integers(0, 101, (500, 2)) / 50.0 - 1.0  # 0-100 sliders
  assert not dist.detect_scale(sliders).likert
  assert not dist.detect_scale(rng.uniform(-1, 1, (100, 2))).likert


def _planted(rng, clips, raters, likert):
  """Clips whose ratings come from known mixtures: two rater groups per
  clip (shares, centres and spreads vary by clip). -> (true mixture,
  rating_clip, ratings, population predictions [C, A, D] of 300 planted
  annotators: each a draw from the clip's group distribution without the
  rating noise)."""
  share = rng.uniform(0.2, 0.8, clips)
  centres = np.stack([rng.uniform(-0.8, 0.0, (clips, 2)),
                      rng.uniform(0.0, 0.8, (clips, 2))], 1)  # [C, 2, D]
  spread = rng.uniform(0.05, 0.35, (clips, 2))
  weights = np.stack([share, 1 - share], 1)
  truth = dist.Mixture.of(centres, weights, spread)

  def draw(n):
    group = (rng.uniform(size=(clips, n)) > share[:, None]).astype(int)
    loc = np.take_along_axis(centres, group[..., None], 1)  # [C, n, D]
    out = loc + spread[:, None] * rng.normal(size=loc.shape)
    while np.any(np.abs(out) > 1):  # the truncated kernels: redraw outside
      bad = np.abs(out) > 1
      out[bad] = (loc + spread[:, None] * rng.normal(size=loc.shape))[bad]
    return out
  y = draw(raters)
  if likert:
    y = LIKERT7.levels[np.abs(y[..., None] - LIKERT7.levels).argmin(-1)]
  rating_clip = np.repeat(np.arange(clips), raters)
  population = np.stack([np.take_along_axis(
      centres, (rng.uniform(size=(clips, 1)) > share[:, None]).astype(
          int)[..., None], 1)[:, 0] for _ in range(300)], 1)
  return truth, rating_clip, y.reshape(-1, 2), population


@pytest.mark.parametrize("likert", [False, True])
def test_planted_distributions_order_the_nll(likert):
  """The true distribution scores a lower NLL than every baseline; a KDE
  of a planted population of annotators (width chosen on other clips)
  beats the clip-independent distribution of all ratings."""
  rng = np.random.default_rng(3)
  scale = LIKERT7 if likert else dist.Scale()
  truth, rc, y, pop = _planted(rng, 300, 8, likert)
  _, rc_val, y_val, pop_val = _planted(rng, 200, 8, likert)
  c = truth.num_clips
  kde = lambda p, h: dist.Mixture.of(p, np.ones(p.shape[1]), h)
  width, _ = dist.choose_width(lambda h: kde(pop_val, h), scale, rc_val,
                               y_val, (0.03, 0.05, 0.1, 0.2, 0.3, 0.5))
  consensus = np.stack([np.bincount(rc, y[:, d], c) / 8 for d in range(2)],
                       1)
  global_sd = dist.residual_sd(rc, y, consensus)
  q = (np.arange(256) + 0.5) / 256
  nll = {
      "truth": truth,
      "model": kde(pop, width),
      "consensus_global_sd": dist.Mixture.of(consensus[:, None], [1.0],
                                             global_sd),
      "source": dist.Mixture.of(np.quantile(y_val, q, axis=0)[None],
                                np.ones(256), 0.1, c)}
  got = {k: -dist.log_likelihood(m, scale, rc, y).mean(0)
         for k, m in nll.items()}
  for k in ("model", "consensus_global_sd", "source"):
    assert np.all(got["truth"] < got[k]), (k, got)
  assert np.all(got["model"] < got["source"]), got
  scores = {k: dist.evaluate(m, scale, rc, y) for k, m in nll.items()}
  assert np.all(np.asarray(scores["model"]["jsd"]) <
                np.asarray(scores["source"]["jsd"]))
  assert np.all(np.asarray(scores["truth"]["sd_ccc"]) > 0.3)
  np.testing.assert_allclose(scores["source"]["sd_ccc"], 0.0, atol=1e-9)


def _reference_ccc(x, y):
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  sxy = np.mean((x - x.mean()) * (y - y.mean()))
  return 2 * sxy / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def test_disagreement_ccc_and_coverage_on_a_planted_case():
  """Clips with known rating s.d.s (Gaussians well inside the scale, so
  truncation changes nothing): sd_ccc is the CCC of the known s.d.s with
  the ratings' sample s.d.s (reference formula); ratings drawn from the
  predicted distributions cover the 50% / 90% intervals at those rates."""
  rng = np.random.default_rng(4)
  clips, raters = 400, 12
  sd = rng.uniform(0.02, 0.15, (clips, 2))
  centre = rng.uniform(-0.2, 0.2, (clips, 2))
  y = (centre[:, None] + sd[:, None] * rng.normal(size=(clips, raters, 2)))
  rc = np.repeat(np.arange(clips), raters)
  out = dist.evaluate(dist.Mixture.of(centre[:, None], [1.0], sd),
                      dist.Scale(), rc, y.reshape(-1, 2))
  sample_sd = y.std(1, ddof=1)
  for d in range(2):
    assert out["sd_ccc"][d] == pytest.approx(
        _reference_ccc(sd[:, d], sample_sd[:, d]), abs=1e-4)
  assert np.all(np.asarray(out["sd_ccc"]) > 0.8)
  np.testing.assert_allclose(out["coverage_50"], 0.5, atol=0.02)
  np.testing.assert_allclose(out["coverage_90"], 0.9, atol=0.015)
  # One s.d. for every clip predicts no disagreement: CCC 0.
  flat = dist.evaluate(dist.Mixture.of(centre[:, None], [1.0], 0.1),
                       dist.Scale(), rc, y.reshape(-1, 2))
  np.testing.assert_allclose(flat["sd_ccc"], 0.0, atol=1e-6)


def test_spread_head_recovers_a_planted_linear_spread():
  rng = np.random.default_rng(5)
  clips, h = 3000, 8
  z = rng.normal(size=(clips, 2, h)).astype(np.float32)
  true_sd = 0.3 + 0.08 * z[:, :, 0] - 0.05 * z[:, :, 1]
  n = rng.integers(2, 9, clips)
  rc = np.repeat(np.arange(clips), n)
  y = true_sd[rc] * rng.normal(size=(len(rc), 2))
  head, _ = dist.fit_spread_head(z[:2000], rc[rc < 2000], y[rc < 2000],
                                 z[2000:], rc[rc >= 2000] - 2000,
                                 y[rc >= 2000])
  pred = head(z[2000:])
  for d in range(2):
    assert np.corrcoef(pred[:, d], true_sd[2000:, d])[0, 1] > 0.95
    assert np.abs(pred[:, d] - true_sd[2000:, d]).mean() < 0.03


def test_annotator_weights_and_bad_setting():
  pair_annotator = np.array([0, 0, 2, 2, 2, 3])
  np.testing.assert_array_equal(
      dist.annotator_weights("activity", pair_annotator, 5), [2, 0, 3, 1, 0])
  np.testing.assert_array_equal(
      dist.annotator_weights("uniform", pair_annotator, 5), np.ones(5))
  with pytest.raises(ValueError, match="config.eval.distribution.weights"):
    dist.annotator_weights("by_speaker", pair_annotator, 5)


def test_rated_clips_keeps_clips_with_enough_ratings():
  from annojax.protocol import rating_distributions  # pylint: disable=g-import-not-at-top
  counts = [4, 5, 6, 0, 5]
  pair_clip = np.repeat(np.arange(5), counts)
  y = np.arange(len(pair_clip), dtype=np.float32)[:, None] * [1, -1]
  got = rating_distributions.rated_clips(pair_clip, y, 5, 5)
  np.testing.assert_array_equal(got.clips, [1, 2, 4])
  np.testing.assert_array_equal(np.bincount(got.rating_clip), [5, 6, 5])
  np.testing.assert_array_equal(got.y, y[np.isin(pair_clip, [1, 2, 4])])
