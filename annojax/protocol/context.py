"""What a protocol row sees: the target, a seed's models, a fold's test pairs
and its enrollment sets.

Work that several rows share is computed once, on first use, and kept:
a seed's trunk features, heads, aggregate predictions, posterior tuning and
prior; a fold's enrollment sets (drawn eagerly, so the random draws do not
depend on which rows are selected) and each set's head scores. A row is a
function of a Fold (and, for rows at each enrollment size, an Enrollment)
returning one prediction per test pair (rows.py).
"""

from __future__ import annotations

import functools
import os

import numpy as np

from annojax import adaptive
from annojax import baselines
from annojax import blend
from annojax import enroll
from annojax import losses
from annojax import models
from annojax import posterior
from annojax import rater_embeddings
from annojax import train
from annojax.data import pipeline
from annojax.protocol import folds
from annojax.protocol import source

cached = functools.cached_property


class Target:
  """The protocol's data, read once: the target's full table, its metadata,
  and (on first use) the source's held-out material."""

  def __init__(self, config, prepared):
    src_meta = pipeline.read_meta(prepared.source)
    self.meta = pipeline.read_meta(prepared.target)
    if src_meta.dims != self.meta.dims:
      raise ValueError(f"source dims {src_meta.dims} != target dims "
                       f"{self.meta.dims}")
    self.config, self.prepared = config, prepared
    self.table = pipeline.load_table(prepared.target, "full")
    # Categorical heads (CREMA-D): one column, the class distribution.
    self.categorical = config.train.loss in losses.CATEGORICAL
    self.columns = ("all",) if self.categorical else self.meta.dims
    types = (src_meta.annotator_types, self.meta.annotator_types)
    self.types = None if any(t is None for t in types) else types

  @cached
  def held_out(self) -> dict:
    return source.source_held_out(self.prepared)

  @cached
  def packed(self):
    """Every target rating, by rater (oracle_calibrated)."""
    t = self.table
    return source.packed_by_annotator(t.pair_clip, t.pair_annotator,
                                      t.pair_values)

  @cached
  def source_train(self):
    """The source's training split (the rating distributions' baselines)."""
    return pipeline.load_table(self.prepared.source, "train")

  @cached
  def held_packed(self):
    """Every source held-out rating, by rater (aggregate_rescaled)."""
    h = self.held_out
    return source.packed_by_annotator(h["pair_clip"], h["pair_annotator"],
                                      h["pair_values"])


def replicate_model(config, workdir, prepared, seed, kind):
  """Best (graphdef, params) of seed's model of a kind (must exist)."""
  d = os.path.join(train.model_dir(workdir, kind, seed), "checkpoints")
  if not os.path.isdir(d):
    extra = (f"; add {kind!r} to config.train.models" if kind not in
             config.train.models else "")
    raise FileNotFoundError(
        f"no {kind} model for seed {seed} at {d}: every evaluation seed "
        f"pre-trains its own models (config.eval.seeds="
        f"{config.eval.seeds}); run --mode=train (or all) first{extra}")
  return train.load_best(config, workdir, kind, prepared, seed)


def families(config) -> set[str]:
  """What the protocol's rows can read: "aggregate", "heads" (the
  individual model's linear heads: its family is heads or lowrank) and
  each annotator family with a model (models.FAMILIES: the individual
  model's, and any family trained beside it, config.train.models)."""
  main = models.family_of(config, "individual")
  out = {"aggregate", main} | {k for k in config.train.models
                               if k in models.FAMILIES}
  if main in models.LINEAR:
    out.add("heads")
  return out


def family_kind(config, family: str) -> str:
  """The model kind holding a family's model in a workdir."""
  return ("individual" if family in ("heads", models.family_of(
      config, "individual")) else family)


class Seed:
  """One replicate: its pre-trained models, and what rows share across its
  folds. z [C, D, H]: the individual model's trunk on every target clip;
  kernel / bias [A, D, H] / [A, D]: its heads; aggregate_clip [C, D]: the
  consensus model on every target clip; family(name): a model of an
  annotator family (models.FAMILIES), on first use."""

  def __init__(self, target: Target, workdir: str, seed: int):
    self.target, self.seed, self.workdir = target, seed, workdir
    self.config, self.ev = target.config, target.config.eval
    self._aggregate = replicate_model(self.config, workdir, target.prepared,
                                      seed, "aggregate")
    self.num_heads = pipeline.read_meta(
        target.prepared.source).num_annotators
    self.aggregate_clip = self.aggregate_on(target.table.embeddings)
    self._families = {}

  @cached
  def _individual(self):
    return replicate_model(self.config, self.workdir, self.target.prepared,
                           self.seed, "individual")

  @property
  def graphdef(self):
    return self._individual[0]

  @cached
  def tuning_key(self) -> str:
    """What the seed's source tuning depends on (source.tuning_key)."""
    return source.tuning_key(self.config, self.target.prepared, self.params,
                             self._aggregate[1])

  @property
  def params(self):
    return self._individual[1]

  @cached
  def z(self) -> np.ndarray:
    return train.trunk_features(self.graphdef, self.params,
                                self.target.table.embeddings)

  @cached
  def _heads(self):
    return train.head_arrays(self.params)

  @property
  def kernel(self) -> np.ndarray:
    return self._heads[0]

  @property
  def bias(self) -> np.ndarray:
    return self._heads[1]

  def family(self, name: str) -> Family:
    """The seed's model of an embedding family (lowrank, embedding)."""
    if name not in self._families:
      kind = family_kind(self.config, name)
      model = (self._individual if kind == "individual" else
               replicate_model(self.config, self.workdir,
                               self.target.prepared, self.seed, kind))
      self._families[name] = Family(self, *model,
                                    own=kind == "individual")
    return self._families[name]

  def aggregate_on(self, embeddings) -> np.ndarray:
    return train.consensus_outputs(*self._aggregate, embeddings)

  def aggregate_trunk(self, embeddings) -> np.ndarray:
    """The consensus model's trunk features [C, D, H] on embeddings."""
    return train.trunk_features(*self._aggregate, embeddings)

  @cached
  def mean_clip(self) -> np.ndarray:
    return np.einsum("cdh,dh->cd", self.z, self.kernel.mean(0)
                     ) + self.bias.mean(0)

  @cached
  def held_z(self) -> np.ndarray:
    """The trunk on the SOURCE's held-out clips [C_src, D, H]."""
    return train.trunk_features(self.graphdef, self.params,
                                self.target.held_out["embeddings"])

  @cached
  def held_aggregate(self) -> np.ndarray:
    """The consensus model on the SOURCE's held-out clips [C_src, D]."""
    return self.aggregate_on(self.target.held_out["embeddings"])

  @cached
  def tuned(self) -> posterior.Tuned:
    """Mixture temperature / EB noise, from the SOURCE's held-out raters."""
    return source.tune_on_source(self.config, self.target.held_out,
                                 self.held_z, self.kernel, self.bias,
                                 self.seed)

  @cached
  def blend_heads(self) -> blend.Heads:
    return source.blend_heads(self.config, self.kernel, self.bias,
                              self.prior, self.tuned, self.rescale)

  @cached
  def blend(self) -> blend.Blend:
    """The blended rule's weights, from the SOURCE's held-out raters."""
    return source.tune_blend(self.config, self.target.held_out, self.held_z,
                             self.held_aggregate, self.blend_heads,
                             self.seed)

  @cached
  def prior(self):
    return posterior.fit_prior(self.kernel, self.bias, self.ev.eb_rank)

  @cached
  def rescale(self):
    """(a, c): the aggregate at the source held-out raters' typical scale."""
    return source.typical_scale(self.target.held_packed,
                                self.held_aggregate)

  @cached
  def calibrated_all(self):
    """(a, c) per target annotator: the aggregate at their mean and s.d.
    over ALL their ratings (oracle_calibrated)."""
    cidx, y_all, m_all = self.target.packed
    return baselines.calibrate(self.aggregate_clip[cidx], y_all, m_all,
                               shrink=0.0)

  @cached
  def head_predictions(self):
    """Every head on every target clip [C, A, D] (adaptive choice)."""
    return adaptive.head_predictions(self.z, self.kernel, self.bias,
                                     self.target.categorical)

  @property
  def adaptive_temperature(self) -> float:
    # Categorical heads scored by log-likelihood: T = 1 is Bayes' rule
    # (adaptive.py); nothing is tuned for them.
    return 1.0 if self.target.categorical else self.tuned.temperature


class Family:
  """A seed's model of an embedding family: its heads' params, its trunk on
  the target clips (z), the prior over embeddings and the rating noise
  (from the SOURCE's held-out ratings) its fit rule uses."""

  def __init__(self, seed: Seed, graphdef, params, own: bool):
    self.seed, self.params, self.heads = seed, params, params["heads"]
    # own: the seed's individual model, whose trunk features the seed
    # computes once (z, held_z).
    self._own = own
    self.z = seed.z if self._own else train.trunk_features(
        graphdef, params, seed.target.table.embeddings)
    self._graphdef = graphdef

  @cached
  def prior(self) -> rater_embeddings.Prior:
    return rater_embeddings.fit_prior(rater_embeddings.table(self.heads))

  @cached
  def noise(self) -> float:
    held = self.seed.target.held_out
    z_held = self.seed.held_z if self._own else train.trunk_features(
        self._graphdef, self.params, held["embeddings"])
    return rater_embeddings.residual_noise(
        self.heads, z_held, held["pair_clip"], held["pair_annotator"],
        held["pair_values"])

  @cached
  def mean_clip(self) -> np.ndarray:
    """all_listeners: the mean of every annotator's prediction [C, D]."""
    return rater_embeddings.mean_output(self.heads, self.z)

  @cached
  def mean_listener_clip(self) -> np.ndarray:
    e = rater_embeddings.mean_listener(self.heads)
    return rater_embeddings.outputs_at(
        self.heads, self.z, np.arange(len(self.z)),
        np.broadcast_to(e, (len(self.z), len(e))))


class Fold:
  """One (seed, fold) run, as its rows see it. rows: the test pairs (indices
  into the target table); pos: each test pair's annotator as a position in
  run.annotators; aggregate: the consensus model on each test pair."""

  def __init__(self, seed: Seed, run: folds.Run, fold: int):
    self.seed, self.run, self.fold = seed, run, fold
    table, ev = seed.target.table, seed.ev
    self.table, self.ev = table, ev
    self.rows = run.test_rows
    self.pos = np.array([run.pos[a] for a in table.pair_annotator[self.rows]])
    self.aggregate = seed.aggregate_clip[table.pair_clip[self.rows]]
    self.names = [seed.target.meta.annotator_ids[a] for a in run.annotators]
    # The run's random draws, in a fixed order whichever rows are selected.
    self.random_heads = run.rng.integers(seed.num_heads,
                                         size=len(run.annotators))
    self._random = {k: Enrollment(self, folds.sample_enrollment(
        run.rng, run.pool_by_ann, k)) for k in ev.enroll_sizes}
    self._adaptive = {}

  def heads(self, kernel, bias) -> np.ndarray:
    """Predictions of one head per annotator ([N, D, H], [N, D]) on the
    annotator's test pairs."""
    return train.pair_predictions(self.seed.z, kernel, bias,
                                  self.table.pair_clip[self.rows], self.pos)

  def embeddings(self, family: Family, e) -> np.ndarray:
    """Predictions of one embedding per annotator (e [N, r], a family's)
    on the annotator's test pairs."""
    return rater_embeddings.outputs_at(
        family.heads, family.z, self.table.pair_clip[self.rows], e[self.pos])

  def aggregate_per_annotator(self, a, c) -> np.ndarray:
    """The aggregate at a per-annotator scale: a, c [N, D] -> a x + c on each
    annotator's test pairs."""
    return a[self.pos] * self.aggregate + c[self.pos]

  @cached
  def test_by_ann(self) -> list[np.ndarray]:
    return [self.rows[self.pos == i] for i in range(len(self.run.annotators))]

  def enrollment(self, k: int) -> Enrollment:
    """k random clips of each annotator's pool (k = 0: all of them)."""
    return self._random[k]

  def adaptive_enrollment(self, k: int) -> Enrollment:
    """The first k clips chosen adaptively (adaptive.simulate: one clip per
    round, each rating revealed before the next choice)."""
    if k not in self._adaptive:
      chosen = [r[o[:k]] for r, o in zip(self.run.pool_by_ann,
                                         self._adaptive_order)]
      self._adaptive[k] = Enrollment(self, chosen)
    return self._adaptive[k]

  def enrollment_sets(self) -> list[tuple[str, Enrollment]]:
    """(name, set) of the random sets, then the adaptive ones made so far:
    "5", ..., "all", "5 (adaptive)", ..."""
    name = folds.size_name
    return ([(name(k), e) for k, e in self._random.items()] +
            [(f"{name(k)} (adaptive)", e) for k, e in self._adaptive.items()])

  @cached
  def _adaptive_order(self):
    s, t = self.seed, self.table
    return adaptive.simulate(
        s.z, s.head_predictions,
        [(t.pair_clip[r], t.pair_values[r]) for r in self.run.pool_by_ann],
        s.kernel, s.bias, s.adaptive_temperature,
        max(folds.adaptive_sizes(self.ev)), self.ev.score,
        self.ev.head_chunk, self.names)


class Enrollment:
  """Each annotator's enrollment set: chosen (pool rows per annotator),
  packed as clips [N, K] (target clip indices), ratings [N, K, D] and
  mask [N, K]; scores [N, A] of every head on it, mapping (the top-k
  heads) and heads (their params), on first use."""

  def __init__(self, fold: Fold, chosen):
    self.fold, self.chosen = fold, chosen
    t = fold.table
    self._lists = ([t.pair_clip[c] for c in chosen],
                   [t.pair_values[c] for c in chosen])
    self.clips, self.ratings, self.mask = enroll.pack(*self._lists,
                                                       fold.names)
    self._family = {}

  @cached
  def scores(self) -> np.ndarray:
    s, ev = self.fold.seed, self.fold.ev
    return enroll.enrollment_scores(
        s.z, *self._lists, s.kernel, s.bias, score=ev.score,
        head_chunk=ev.head_chunk, names=self.fold.names,
        precision=ev.score_precision)[0]

  @cached
  def mixture(self):
    """The mixture rule's heads ([N, D, H], [N, D])."""
    s = self.fold.seed
    return posterior.mixture_heads(self.scores, self.mask.sum(1), s.kernel,
                                   s.bias, s.tuned.temperature)

  @cached
  def eb(self):
    """The empirical-Bayes heads ([N, D, H], [N, D])."""
    s = self.fold.seed
    return posterior.eb_heads(s.z[self.clips], self.ratings, self.mask,
                              s.prior, s.tuned.noise)

  @cached
  def blended(self) -> blend.Blended:
    """The blended rule (blend.py), with the mixture and EB heads above."""
    s = self.fold.seed
    agg = s.aggregate_clip[self.clips]
    p = blend.parts(s.blend_heads, s.z[self.clips], agg, self.ratings,
                    self.mask, self.scores, mixture=self.mixture,
                    eb=self.eb)
    return blend.combine(s.blend, s.blend_heads, p, self.mask.sum(1))

  def family_copy(self, name: str) -> np.ndarray:
    """The copy rule's embeddings [N, r] of a family (rater_embeddings)."""
    key = ("copy", name)
    if key not in self._family:
      f = self.fold.seed.family(name)
      self._family[key] = rater_embeddings.copy(
          f.heads, f.z[self.clips], self.ratings, self.mask,
          self.fold.ev.score, self.fold.ev.head_chunk)[0]
    return self._family[key]

  def family_fit(self, name: str) -> np.ndarray:
    """The fit rule's embeddings [N, r] of a family (rater_embeddings)."""
    key = ("fit", name)
    if key not in self._family:
      f, ev = self.fold.seed.family(name), self.fold.ev
      self._family[key] = rater_embeddings.fit(
          f.heads, f.z[self.clips], self.ratings, self.mask, f.prior,
          f.noise, ev.embedding_fit_steps, ev.embedding_fit_lr)
    return self._family[key]

  @property
  def scored(self) -> bool:
    return "scores" in self.__dict__

  @cached
  def mapping(self) -> enroll.Mapping:
    ev = self.fold.ev
    return enroll.mapping(self.scores, self.ratings, self.mask, ev.top_k,
                          ev.weighted)

  @cached
  def heads(self):
    return self.mapping.head_params(self.fold.seed.kernel,
                                    self.fold.seed.bias)
