"""The protocol's rows: each a named prediction rule, registered here.

A row is a function of a context.Fold (rows at each enrollment size also of
a context.Enrollment) returning one prediction per test pair of the fold,
[len(ctx.rows), D]. `register` adds it by name; config.eval.rows selects
rows (default: every row that applies to the model's loss); the loop
(loop.py) evaluates each selected row on every (seed, fold), pools its
out-of-fold predictions per seed and tests it against the aggregate.

  @rows.register("aggregate_x2", doc="the aggregate, doubled")
  def aggregate_x2(ctx):
    return 2 * ctx.aggregate

per_k=True: the row is evaluated at each config.eval.enroll_sizes k, named
<name>@k (k = all: every pool clip), on k random clips; adaptive=True: also
on adaptively chosen clips (adaptive_<name>@k, config.eval.adaptive_sizes).
kinds: the losses it applies to, "ratings" (dimensional) and/or
"categorical" (class heads). section: where results.md lists it
(baselines, enrollment rules, upper bounds, chance levels). model: what it
reads besides the aggregate: "heads" (the individual model's linear heads,
ctx.seed.kernel), "aggregate" (nothing more) or an annotator family
(models.FAMILIES: ctx.seed.family(name)); a row is selected by default
where the workdir has that model (context.families).

output=DISTRIBUTION: the row predicts each target clip's rating
distribution instead (a function of a rating_distributions.SeedClips
returning a distributions.Mixture); those rows are scored once per seed,
not per fold, in their own table, against aggregate_sd
(protocol/rating_distributions.py).

Each embedding family (lowrank, embedding; models.py) adds four rows:
<family>_copy@k and <family>_fit@k (rater_embeddings.py), and the LDNet
inference modes <family>_mean_listener and <family>_all_listeners.

Adaptive sets (context.Fold.adaptive_enrollment, adaptive.py): one clip per
round, each the clip of the annotator's pool on which the heads still in
contention (the mixture's posterior) disagree most, its rating revealed
before the next choice; the k-clip set is the first k chosen. Like the
random draws, only clips the annotator rated in the training speakers' pool
can be chosen. Categorical heads: on their class probabilities, with the
Bayes posterior (temperature 1).
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Callable

import numpy as np

from annojax import baselines
from annojax import enroll
from annojax import train
from annojax.protocol import folds

ADAPTIVE = "adaptive_"  # name prefix of rows on adaptively chosen clips
RATINGS, CATEGORICAL = "ratings", "categorical"
# What a row returns: a prediction per test pair, or a rating distribution
# per target clip (protocol/rating_distributions.py).
PAIRS, DISTRIBUTION = "pairs", "distribution"
DISTRIBUTION_REFERENCE = "aggregate_sd"  # its tests' reference
SECTIONS = ("baseline", "rule", "bound", "chance")


@dataclasses.dataclass(frozen=True)
class Row:
  name: str
  fn: Callable
  doc: str
  per_k: bool
  adaptive: bool
  kinds: tuple[str, ...]
  section: str
  model: str = "heads"
  output: str = PAIRS


REGISTRY: dict[str, Row] = {}


def register(name: str, *, doc: str, per_k: bool = False,
             adaptive: bool = False, kinds=(RATINGS, CATEGORICAL),
             section: str = "", model: str = "heads", output: str = PAIRS):
  """Decorator: registers fn(ctx) (per_k: fn(ctx, enrollment)) as a row."""
  section = section or ("rule" if per_k else "baseline")
  if section not in SECTIONS or "@" in name or name.startswith(ADAPTIVE):
    raise ValueError(f"row {name!r}: a name without '@' or the prefix "
                     f"{ADAPTIVE!r}, section one of {SECTIONS}")
  if adaptive and not per_k:
    raise ValueError(f"row {name!r}: adaptive rows are per_k rows")

  def add(fn):
    REGISTRY[name] = Row(name, fn, doc, per_k, adaptive, tuple(kinds),
                         section, model, output)
    return fn
  return add


def select(names, categorical: bool, models=None) -> list[Row]:
  """The rows config.eval.rows names (() = every row for this loss whose
  model is among `models`, context.families; None = any), in
  registration order; the aggregate, every test's reference, always."""
  kind = CATEGORICAL if categorical else RATINGS
  has = lambda r: models is None or r.model in models
  if not names:
    return [r for r in REGISTRY.values() if kind in r.kinds and has(r)]
  for n in names:
    if n not in REGISTRY:
      close = difflib.get_close_matches(str(n), REGISTRY, n=1)
      hint = f"; did you mean {close[0]!r}?" if close else ""
      raise ValueError(f"config.eval.rows: unknown row {n!r}{hint} (rows: "
                       f"{', '.join(REGISTRY)})")
    if kind not in REGISTRY[n].kinds:
      raise ValueError(f"config.eval.rows: row {n!r} is for "
                       f"{' / '.join(REGISTRY[n].kinds)} heads, not {kind}")
    if not has(REGISTRY[n]):
      need = REGISTRY[n].model
      raise ValueError(
          f"config.eval.rows: row {n!r} needs a {need!r} model, which this "
          f"run does not train (it has: {', '.join(sorted(models))}); "
          + ("set config.model.annotators to 'heads' or 'lowrank'"
             if need == "heads" else
             f"add {need!r} to config.train.models"))
  wanted = set(names) | {"aggregate"}
  if any(REGISTRY[n].output == DISTRIBUTION for n in names):
    wanted.add(DISTRIBUTION_REFERENCE)
  return [r for r in REGISTRY.values() if r.name in wanted]


def predict(ctx, selected: list[Row], adaptive_sizes) -> dict:
  """Every selected row's predictions on the fold's test pairs, by row
  name: rows without k, then each enrollment size, then the adaptive
  sets."""
  selected = [r for r in selected if r.output == PAIRS]
  out = {r.name: r.fn(ctx) for r in selected if not r.per_k}
  for k in ctx.ev.enroll_sizes:
    for r in selected:
      if r.per_k:
        out[f"{r.name}@{folds.size_name(k)}"] = r.fn(ctx, ctx.enrollment(k))
  for k in adaptive_sizes:
    for r in selected:
      if r.adaptive:
        out[f"{ADAPTIVE}{r.name}@{folds.size_name(k)}"] = r.fn(
            ctx, ctx.adaptive_enrollment(k))
  return out


# Baselines: the same prediction for every new annotator, or none learnt.


@register("aggregate", model="aggregate",
          doc="the consensus model (one head, trained on mean ratings)")
def aggregate(ctx):
  return ctx.aggregate


@register("aggregate_rescaled", kinds=(RATINGS,), model="aggregate",
          doc="the aggregate at the raters' typical scale (one a x + c for "
              "everyone, from the source's held-out raters): the baseline an "
              "individual row must beat")
def aggregate_rescaled(ctx):
  # The consensus varies less than one rater's ratings, which CCC_ind
  # penalises: baselines.typical_calibration, fit per seed on the SOURCE's
  # held-out raters (never the target).
  a, c = ctx.seed.rescale
  return a * ctx.aggregate + c


@register("mean_heads", doc="the mean of all pre-trained heads")
def mean_heads(ctx):
  return ctx.seed.mean_clip[ctx.table.pair_clip[ctx.rows]]


@register("random_head", doc="a random pre-trained head per annotator")
def random_head(ctx):
  r = ctx.random_heads
  return ctx.heads(ctx.seed.kernel[r], ctx.seed.bias[r])


# Bounds: rules that see the test ratings (not methods).


def _oracle(ctx, shuffle=None):
  """Each annotator's best head chosen on their test clips. shuffle (a
  numpy Generator): each annotator's test clips shuffled among their
  ratings first, so the heads carry no information about them."""
  t, s = ctx.table, ctx.seed
  clips = [t.pair_clip[r] for r in ctx.test_by_ann]
  if shuffle is not None:
    clips = [shuffle.permutation(c) for c in clips]
  chosen = enroll.enroll(s.z, clips, [t.pair_values[r]
                                      for r in ctx.test_by_ann],
                         s.kernel, s.bias, score=ctx.ev.score,
                         head_chunk=ctx.ev.head_chunk)
  pair_clip = np.empty(len(ctx.pos), int)
  for i, c in enumerate(clips):
    pair_clip[ctx.pos == i] = c
  k_n, b_n = chosen.head_params(s.kernel, s.bias)
  return train.pair_predictions(s.z, k_n, b_n, pair_clip, ctx.pos)


@register("oracle", section="bound",
          doc="the best head chosen on the annotator's TEST ratings (an "
              "upper bound, not a method)")
def oracle(ctx):
  return _oracle(ctx)


@register("oracle_chance", section="chance",
          doc="the oracle's choice with test clips shuffled among their "
              "ratings: what choosing the best of many heads reaches by luck")
def oracle_chance(ctx):
  # NSC: about the oracle itself, so there the oracle is no ceiling.
  return _oracle(ctx, np.random.default_rng([ctx.seed.seed, ctx.fold,
                                             0xC4A7CE]))


@register("oracle_calibrated", section="bound", kinds=(RATINGS,),
          model="aggregate",
          doc="the aggregate at each annotator's true mean and s.d. (all "
              "their ratings): the ceiling of any per-annotator calibration")
def oracle_calibrated(ctx):
  a, c = ctx.seed.calibrated_all
  ann = ctx.table.pair_annotator[ctx.rows]
  return a[ann] * ctx.aggregate + c[ann]


# Enrollment rules, on k clips of each new annotator (`e`).


@register("most_similar", per_k=True, adaptive=True,
          doc="the pre-trained head that best fits the k enrollment "
              "ratings, copied (the paper's method)")
def most_similar(ctx, e):
  return ctx.heads(*e.heads)


@register("mixture", per_k=True, adaptive=True, kinds=(RATINGS,),
          doc="all heads weighted by a posterior from their enrollment "
              "scores (temperature tuned on source raters)")
def mixture(ctx, e):
  return ctx.heads(*e.mixture)


@register("eb", per_k=True, adaptive=True, kinds=(RATINGS,),
          doc="empirical-Bayes head: the MAP head under a Gaussian prior "
              "fitted to the pre-trained heads")
def eb(ctx, e):
  """Mean + low-rank covariance of all heads as the prior: the population
  head with no clips, ~ an own fit with many; the noise, as the mixture's
  temperature, from the SOURCE's held-out raters (posterior.tune)."""
  return ctx.heads(*e.eb)


@register("linear_fit", per_k=True, kinds=(RATINGS,), model="aggregate",
          doc="the aggregate's output, linearly fit to each annotator's k "
              "ratings")
def linear_fit(ctx, e):
  return ctx.aggregate_per_annotator(*baselines.linear_fit(
      ctx.seed.aggregate_clip[e.clips], e.ratings, e.mask,
      ctx.ev.linear_ridge))


@register("calibrated", per_k=True, kinds=(RATINGS,), model="aggregate",
          doc="the aggregate at each annotator's mean and s.d. from the k "
              "ratings, shrunk toward the identity")
def calibrated(ctx, e):
  return ctx.aggregate_per_annotator(*baselines.calibrate(
      ctx.seed.aggregate_clip[e.clips], e.ratings, e.mask,
      ctx.ev.calibration_shrink))


@register("finetune", per_k=True, kinds=(RATINGS,),
          doc="the most-similar head fine-tuned on the k ratings")
def finetune(ctx, e):
  ev = ctx.ev
  return ctx.heads(*baselines.finetune(
      *e.heads, ctx.seed.z[e.clips], e.ratings, e.mask, ev.finetune_steps,
      ev.finetune_lr, ev.finetune_l2))


@register("blended", per_k=True, adaptive=True, kinds=(RATINGS,),
          doc="the consensus at the typical scale, moved toward the mixture, "
              "EB and calibrated rules by weights learned per k on source "
              "raters and gated by the annotator's own evidence (blend.py; "
              "the default of --mode=enroll)")
def blended(ctx, e):
  b = e.blended
  return ctx.heads(b.kernel, b.bias) + ctx.aggregate_per_annotator(b.scale,
                                                                   b.shift)


# The embedding families (models.py): copy and fit at each k, the LDNet
# inference modes without enrollment.


def _register_family(family: str):
  what = {"lowrank": "low-rank heads (mean + U e)",
          "embedding": "embedding decoder"}[family]
  rule = dict(per_k=True, kinds=(RATINGS,), model=family)

  @register(f"{family}_copy", **rule,
            doc=f"{what}: the pre-trained embedding that best fits the k "
                "ratings, copied (the paper's rule)")
  def family_copy(ctx, e):
    return ctx.embeddings(ctx.seed.family(family), e.family_copy(family))

  @register(f"{family}_fit", **rule,
            doc=f"{what}: a new embedding fit to the k ratings (MAP under "
                "the pre-trained embeddings' Gaussian)")
  def family_fit(ctx, e):
    return ctx.embeddings(ctx.seed.family(family), e.family_fit(family))

  @register(f"{family}_mean_listener", kinds=(RATINGS,), model=family,
            doc=f"{what}: the mean listener (an embedding trained on each "
                "clip's mean rating; LDNet)")
  def mean_listener(ctx):
    f = ctx.seed.family(family)
    return f.mean_listener_clip[ctx.table.pair_clip[ctx.rows]]

  @register(f"{family}_all_listeners", kinds=(RATINGS,), model=family,
            doc=f"{what}: the mean of every pre-trained annotator's "
                "prediction (LDNet)")
  def all_listeners(ctx):
    return ctx.seed.family(family).mean_clip[ctx.table.pair_clip[ctx.rows]]


for _family in ("lowrank", "embedding"):
  _register_family(_family)
