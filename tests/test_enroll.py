"""Batched enrollment search: exactness, selection, chunking, errors."""

import jax
import numpy as np
import pytest

from annojax import enroll
from annojax import metrics


def _inputs(seed=0, n=6, k=8, d=2, h=12, a=40):
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(n, k, d, h)).astype(np.float32)
  y = rng.uniform(-1, 1, (n, k, d)).astype(np.float32)
  mask = (rng.random((n, k)) < 0.7).astype(np.float32)
  mask[0] = 0
  mask[0, 2] = 1  # one-clip annotator
  mask[1] = 1
  mask[2, :2] = 1
  kernel = rng.normal(size=(a, d, h)).astype(np.float32) * 0.3
  bias = rng.normal(size=(a, d)).astype(np.float32) * 0.1
  return z, y, mask, kernel, bias


def _loop(z, y, mask, kernel, bias, score):
  """The straightforward reference: one annotator, one head at a time."""
  out = np.zeros((len(z), len(kernel)))
  for n in range(len(z)):
    m = mask[n] > 0
    for a in range(len(kernel)):
      p = np.einsum("kdh,dh->kd", z[n][m], kernel[a]) + bias[a]
      t = y[n][m]
      if m.sum() == 1:
        out[n, a] = -np.abs(p - t).sum()
      elif score == "ccc":
        out[n, a] = metrics.ccc(p, t).sum()
      elif score == "pearson":
        out[n, a] = sum(np.corrcoef(p[:, j], t[:, j])[0, 1]
                        for j in range(p.shape[1]))
      else:
        out[n, a] = -((p - t) ** 2).mean(0).sum()
  return out


@pytest.mark.parametrize("score", ["ccc", "pearson", "mse"])
def test_batched_equals_per_candidate_loop(score):
  z, y, mask, kernel, bias = _inputs()
  got = np.asarray(enroll.score_heads(z, y, mask, kernel, bias, score,
                                      head_chunk=16))
  want = _loop(z, y, mask, kernel, bias, score)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


def test_chunk_size_does_not_change_scores():
  z, y, mask, kernel, bias = _inputs(seed=1, a=37)
  a = np.asarray(enroll.score_heads(z, y, mask, kernel, bias, head_chunk=5))
  b = np.asarray(enroll.score_heads(z, y, mask, kernel, bias,
                                    head_chunk=1024))
  np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  assert enroll.chunk_size(1000, 30, 2, 20000, 1024) * 1000 * 30 * 2 <= 2 ** 27
  # Few heads: one chunk of exactly A (no padded heads computed).
  assert enroll.chunk_size(10, 30, 2, 500, 1024) == 500
  # Chunks spread evenly: 1100 heads -> 2 chunks of 550, not 1024 + 76.
  assert enroll.chunk_size(10, 30, 2, 1100, 1024) == 550


def test_planted_annotator_is_selected():
  rng = np.random.default_rng(3)
  d, h, a = 2, 16, 500
  kernel = rng.normal(size=(a, d, h)).astype(np.float32)
  bias = rng.normal(size=(a, d)).astype(np.float32) * 0.2
  z_clips = rng.normal(size=(100, d, h)).astype(np.float32)
  planted = [17, 333, 499]
  clip_lists, ratings = [], []
  for p in planted:
    c = rng.choice(100, size=10, replace=False)
    clip_lists.append(c)
    y = np.einsum("kdh,dh->kd", z_clips[c], kernel[p]) + bias[p]
    ratings.append(y + 0.05 * rng.normal(size=y.shape))
  m = enroll.enroll(z_clips, clip_lists, ratings, kernel, bias, top_k=3)
  np.testing.assert_array_equal(m.heads[:, 0], planted)
  assert (m.margin > 0).all()
  np.testing.assert_allclose(m.weights, 1 / 3)
  k_n, b_n = enroll.select(np.eye(3, a) * 5, top_k=1).head_params(kernel,
                                                                  bias)
  np.testing.assert_array_equal(k_n, kernel[:3])


def test_select_weighted_topk_and_margin():
  scores = np.array([[0.1, 0.9, 0.5, 0.7]])
  m = enroll.select(scores, top_k=3, weighted=True)
  np.testing.assert_array_equal(m.heads, [[1, 3, 2]])
  np.testing.assert_allclose(m.margin, [0.2], rtol=1e-6)
  assert m.weights[0, 0] > m.weights[0, 1] > m.weights[0, 2]
  np.testing.assert_allclose(m.weights.sum(), 1.0, rtol=1e-6)
  kernel = np.arange(4 * 1 * 1, dtype=np.float32).reshape(4, 1, 1)
  k_n, _ = m.head_params(kernel, np.zeros((4, 1), np.float32))
  np.testing.assert_allclose(k_n[0, 0, 0], (m.weights[0] * [1, 3, 2]).sum(),
                             rtol=1e-6)


def test_bad_enrollment_names_annotator():
  with pytest.raises(enroll.EnrollmentError,
                     match="annotator 'T7' has no enrollment clips"):
    enroll.pack([[1, 2], []], [np.zeros((2, 2)), np.zeros((0, 2))],
                names=["T1", "T7"])
  with pytest.raises(enroll.EnrollmentError, match="'T1' has a non-finite"):
    enroll.pack([[1]], [np.array([[np.nan, 0.0]])], names=["T1"])
  with pytest.raises(ValueError, match="unknown score"):
    enroll.score_heads(*_inputs(), score="kendall")


@pytest.mark.parametrize("score", ["loglik", "agreement"])
def test_categorical_scores_equal_loop(score):
  z, _, mask, kernel, bias = _inputs(d=4, seed=5)
  rng = np.random.default_rng(5)
  cls = rng.integers(0, 4, mask.shape)
  y = np.where(np.eye(4)[cls] > 0, 1.0, -1.0).astype(np.float32)  # one-hot
  got = np.asarray(enroll.score_heads(z, y, mask, kernel, bias, score,
                                      head_chunk=16))
  want = np.zeros_like(got)
  for n in range(len(z)):
    m = mask[n] > 0
    for a in range(len(kernel)):
      logits = np.einsum("kdh,dh->kd", z[n][m], kernel[a]) + bias[a]
      logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
      if score == "loglik":
        want[n, a] = logp[np.arange(m.sum()), cls[n][m]].mean()
      else:
        want[n, a] = (logits.argmax(1) == cls[n][m]).mean()
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_constant_ratings_pick_the_head_nearest_the_constant():
  """An annotator who gives every enrollment clip the same valence leaves
  CCC undefined there; the head closest to that value (RMSE) must win, not
  an arbitrary one, and the mapping flags the dimension."""
  rng = np.random.default_rng(3)
  h, a = 6, 30
  z = rng.normal(size=(1, 10, 2, h)).astype(np.float32)
  kernel = (0.3 * rng.normal(size=(a, 2, h))).astype(np.float32)
  kernel[:, 0] = kernel[0, 0]  # activation: every head identical
  bias = np.zeros((a, 2), np.float32)
  bias[:, 1] = np.linspace(-0.9, 0.9, a)
  kernel[:, 1] = 0.0  # valence: flat heads at different levels
  y = np.zeros((1, 10, 2), np.float32)
  y[0, :, 0] = np.einsum("kh,h->k", z[0, :, 0], kernel[0, 0])
  y[0, :, 1] = 0.5  # constant
  clips = [np.arange(10)]
  m = enroll.enroll(z[0], clips, [y[0]], kernel, bias)
  assert m.heads[0, 0] == np.argmin(np.abs(bias[:, 1] - 0.5))
  assert m.constant.tolist() == [[False, True]]
  scores = np.asarray(enroll.score_heads(z, y, np.ones((1, 10)), kernel,
                                         bias))
  assert np.isfinite(scores).all() and scores.std() > 0.01


def test_padded_shapes_bound_the_compile_count():
  """The protocol calls enrollment for every (fold, k) with a different
  number of annotators and clips; padding to powers of two keeps it to a
  few compilations."""
  from annojax import baselines  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  kernel = rng.normal(size=(20, 2, 8)).astype(np.float32)
  bias = np.zeros((20, 2), np.float32)
  before = enroll._score_all._cache_size()  # pylint: disable=protected-access
  ft_before = baselines._finetune._cache_size()  # pylint: disable=protected-access
  for n in range(9, 16):  # -> 16 annotators
    for k in range(17, 32, 3):  # -> 32 clips
      z = rng.normal(size=(n, k, 2, 8)).astype(np.float32)
      y = rng.uniform(-1, 1, (n, k, 2)).astype(np.float32)
      mask = np.ones((n, k), np.float32)
      s = enroll.score_heads(z, y, mask, kernel, bias)
      assert s.shape == (n, 20)
      kf, bf = baselines.finetune(kernel[:n], bias[:n], z, y, mask, 3, 1e-2,
                                  1.0)
      assert kf.shape == (n, 2, 8) and bf.shape == (n, 2)
  assert enroll._score_all._cache_size() - before <= 1  # pylint: disable=protected-access
  assert baselines._finetune._cache_size() - ft_before <= 1  # pylint: disable=protected-access
  # Padding changes no score.
  z, y = z[:3, :5], y[:3, :5]
  mask = np.ones((3, 5), np.float32)
  np.testing.assert_allclose(
      np.asarray(enroll.score_heads(z, y, mask, kernel, bias, pad=True)),
      np.asarray(enroll.score_heads(z, y, mask, kernel, bias, pad=False)),
      rtol=1e-5, atol=1e-6)


def test_chunks_are_sized_to_the_device(monkeypatch):
  """head_chunk = 0: at most 1,024 heads per chunk on a CPU (as before);
  on an accelerator every head in one chunk where its memory holds the
  chunk's [N, chunk, K, D] predictions, else as many as it holds."""
  assert enroll.chunk_size(1000, 32, 2, 20000, 0) == enroll.chunk_size(
      1000, 32, 2, 20000, 1024) == 1000  # 20 even chunks of <= 1,024
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  monkeypatch.setattr(enroll, "device_budget", lambda: 2 ** 31)
  assert enroll.chunk_size(1000, 32, 2, 20000, 0) == 20000
  monkeypatch.setattr(enroll, "device_budget", lambda: 64_000_000)
  chunk = enroll.chunk_size(1000, 32, 2, 20000, 0)
  assert chunk * 1000 * 32 * 2 <= 64_000_000 and chunk >= 900
  assert enroll.chunk_size(1000, 32, 2, 20000, 512) == 500  # a cap holds


def test_bfloat16_scores_choose_the_same_heads():
  """precision="bfloat16" (matmul inputs, float32 accumulation and CCC
  statistics): every score within 0.01 of float32's (sum of 2 CCCs), the
  same planted head chosen for every annotator; with random ratings a
  choice differs only where float32's margin is below the error."""
  rng = np.random.default_rng(0)
  a, n, k, d, h = 500, 64, 30, 2, 256
  kernel = rng.normal(0, h ** -0.5, (a, d, h)).astype(np.float32)
  bias = rng.normal(0, 0.1, (a, d)).astype(np.float32)
  z = np.maximum(rng.normal(size=(n, k, d, h)), 0).astype(np.float32)
  planted = rng.integers(0, a, n)
  y = (np.einsum("nkdh,ndh->nkd", z, kernel[planted])
       + bias[planted][:, None] + rng.normal(0, 0.3, (n, k, d)))
  mask = np.ones((n, k), np.float32)
  for ratings in (y, rng.uniform(-1, 1, (n, k, d))):
    s32 = np.asarray(enroll.score_heads(z, ratings, mask, kernel, bias))
    s16 = np.asarray(enroll.score_heads(z, ratings, mask, kernel, bias,
                                        precision="bfloat16"))
    err = np.abs(s32 - s16).max()
    assert 0 < err < 0.01
    rows = np.arange(n)
    differ = s32.argmax(1) != s16.argmax(1)
    gap = s32[rows, s32.argmax(1)] - s32[rows, s16.argmax(1)]
    assert np.all(gap[differ] <= 2 * err)
  np.testing.assert_array_equal(
      np.asarray(enroll.score_heads(z, y, mask, kernel, bias,
                                    precision="bfloat16")).argmax(1), planted)
  with pytest.raises(ValueError, match="unknown precision"):
    enroll.score_heads(z, y, mask, kernel, bias, precision="int8")
