"""The embedded synthetic population."""

import numpy as np

from annojax.corpora import synthetic


def test_default_population_is_large_and_sparse():
  cfg = synthetic.default_config()
  assert cfg.source.num_annotators >= 2000
  src, tgt = synthetic.make_pair(cfg)
  n_ann = len(np.unique(src.ratings.annotator))
  assert n_ann >= 1900  # (nearly) every simulated annotator rated something
  # Sparse: each clip rated by raters_per_clip of >= 2,000 annotators.
  _, per_clip = np.unique(src.ratings.clip, return_counts=True)
  assert (per_clip == cfg.source.raters_per_clip).all()
  assert set(np.unique(tgt.ratings.annotator)).isdisjoint(
      src.ratings.annotator)


def test_deterministic_and_seeded(tiny_config):
  cfg = tiny_config.data.synthetic
  a, _ = synthetic.make_pair(cfg)
  b, _ = synthetic.make_pair(cfg)
  np.testing.assert_array_equal(a.embeddings, b.embeddings)
  np.testing.assert_array_equal(a.ratings.values, b.ratings.values)
  cfg.seed = 1
  c, _ = synthetic.make_pair(cfg)
  assert not np.allclose(a.embeddings, c.embeddings)


def test_ratings_on_likert_grid_and_types_kept(tiny_config):
  cfg = tiny_config.data.synthetic
  src, tgt = synthetic.make_pair(cfg)
  v = src.ratings.values
  assert v.min() >= -1 and v.max() <= 1
  grid = (v + 1) / 2 * (cfg.likert_points - 1)
  np.testing.assert_allclose(grid, np.round(grid), atol=1e-5)
  for corpus in (src, tgt):
    types = set(corpus.annotator_types.values())
    assert types <= set(range(cfg.num_types))
    assert set(corpus.annotator_types) >= set(corpus.ratings.annotator)


def test_same_type_annotators_agree_more(tiny_config):
  """Ground truth is meaningful: same-type raters agree more on shared clips."""
  cfg = tiny_config.data.synthetic
  cfg.source.raters_per_clip = 12
  src, _ = synthetic.make_pair(cfg)
  r = src.ratings
  order = np.argsort(r.clip, kind="stable")
  clips, ann, vals = r.clip[order], r.annotator[order], r.values[order]
  same, diff = [], []
  k = cfg.source.raters_per_clip
  for s in range(0, len(clips), k):
    t = [src.annotator_types[a] for a in ann[s:s + k]]
    for i in range(k):
      for j in range(i + 1, k):
        d = np.abs(vals[s + i] - vals[s + j]).sum()
        (same if t[i] == t[j] else diff).append(d)
  assert np.mean(same) < 0.8 * np.mean(diff)


def test_target_has_domain_shift(tiny_config):
  cfg = tiny_config.data.synthetic
  # Enough speakers that their offsets average out of the mean (with 10,
  # speaker sampling alone moves it about half as far as the shift).
  cfg.target.num_speakers, cfg.target.num_clips = 100, 2000
  src, tgt = synthetic.make_pair(cfg)
  shift = np.abs(src.embeddings.mean(0) - tgt.embeddings.mean(0)).mean()
  cfg.target.domain_shift = 0.0
  _, tgt0 = synthetic.make_pair(cfg)
  shift0 = np.abs(src.embeddings.mean(0) - tgt0.embeddings.mean(0)).mean()
  assert shift > 2 * shift0


def test_rater_sampling_follows_weights_without_replacement():
  """Each slot is drawn in proportion to the weights of the raters not yet
  on the clip: P(first i, second j) = w_i / W * w_j / (W - w_i)."""
  w = np.array([1.0, 2.0, 3.0, 4.0])
  raters = synthetic.sample_raters(np.random.default_rng(0), 200_000, w, 2)
  assert raters.shape == (200_000, 2)
  assert (raters[:, 0] != raters[:, 1]).all()
  freq = np.zeros((4, 4))
  np.add.at(freq, (raters[:, 0], raters[:, 1]), 1.0 / len(raters))
  exact = w[:, None] / w.sum() * w[None, :] / (w.sum() - w[:, None])
  np.fill_diagonal(exact, 0.0)
  np.testing.assert_allclose(freq, exact, atol=4e-3)
  # Every rater of a full panel appears once per clip.
  full = synthetic.sample_raters(np.random.default_rng(1), 500, w, 4)
  np.testing.assert_array_equal(np.sort(full, 1), np.tile(np.arange(4),
                                                          (500, 1)))


def test_generator_memory_is_linear_in_ratings(tiny_config):
  """No clips x annotators array: 4,000 clips x 100,000 annotators need
  >= 800 MB for one 1,024-clip chunk of Gumbel keys; the generator's traced
  peak stays near its O(ratings + annotators) tables."""
  import tracemalloc
  cfg = tiny_config.data.synthetic
  cfg.source.num_clips, cfg.source.num_annotators = 4000, 100_000
  tracemalloc.start()
  src, _ = synthetic.make_pair(cfg)
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  assert len(src.ratings) == 4000 * cfg.source.raters_per_clip
  assert peak < 150e6, peak


def test_default_raters_resemble_real_ones():
  """Calibrated to real raters (bench/realism.py): agreement with the
  leave-one-out consensus as on NSC (.30/.22) and WHiSER (.32/.29); bias
  and scale spread as real; ratings rarely at the scale's ends (real: 2-3%);
  the best peer among the target's ~37 far below the uncalibrated
  simulator's .91 (same-type twins)."""
  from annojax import label_stats  # pylint: disable=g-import-not-at-top
  src, tgt = synthetic.make_pair(synthetic.default_config())
  agree = label_stats.agreement(src.ratings, 30)
  peer = label_stats.best_peer(tgt.ratings)
  assert src.ratings.scale == synthetic.SCALE == (1.0, 7.0)
  half = 3.0  # bias and scale spreads are on the corpus's 1-7 scale
  for d in synthetic.DIMS:
    assert 0.2 <= agree[d]["ccc_mean"] <= 0.4, (d, agree[d])
    assert 0.3 <= agree[d]["pearson_mean"] <= 0.5, (d, agree[d])
    assert 0.08 <= agree[d]["bias_sd"] / half <= 0.25, (d, agree[d])
    assert 0.06 <= agree[d]["scale_sd"] / half <= 0.2, (d, agree[d])
    assert peer[d]["best_ccc_mean"] < 0.75, (d, peer[d])
  v = src.ratings.values
  assert (np.abs(v) > 0.99).mean() < 0.08
  assert 0.3 <= v.std() <= 0.5  # real: .30-.44 on [-1, 1]
