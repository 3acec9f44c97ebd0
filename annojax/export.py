"""The exported model: a self-contained Orbax bundle for enrollment/prediction.

  <workdir>/export/
    params/   Orbax (StandardSave) of the individual model's best params
    aggregate/  the consensus model's best params (dimensional bundles
              from format 4; what the blended enrollment rule starts from)
    info/     JSON: format version, dims, annotator ids (+ latent types for the
              synthetic corpus), embedding size, model config, where the
              features came from, the feature standardizer (mean, s.d. of
              the source training split; applied to every embedding that
              enters), and the training run it was exported from

`load(path)` rebuilds the network from `info` alone and restores the params:
no workdir, dataset or config file is needed, so a bundle can be copied to
another machine and used with `--mode=enroll` / `--mode=predict`.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from annojax import blend as blend_lib
from annojax import distributions
from annojax import enroll as enroll_lib
from annojax import losses
from annojax import models
from annojax import posterior
from annojax import rater_embeddings
from annojax import train
from annojax.data import pipeline
from annojax.data import prepare as prepare_lib
from annojax.protocol import rating_distributions
from annojax.protocol import source

# 2: adds the feature standardizer. Version-1 bundles (trained on raw
# features, no standardizer) still load. 3: the standardizer's clip
# (config.data.feature_clip; a version-2 bundle has none: not clipped) and
# the posterior's temperature and rating noise tuned on the source's
# held-out raters (older bundles: enroll's fixed defaults). 4: the consensus
# model, its typical scale and the blended rule's weights (blend.py), all
# learned on the source's held-out raters (older bundles: enroll's
# top-k rule only). 5: the annotator family (info.model.annotators:
# heads, lowrank or embedding, models.py; older bundles are heads) and, for
# the embedding families, info.family (the fit rule's rating noise).
FORMAT_VERSION = 5
READABLE_VERSIONS = (1, 2, 3, 4, 5)


@dataclasses.dataclass
class Bundle:
  info: dict
  graphdef: nnx.GraphDef
  params: dict
  aggregate: tuple | None = None  # (graphdef, params) of the consensus

  @property
  def blendable(self) -> bool:
    """Has the consensus model and the blend (format 4, dimensional)."""
    return self.aggregate is not None and "blend" in self.info

  @property
  def dims(self) -> tuple[str, ...]:
    return tuple(self.info["dims"])

  @property
  def categorical(self) -> bool:
    return self.info.get("task") == "categorical"

  @property
  def annotator_ids(self) -> np.ndarray:
    return np.asarray(self.info["annotator_ids"], dtype=str)

  def features(self, embeddings: np.ndarray) -> np.ndarray:
    """Trunk features z [C, D, H] of clip embeddings [C, F]."""
    return train.trunk_features(self.graphdef, self.params,
                                self._standardized(embeddings))

  @property
  def family(self) -> str:
    """How the bundle models annotators (models.FAMILIES)."""
    return self.info["model"].get("annotators", "heads")

  @property
  def linear(self) -> bool:
    """Its annotators are linear heads (heads, lowrank): every heads rule
    (top_k, blended, suggestions) applies."""
    return self.family in models.LINEAR

  def heads(self) -> tuple[np.ndarray, np.ndarray]:
    return train.head_arrays(self.params)

  def distribution(self, z) -> distributions.Mixture | None:
    """Each clip's rating distribution (trunk features z [C, D, H]): the
    KDE of every head's prediction (rating_distributions.heads_kde); None
    for bundles without it (exported before it, categorical, or of the
    embedding decoder)."""
    d = self.info.get("distribution")
    if d is None:
      return None
    return distributions.Mixture.heads(z, *self.heads(), d[
        "annotator_weights"], d["width"], d["shrink"])

  def scores(self, z, clip_lists, rating_lists, score, names):
    """(scores [N, A], clips, ratings, mask): every pre-trained annotator
    scored on each new annotator's enrollment clips, one batched call."""
    if self.linear:
      return enroll_lib.enrollment_scores(z, clip_lists, rating_lists,
                                          *self.heads(), score=score,
                                          names=names)
    clips, ratings, mask = enroll_lib.pack(clip_lists, rating_lists, names)
    return rater_embeddings.score_embeddings(
        self.params["heads"], z[clips], ratings, mask, score
    ), clips, ratings, mask

  def fit(self, z_enroll, ratings, mask) -> np.ndarray:
    """The fit rule's embeddings [N, r] (embedding families)."""
    heads, fam = self.params["heads"], self.info["family"]
    return rater_embeddings.fit(
        heads, z_enroll, ratings, mask,
        rater_embeddings.fit_prior(rater_embeddings.table(heads)),
        fam["noise"], fam["fit_steps"], fam["fit_lr"])

  def _standardized(self, embeddings: np.ndarray) -> np.ndarray:
    """The embeddings standardised as prepare did; the last array's result
    is kept, so the trunk and the consensus model of one call standardise
    (and warn about clipped values) once."""
    f = self.info["embedding_dim"]
    if embeddings.ndim != 2 or embeddings.shape[1] != f:
      raise ValueError(f"embeddings have shape {embeddings.shape}; this "
                       f"model was trained on {f}-d embeddings "
                       f"({self.info['features']})")
    x = np.ascontiguousarray(embeddings, np.float32)
    key = (x.shape, hashlib.sha1(x.view(np.uint8)).hexdigest())
    last = self.__dict__.get("_last_standardized")
    if last is not None and last[0] == key:
      return last[1]
    std = self.info.get("standardizer") or {}
    out = prepare_lib.apply_standardizer(x, std.get("mean"), std.get("std"),
                                         std.get("clip"),
                                         "embeddings to predict")
    self.__dict__["_last_standardized"] = (key, out)
    return out

  def consensus(self, embeddings: np.ndarray) -> np.ndarray:
    """The consensus model's output [C, D] on clip embeddings [C, F]."""
    return train.consensus_outputs(*self.aggregate,
                                   self._standardized(embeddings))

  def blend(self) -> tuple[blend_lib.Blend, blend_lib.Heads]:
    """The blended rule's weights and what it needs of the heads."""
    kernel, bias = self.heads()
    b, post = self.info["blend"], self.info["posterior"]
    return blend_lib.Blend.from_json(b["weights"]), blend_lib.Heads(
        kernel=kernel, bias=bias,
        prior=posterior.fit_prior(kernel, bias, b["eb_rank"]),
        temperature=post["temperature"], noise=post["noise"],
        rescale=(np.asarray(b["rescale"]["a"]), np.asarray(b["rescale"]["c"])),
        score=b["score"], shrink=b["calibration_shrink"])


def _info(config, meta: pipeline.Meta, workdir: str, family: str) -> dict:
  return {
      "format_version": FORMAT_VERSION,
      "dims": list(meta.dims),
      "annotator_ids": list(meta.annotator_ids),
      "annotator_types": (None if meta.annotator_types is None
                          else np.asarray(meta.annotator_types).tolist()),
      "embedding_dim": meta.embedding_dim,
      # categorical: dims are classes and the heads output their logits.
      "task": ("categorical" if config.train.loss in losses.CATEGORICAL
               else "dimensional"),
      "model": {"hidden": config.model.hidden,
                "dropout": config.model.dropout,
                "annotators": family,
                **{k: config.model.get(k) for k in ("embedding_dim",
                                                    "decoder_hidden")}},
      "features": {"corpus": config.data.corpus,
                   "embedding_dim": meta.embedding_dim},
      "ratings_scale": "[-1, 1] (min-max rescaled from the corpus scale)",
      # The source corpus's own scale: what enroll reads ratings on unless
      # config.predict.scale says otherwise (None: not recorded).
      "source_scale": None if meta.scale is None else list(meta.scale),
      "standardizer": (None if meta.feature_mean is None else {
          "mean": meta.feature_mean.tolist(),
          "std": meta.feature_std.tolist(),
          "clip": meta.feature_clip}),
      "trained_in": os.path.abspath(workdir),
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
  }


def export(config, workdir: str, prepared, path: str | None = None,
           kind: str = "individual") -> str:
  """Writes the bundle of the trained individual model (or of a family's
  model trained beside it: kind = its name); returns its path."""
  path = os.path.abspath(path or os.path.join(workdir, "export"))
  meta = pipeline.read_meta(prepared.source)
  graphdef, params = train.load_best(config, workdir, kind, prepared)
  info = _info(config, meta, workdir, models.family_of(config, kind))
  items = {"params": ocp.args.StandardSave(params)}
  family, dimensional = info["model"]["annotators"], (
      info["task"] == "dimensional")
  if dimensional:
    held = source.source_held_out(prepared)
    z_held = train.trunk_features(graphdef, params, held["embeddings"])
  if family in models.EMBEDDING_FAMILIES and dimensional:
    # The fit rule's rating noise, as the protocol sets it.
    info["family"] = {
        "noise": rater_embeddings.residual_noise(
            params["heads"], z_held, held["pair_clip"],
            held["pair_annotator"], held["pair_values"]),
        "fit_steps": int(config.eval.embedding_fit_steps),
        "fit_lr": float(config.eval.embedding_fit_lr),
        "noise_from": "residual of the source's held-out ratings around "
                      "their raters' own embeddings"}
  if family in models.LINEAR and dimensional:
    # As the protocol tunes seed 0's model (the embedding decoder has no
    # linear heads to tune a posterior or blend for); what the protocol
    # already tuned for these models is reused, not computed again.
    kernel, bias = train.head_arrays(params)
    agg, done = None, {}
    if os.path.isdir(train.model_dir(workdir, "aggregate")):
      agg = train.load_best(config, workdir, "aggregate", prepared)
      if kind == "individual":
        done = source.load_tuning(workdir, source.tuning_key(
            config, prepared, params, agg[1]))
    if done:
      logging.info("export: the source tuning of seed 0's protocol reused "
                   "(%s: %s)", source.TUNING, ", ".join(done))
    tuned = (posterior.Tuned(temperature=done["posterior"]["temperature"],
                             noise=done["posterior"]["noise"],
                             temperature_scores={},
                             annotators=done["posterior"]["annotators"])
             if "posterior" in done else
             source.tune_on_source(config, held, z_held, kernel, bias,
                                   seed=0))
    info["posterior"] = {
        "temperature": tuned.temperature, "noise": tuned.noise,
        "tuned_on": f"{tuned.annotators} source held-out annotators"}
    info["distribution"] = _distribution_info(config, prepared, held, z_held,
                                              kernel, bias,
                                              done.get("heads_kde"))
    if agg is not None:
      items["aggregate"] = ocp.args.StandardSave(agg[1])
      info["blend"] = _blend_info(config, held, z_held, agg, kernel, bias,
                                  tuned, done)
  items["info"] = ocp.args.JsonSave(info)
  ckptr = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
  ckptr.save(path, args=ocp.args.Composite(**items), force=True)
  ckptr.close()
  return path


def _distribution_info(config, prepared, held, z_held, kernel, bias,
                       done: dict | None = None) -> dict:
  """The rating distribution's KDE of heads as the protocol sets it up
  (protocol/rating_distributions.py: weights, and the width with the
  lowest NLL of the source's held-out ratings; `done`: the width and shrink
  the protocol chose for these heads)."""
  cfg = config.eval.distribution
  train_table = pipeline.load_table(prepared.source, "train")
  weights = distributions.annotator_weights(
      cfg.weights, train_table.pair_annotator, len(kernel))
  tune = rating_distributions.source_tune_clips(held, cfg)
  got = done or rating_distributions.tune_heads(
      cfg, tune, z_held, kernel, bias, weights,
      distributions.detect_scale(train_table.pair_values))
  got = {k: np.asarray(got[k]) for k in ("width", "shrink")}
  return {"width": got["width"].tolist(), "shrink": got["shrink"].tolist(),
          "weights": cfg.weights, "annotator_weights": weights.tolist(),
          "tuned_on": f"{len(tune.clips)} source held-out clips"}


def _blend_info(config, held, z_held, aggregate, kernel, bias, tuned,
                done: dict) -> dict:
  """The blended rule as the protocol learns it for seed 0 (source held-out
  raters): the consensus's typical scale, the weights per enrollment size,
  and the settings its rules use (`done`: what the protocol learnt for
  these models)."""
  ev = config.eval
  if "blend" in done:
    weights, rescale = done["blend"], done["rescale"]
  else:
    agg_held = train.consensus_outputs(*aggregate, held["embeddings"])
    rescale = source.typical_scale(source.packed_by_annotator(
        held["pair_clip"], held["pair_annotator"], held["pair_values"]),
                                   agg_held)
    heads = source.blend_heads(config, kernel, bias,
                               posterior.fit_prior(kernel, bias, ev.eb_rank),
                               tuned, rescale)
    weights = source.tune_blend(config, held, z_held, agg_held, heads,
                                seed=0).to_json()
    rescale = {"a": rescale[0].tolist(), "c": rescale[1].tolist()}
  return {"weights": weights, "rescale": rescale,
          "eb_rank": int(ev.eb_rank), "score": ev.score,
          "calibration_shrink": float(ev.calibration_shrink)}


def load(path: str) -> Bundle:
  """Restores a bundle written by `export` (nothing else needed)."""
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"no exported model at {path} (run "
                            "--config.mode=export or all first)")
  if not os.path.isdir(os.path.join(path, "info")):
    inside = os.path.join(path, "export")
    raise FileNotFoundError(
        f"{path} is not an exported bundle (no info item); "
        + (f"it is a workdir: use its bundle, {inside} "
           "(config.predict.bundle)" if os.path.isdir(inside) else
           "give the directory --mode=export wrote (<workdir>/export)"))
  ckptr = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
  info = ckptr.restore(path, args=ocp.args.Composite(
      info=ocp.args.JsonRestore())).info
  if info.get("format_version") not in READABLE_VERSIONS:
    raise ValueError(f"{path}: bundle format {info.get('format_version')} "
                     f"is not one this annojax reads {READABLE_VERSIONS}")
  graphdef, params = _restore(ckptr, path, info, "params",
                              len(info["annotator_ids"]),
                              info["model"].get("annotators", "heads"))
  aggregate = None
  if "blend" in info:  # format 4, dimensional: the consensus model too
    aggregate = _restore(ckptr, path, info, "aggregate", 1, "heads")
  ckptr.close()
  return Bundle(info=info, graphdef=graphdef, params=params,
                aggregate=aggregate)


def _restore(ckptr, path, info, item: str, heads: int, family: str):
  """(graphdef, host params) of a bundle's model `item` with `heads`
  annotators of a family, rebuilt from info alone."""
  model = models.Model(info["embedding_dim"], len(info["dims"]), heads,
                       hidden=info["model"]["hidden"],
                       dropout=info["model"]["dropout"], family=family,
                       **models.family_options(info["model"]),
                       rngs=nnx.Rngs(params=0))
  graphdef, state = nnx.split(model)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                          nnx.to_pure_dict(state))
  params = getattr(ckptr.restore(path, args=ocp.args.Composite(
      **{item: ocp.args.StandardRestore(abstract)})), item)
  return graphdef, jax.device_get(params)
