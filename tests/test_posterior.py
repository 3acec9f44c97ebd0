"""Enrollment beyond the top-1 head: the empirical-Bayes head, the posterior
mixture, their tuning on source annotators, and training-time shrinkage."""

import numpy as np
import pytest

from annojax import enroll
from annojax import posterior
from annojax import train


def _population(a=400, d=2, h=16, rank=3, seed=0):
  """Heads drawn from a known low-rank Gaussian: mean + U e + small noise."""
  rng = np.random.default_rng(seed)
  mean = rng.normal(size=(d, h + 1))
  u = rng.normal(size=(d, h + 1, rank))
  e = rng.normal(size=(a, d, rank))
  theta = mean + np.einsum("dpr,adr->adp", u, e) + 0.05 * rng.normal(
      size=(a, d, h + 1))
  return theta[..., :-1].astype(np.float32), theta[..., -1].astype(
      np.float32), rng


def test_prior_mean_and_principal_directions():
  kernel, bias, _ = _population()
  prior = posterior.fit_prior(kernel, bias, rank=3)
  theta = np.concatenate([kernel, bias[..., None]], -1)
  np.testing.assert_allclose(prior.mean, theta.mean(0), atol=1e-5)
  assert prior.factor.shape == (2, 17, 3) and prior.rest.shape == (2,)
  # Prior covariance = the heads' covariance on the top directions.
  for j in range(2):
    c = np.cov(theta[:, j].T, bias=True)
    sigma = prior.factor[j] @ prior.factor[j].T + prior.rest[j] * np.eye(17)
    top = np.linalg.eigh(c)[1][:, -3:]
    np.testing.assert_allclose(top.T @ sigma @ top, top.T @ c @ top,
                               rtol=1e-3, atol=1e-4)
    assert 0 < prior.rest[j] < 0.01  # the 0.05-s.d. isotropic part


def test_eb_head_is_the_prior_mean_without_clips_and_recovers_a_planted_head():
  kernel, bias, rng = _population(a=401)
  # The last head is the new annotator: from the population, not in it.
  k_true, b_true = kernel[400:], bias[400:]
  prior = posterior.fit_prior(kernel[:400], bias[:400], rank=3)
  z = rng.normal(size=(3, 300, 2, 16)).astype(np.float32)
  y = np.einsum("nkdh,dh->nkd", z, k_true[0]) + b_true[0]
  y = (y + 0.05 * rng.normal(size=y.shape)).astype(np.float32)
  mask = np.zeros((3, 300), np.float32)
  mask[1, :3] = 1.0   # 3 clips
  mask[2, :] = 1.0    # 300 clips
  kn, bn = posterior.eb_heads(z, y, mask, prior, noise=0.05 ** 2)
  # No clips: exactly the population head.
  np.testing.assert_allclose(kn[0], prior.mean[..., :-1], atol=1e-6)
  np.testing.assert_allclose(bn[0], prior.mean[..., -1], atol=1e-6)
  err = [np.linalg.norm(kn[i] - k_true[0]) / np.linalg.norm(k_true[0])
         for i in range(3)]
  # Enough clips: the planted head (2% of its norm); few: in between.
  assert err[2] < 0.02, err
  assert err[2] < err[1] < err[0], err
  np.testing.assert_allclose(bn[2], b_true[0], atol=0.02)


def test_mixture_spans_top1_copy_to_mean_of_heads():
  kernel, bias, rng = _population(a=50)
  scores = rng.normal(size=(4, 50)).astype(np.float32)
  best = scores.argmax(1)
  counts = np.array([1.0, 5.0, 10.0, 30.0])
  k, b = posterior.mixture_heads(scores, counts, kernel, bias,
                                 temperature=1e-4)
  np.testing.assert_allclose(k, kernel[best], atol=1e-4)
  np.testing.assert_allclose(b, bias[best], atol=1e-4)
  k, b = posterior.mixture_heads(scores, counts, kernel, bias,
                                 temperature=1e6)
  np.testing.assert_allclose(k, np.broadcast_to(kernel.mean(0), k.shape),
                             atol=1e-4)
  scores[:, best[0]] = -np.inf  # an excluded head gets no weight
  k, _ = posterior.mixture_heads(scores, counts, kernel, bias,
                                 temperature=1e-4)
  assert not np.allclose(k[0], kernel[best[0]], atol=1e-3)
  # More clips, sharper posterior: at one temperature, the weight on the
  # best head grows with the count.
  one = np.tile(scores[1], (2, 1))
  k, _ = posterior.mixture_heads(one, np.array([1.0, 30.0]), kernel, bias,
                                 temperature=0.5)
  d_few, d_many = (np.linalg.norm(k[i] - kernel[best[1]]) for i in (0, 1))
  assert d_many < d_few


def test_tuning_excludes_own_head_and_estimates_noise():
  """Source held-out raters whose ratings ARE their own head plus noise of
  s.d. 0.3: the estimated EB noise is ~0.09; the mixture cannot pick the
  rater's own head (else the tiny temperature, a copy of the own head,
  would score CCC ~1)."""
  kernel, bias, rng = _population(a=60, h=8)
  n_clips, per = 400, 12
  z = rng.normal(size=(n_clips, 2, 8)).astype(np.float32)
  ann = np.repeat(np.arange(60), per)
  clip = rng.integers(n_clips, size=len(ann))
  y = (np.einsum("pdh,pdh->pd", z[clip], kernel[ann]) + bias[ann]
       + 0.3 * rng.normal(size=(len(ann), 2))).astype(np.float32)
  tuned = posterior.tune(z, clip, ann, y, kernel, bias,
                         temperatures=(1e-3, 1.0, 1e3))
  assert tuned.annotators == 60
  assert set(tuned.temperature_scores) == {1e-3, 1.0, 1e3}
  np.testing.assert_allclose(tuned.noise, 0.09, rtol=0.15)
  assert max(tuned.temperature_scores.values()) < 0.8
  assert posterior.tune(z, clip, ann, y, kernel, bias, (1.0,),
                        noise=0.5).noise == 0.5


def test_head_pull_is_zero_at_the_mean_and_counts_rated_slots():
  heads = {"kernel": np.zeros((3, 2, 4), np.float32),
           "bias": np.zeros((3, 2), np.float32)}
  heads["kernel"][0] += 3.0  # mean kernel = 1; head 0 at 3, heads 1-2 at 0
  dev = np.array([2 * 4 * 4.0, 2 * 4 * 1.0, 2 * 4 * 1.0])  # ||w - mean||^2
  batch = {"annotators": np.array([[0, 1], [2, 2]])}
  mask = np.array([[1.0, 1.0], [1.0, 0.0]], np.float32)
  got = float(train.head_pull(heads, batch, mask))
  np.testing.assert_allclose(got, (dev[0] + dev[1] + dev[2]) / 3, rtol=1e-6)
  dense_mask = np.array([[1.0, 0.0, 0.0]], np.float32)  # dense layout
  np.testing.assert_allclose(float(train.head_pull(heads, {}, dense_mask)),
                             dev[0], rtol=1e-6)
  same = {"kernel": np.ones((3, 2, 4), np.float32),
          "bias": np.ones((3, 2), np.float32)}
  assert float(train.head_pull(same, batch, mask)) == 0.0


def test_shrinkage_pulls_trained_heads_together(tiny_config, tmp_path):
  """The same tiny training with head_shrinkage = 30: the heads' spread
  around their mean is a fraction of the unshrunk model's; shrinkage with
  the row-sparse update is refused."""
  from annojax import head_optim  # pylint: disable=g-import-not-at-top
  from annojax import jobs  # pylint: disable=g-import-not-at-top
  spread = {}
  for lam in (0.0, 30.0):
    config = tiny_config
    config.mode = "train"
    config.train.models = ("individual",)
    config.train.num_epochs = 4
    config.eval.seeds = 1
    config.model.head_shrinkage = lam
    out = jobs.run(config, str(tmp_path / f"s{lam}"))
    k, _ = train.head_arrays(out["individual"]["params"])
    spread[lam] = float(((k - k.mean(0)) ** 2).sum((1, 2)).mean())
  assert spread[30.0] < 0.5 * spread[0.0], spread
  config.optim.head_update = "sparse"
  with pytest.raises(ValueError, match="head_shrinkage"):
    head_optim.resolve(config, None, "individual")


def test_enrollment_scores_feed_the_top1_mapping():
  kernel, bias, rng = _population(a=30, h=8)
  z = rng.normal(size=(20, 2, 8)).astype(np.float32)
  clips = [np.arange(5), np.arange(5, 12)]
  ys = [rng.normal(size=(5, 2)), rng.normal(size=(7, 2))]
  scores, cidx, y_e, m_e = enroll.enrollment_scores(z, clips, ys, kernel,
                                                    bias)
  ref = enroll.enroll(z, clips, ys, kernel, bias)
  np.testing.assert_array_equal(enroll.mapping(scores, y_e, m_e).heads,
                                ref.heads)
  assert scores.shape == (2, 30) and cidx.shape == (2, 7)


def test_checkpoints_from_before_shrinkage_stay_usable(tmp_path):
  """origin.json written before config.model.head_shrinkage existed matches
  a run at the default (0), not one that shrinks."""
  import json  # pylint: disable=g-import-not-at-top
  old = {"data": "x", "model": {"hidden": 8, "dropout": 0.0}}
  (tmp_path / "origin.json").write_text(json.dumps(old))
  now = {"data": "x", "model": {"hidden": 8, "dropout": 0.0,
                                "head_shrinkage": 0.0}}
  train.check_origin(str(tmp_path), now)
  now["model"]["head_shrinkage"] = 1.0
  with pytest.raises(ValueError, match="head_shrinkage"):
    train.check_origin(str(tmp_path), now)
