"""A simulated annotator population: the embedded default corpus.

Clips have a latent emotional state h (L-dim). Their acoustic embedding is a
noisy linear read-out of h. Annotators belong to a few latent *perception
types*; a type decides which latent directions drive its activation/valence
percepts, its bias and its scale. Each annotator is its type plus their own
idiosyncrasy: their own cue weights (`annotator_jitter` around the type's
directions), bias (`bias_spread`), scale (`scale_spread`, log-normal) and
rating noise (drawn from `noise_range` per annotator), and rates a sparse
subset of clips. The default is calibrated to real raters (bench/realism.py:
agreement with the leave-one-out consensus, best-peer agreement, bias and
scale spread of NSC and WHiSER); configs/tiny.py keeps cleaner types for
tests of the machinery.

`make_pair` returns a large *source* population (for pre-training) and a
*target* corpus with a domain shift in the embeddings and NEW annotators drawn
from the same types. Ground-truth types are kept for both, so tests can check
that enrollment maps a new annotator to a same-type pre-trained one.
Everything is a pure function of the config's seed.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from annojax.corpora import corpus as corpus_lib
from annojax.corpora import ratings as ratings_lib

DIMS = ("activation", "valence")
# The scale the simulated ratings are given on (as MSP-Podcast's 7-point
# scales; with likert_points = 7 its points are the integers 1..7): what a
# bundle trained on the synthetic population records as its source scale.
SCALE = (1.0, 7.0)
# Bump whenever the same config generates different data: it enters the
# dataset fingerprint, so a workdir never reuses an older simulator's data.
# 2: raters drawn slot by slot (sample_raters) instead of Gumbel top-k.
# 3: individual bias, scale and noise (bias_spread, scale_spread, noise per
#    annotator), calibrated default.
VERSION = "3"


@dataclasses.dataclass(frozen=True)
class _World:
  mixing: np.ndarray        # [L, F] latent -> embedding
  directions: np.ndarray    # [T, D, L] per-type perception directions
  bias: np.ndarray          # [T, D]
  scale: np.ndarray         # [T, D]


def _make_world(cfg, rng) -> _World:
  t, d, l, f = cfg.num_types, len(DIMS), cfg.latent_dim, cfg.embedding_dim
  mixing = rng.normal(size=(l, f)) / np.sqrt(l)
  base = np.zeros((d, l))
  base[np.arange(d), np.arange(d)] = 1.0  # consensus: latent 0 = act, 1 = val
  directions = base[None] + cfg.type_spread * rng.normal(size=(t, d, l))
  directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
  bias = rng.uniform(-cfg.type_bias, cfg.type_bias, size=(t, d))
  scale = rng.uniform(*cfg.scale_range, size=(t, d))
  return _World(mixing, directions, bias, scale)


def _assign(rng, num_clips, num_annotators, raters_per_clip, spread):
  """Each clip gets `raters_per_clip` distinct raters, busy ones more often."""
  activity = rng.lognormal(0.0, spread, size=num_annotators)
  return sample_raters(rng, num_clips, activity, raters_per_clip)


def sample_raters(rng, num_clips: int, weights: np.ndarray,
                  raters_per_clip: int) -> np.ndarray:
  """[num_clips, raters_per_clip] distinct rater indices per clip.

  Weighted sampling without replacement, one rater slot at a time: a slot is
  drawn with probability proportional to `weights` and redrawn where it
  repeats a rater already on its clip, i.e. drawn in proportion to the
  weights of the raters not yet on the clip (the Plackett-Luce law of a
  Gumbel top-k). Memory O(clips x raters_per_clip), time
  O(clips x raters_per_clip x log raters), however large the population.
  """
  num_raters = len(weights)
  if not 0 < raters_per_clip <= num_raters:
    raise ValueError(f"raters_per_clip={raters_per_clip} must be between 1 "
                     f"and the number of annotators ({num_raters})")
  cdf = np.cumsum(weights, dtype=np.float64)
  cdf /= cdf[-1]
  raters = np.empty((num_clips, raters_per_clip), np.int64)
  for slot in range(raters_per_clip):
    todo = np.arange(num_clips)
    while len(todo):
      draw = np.minimum(np.searchsorted(cdf, rng.random(len(todo)),
                                        side="right"), num_raters - 1)
      raters[todo, slot] = draw
      todo = todo[(raters[todo, :slot] == draw[:, None]).any(1)]
  return raters


def _corpus(name, cfg, world, rng, *, num_clips, num_speakers, num_annotators,
            raters_per_clip, id_prefix, shift):
  l = cfg.latent_dim
  speaker_of_clip = rng.integers(num_speakers, size=num_clips)
  speaker_offset = 0.3 * rng.normal(size=(num_speakers, l))
  h = rng.normal(size=(num_clips, l)) + speaker_offset[speaker_of_clip]
  x = h @ world.mixing
  if shift:  # domain shift: another recording chain / language / elicitation
    f = x.shape[1]
    x = x @ (np.eye(f) + shift * rng.normal(size=(f, f)) / np.sqrt(f))
    x += shift * rng.normal(size=f)
  x += cfg.embedding_noise * rng.normal(size=x.shape)

  types = rng.integers(cfg.num_types, size=num_annotators)
  dirs = world.directions[types] + cfg.annotator_jitter * rng.normal(
      size=(num_annotators,) + world.directions.shape[1:])
  bias = world.bias[types] + cfg.bias_spread * rng.normal(
      size=(num_annotators, len(DIMS)))
  scale = world.scale[types] * np.exp(cfg.scale_spread * rng.normal(
      size=(num_annotators, len(DIMS))))
  noise = rng.uniform(*cfg.noise_range, size=num_annotators)

  raters = _assign(rng, num_clips, num_annotators, raters_per_clip,
                   cfg.activity_spread)
  clip_idx = np.repeat(np.arange(num_clips), raters_per_clip)
  ann_idx = raters.reshape(-1)
  percept = np.einsum("nl,ndl->nd", h[clip_idx], dirs[ann_idx])
  # The noise is perceptual (inside the annotator's scale and squashing),
  # so ratings stay on the scale without piling up at its ends.
  percept += noise[ann_idx][:, None] * rng.normal(size=percept.shape)
  values = np.tanh(scale[ann_idx] * percept + bias[ann_idx])
  values = np.clip(values, -1.0, 1.0)
  if cfg.likert_points:  # ratings come on a discrete scale, as in real corpora
    steps = cfg.likert_points - 1
    values = np.round((values + 1.0) / 2.0 * steps) / steps * 2.0 - 1.0

  clip_ids = np.array([f"{name}_{i:06d}" for i in range(num_clips)])
  speakers = np.array([f"{name}_spk{s:03d}" for s in speaker_of_clip])
  ann_ids = np.array([f"{id_prefix}{i:05d}" for i in range(num_annotators)])
  table = ratings_lib.make_ratings(
      clip_ids[clip_idx], ann_ids[ann_idx], speakers[clip_idx], values, DIMS,
      source=f"synthetic:{name}", scale=SCALE)
  return corpus_lib.Corpus(
      name=name, clips=clip_ids, speakers=speakers,
      embeddings=x.astype(np.float32), ratings=table,
      annotator_types={a: int(k) for a, k in zip(ann_ids, types)})


def make_pair(cfg: ml_collections.ConfigDict
              ) -> tuple[corpus_lib.Corpus, corpus_lib.Corpus]:
  """Returns (source population, target corpus with new annotators)."""
  rng = np.random.default_rng(cfg.seed)
  world = _make_world(cfg, rng)
  source = _corpus("synthetic_source", cfg, world, rng,
                   num_clips=cfg.source.num_clips,
                   num_speakers=cfg.source.num_speakers,
                   num_annotators=cfg.source.num_annotators,
                   raters_per_clip=cfg.source.raters_per_clip,
                   id_prefix="S", shift=0.0)
  target = _corpus("synthetic_target", cfg, world, rng,
                   num_clips=cfg.target.num_clips,
                   num_speakers=cfg.target.num_speakers,
                   num_annotators=cfg.target.num_annotators,
                   raters_per_clip=cfg.target.raters_per_clip,
                   id_prefix="T", shift=cfg.target.domain_shift)
  return source, target


def default_config() -> ml_collections.ConfigDict:
  """The embedded default population (>= 2,000 annotators)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_types = 6
  c.latent_dim = 8
  c.embedding_dim = 64
  # How far perception types deviate from the consensus directions, and
  # the range of each type's bias per dimension (on [-1, 1]).
  c.type_spread = 0.2
  c.type_bias = 0.2
  # Each type's scale (tanh gain) per dimension, uniform in this range.
  c.scale_range = (0.15, 0.3)
  # An annotator's own deviation from their type: cue weights (added to the
  # type's unit directions), bias (on [-1, 1]), scale (log-normal sigma)
  # and perceptual noise (s.d. in latent units, added to the percept before
  # scale and tanh; uniform in the range, per annotator). Calibrated so the
  # label statistics resemble NSC's and WHiSER's (bench/realism.py).
  c.annotator_jitter = 0.3
  c.bias_spread = 0.12
  c.scale_spread = 0.4
  c.noise_range = (0.9, 1.3)
  c.embedding_noise = 0.3
  # Log-normal sigma of how much more some annotators rate than others.
  c.activity_spread = 0.3
  # 0 = continuous ratings; 7 = a 1..7 Likert scale rescaled to [-1, 1].
  c.likert_points = 7
  c.source = ml_collections.ConfigDict(dict(
      num_clips=14000, num_speakers=140, num_annotators=2000,
      raters_per_clip=10))
  c.target = ml_collections.ConfigDict(dict(
      num_clips=1000, num_speakers=10, num_annotators=40, raters_per_clip=6,
      domain_shift=0.3))
  return c
