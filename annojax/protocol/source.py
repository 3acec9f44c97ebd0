"""What the protocol learns from the SOURCE's held-out raters (never the
target): the mixture temperature and EB noise of a seed's heads, the
raters' typical scale (aggregate_rescaled) and the blended rule's weights
(blend.py)."""

from __future__ import annotations

import hashlib
import json
import os

from absl import logging
import jax
import numpy as np

from annojax import baselines
from annojax import blend
from annojax import enroll
from annojax import posterior
from annojax.data import pipeline
from annojax.data import prepare
from annojax.protocol import folds


# What seed 0's protocol tuned on the source (the exported model's), kept
# for export: <workdir>/eval/source_tuning.json.
TUNING = os.path.join("eval", "source_tuning.json")


def tuning_key(config, prepared, *models) -> str:
  """Identifies what source tuning depends on: the eval settings, the
  source dataset and the models' parameters (their bytes)."""
  h = hashlib.sha1(json.dumps(config.eval.to_dict(), sort_keys=True,
                              default=str).encode())
  h.update(os.path.abspath(prepared.source).encode())
  for params in models:
    for leaf in jax.tree.leaves(params):
      h.update(np.ascontiguousarray(leaf).tobytes())
  return h.hexdigest()


def save_tuning(workdir: str, key: str, parts: dict) -> None:
  prepare.write_json(os.path.join(workdir, TUNING), {"key": key, **parts})


def load_tuning(workdir: str, key: str) -> dict:
  """What the protocol tuned for these models ({} if it has not, or for
  other models or settings)."""
  path = os.path.join(workdir, TUNING)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    got = json.load(f)
  return got if got.pop("key", None) == key else {}


def source_held_out(prepared) -> dict:
  """The source's held-out material (validation and test clips: no model
  trained on them) as one set of arrays; read once per protocol."""
  parts = [pipeline.load_table(prepared.source, s)
           for s in ("validation", "test")]
  parts = [t for t in parts if len(t.pair_clip)]
  offsets = np.cumsum([0] + [len(t.clip_ids) for t in parts])
  return {"embeddings": np.concatenate([t.embeddings for t in parts]),
          "pair_clip": np.concatenate([t.pair_clip + o
                                       for t, o in zip(parts, offsets)]),
          "pair_annotator": np.concatenate([t.pair_annotator for t in parts]),
          "pair_values": np.concatenate([t.pair_values for t in parts])}


def tune_on_source(config, held_out, z_held, kernel, bias, seed
                   ) -> posterior.Tuned:
  """The mixture temperature / EB noise of this seed's model, set on the
  source's held-out annotators (never the target); z_held: the model's
  trunk on their clips."""
  ev = config.eval
  tuned = posterior.tune(
      z_held, held_out["pair_clip"], held_out["pair_annotator"],
      held_out["pair_values"], kernel, bias, ev.mixture_temperatures,
      ev.eb_noise, seed=seed, score=ev.score, head_chunk=ev.head_chunk)
  logging.info("seed %d: mixture temperature %g, EB noise %g (from %d "
               "source held-out annotators)", seed, tuned.temperature,
               tuned.noise, tuned.annotators)
  return tuned


def typical_scale(held_packed, agg_held):
  """(a, c) [D]: the consensus at the source held-out raters' typical scale
  (baselines.typical_calibration), from their ratings packed by rater
  (packed_by_annotator) and the consensus model on their clips."""
  cidx, y, mask = held_packed
  return baselines.typical_calibration(agg_held[cidx], y, mask)


def blend_heads(config, kernel, bias, prior, tuned: posterior.Tuned,
                rescale) -> blend.Heads:
  """What the blended rule needs of a seed's models (blend.Heads)."""
  ev = config.eval
  return blend.Heads(kernel=kernel, bias=bias, prior=prior,
                     temperature=tuned.temperature, noise=tuned.noise,
                     rescale=tuple(rescale), score=ev.score,
                     shrink=ev.calibration_shrink, head_chunk=ev.head_chunk)


def tune_blend(config, held_out, z_held, agg_held, heads: blend.Heads, seed
               ) -> blend.Blend:
  """The blended rule's weights per enrollment size, learned on the
  source's held-out annotators (never the target): z_held / agg_held, the
  individual model's trunk and the consensus model's output on their
  clips."""
  sizes = set(blend.SIZES) | {int(k) for k in config.eval.enroll_sizes
                              if k > 0}
  return blend.tune(heads, z_held, agg_held, held_out["pair_clip"],
                    held_out["pair_annotator"], held_out["pair_values"],
                    seed=seed, sizes=sorted(sizes))


def packed_by_annotator(pair_clip, pair_annotator, pair_values):
  """Every rating, one padded row per annotator (sorted ids; enroll.pack):
  (clip idx [N, K], ratings [N, K, D], mask [N, K]). With the aggregate at
  x = its predictions on those clips: calibrate(x, ..., shrink=0) puts it
  at each annotator's own mean and s.d. (oracle_calibrated, on the target:
  the ceiling of any per-annotator calibration, the same in every fold);
  typical_calibration at the raters' typical scale (aggregate_rescaled, on
  the source's held-out raters)."""
  rows = np.arange(len(pair_annotator))
  groups = folds.rows_by_annotator(rows, pair_annotator,
                                   np.unique(pair_annotator))
  return enroll.pack([pair_clip[g] for g in groups],
                     [pair_values[g] for g in groups])
