"""The cross-corpus evaluation protocol (METHOD.md, Evaluation protocol).

A seed is an independent replicate: seed s evaluates the models pre-trained
with seed s (train.model_dir(workdir, kind, s): their own init and data
order) on its own random speaker-to-fold partition of the target corpus
(fixed folds instead where config.eval.fold_by names them, e.g. one per
IEMOCAP session). For each (seed, fold): test speakers = the fold, a quarter
of the other speakers is validation, the rest are training speakers. A target
annotator's enrollment clips are drawn (seeded) from the clips of training
speakers they rated; they are tested on the clips of test speakers they rated
(annotators with < eval.min_test test ratings leave CCC_ind, counted).

Rows (each gives one prediction per test (clip, annotator) pair):
  aggregate      the consensus model, same prediction for everyone
  aggregate_rescaled
                 the aggregate at the raters' typical scale, also the same
                 for everyone: a, c of baselines.typical_calibration fit per
                 seed on the SOURCE's held-out raters (never the target).
                 The consensus varies less than one rater's ratings, which
                 CCC_ind penalises; this is the aggregate without that
                 penalty, the baseline a per-annotator row must beat
  mean_heads     the mean of all pre-trained heads
  random_head    a random pre-trained head per annotator
  most_similar@k the best-scoring head on k enrollment clips (k=all: every
                 training-speaker clip the annotator rated)
  linear_fit@k   per-annotator ridge fit y ~ a * aggregate + c on the same k
                 clips (pulled toward a=1, c=0)
  calibrated@k   the aggregate with the annotator's mean and s.d. on the k
                 clips (CCC-consistent calibration, shrunk toward identity)
  finetune@k     the most-similar head, fine-tuned on the k clips
  mixture@k      the posterior-weighted mean of all heads (softmax of the
                 enrollment scores / a temperature; posterior.py)
  eb@k           the empirical-Bayes head: MAP under a Gaussian prior fitted
                 to all heads (mean + low-rank covariance), given the k
                 clips (the population head with none, ~ an own fit with
                 many). Temperature and noise come per seed from SOURCE
                 held-out annotators (posterior.tune), not from the target
  adaptive_most_similar@k, adaptive_mixture@k, adaptive_eb@k
                 the same rules on k clips chosen ADAPTIVELY (adaptive.py),
                 one per round, each the clip of the annotator's pool on
                 which the heads still in contention (the mixture's
                 posterior) disagree most, its rating revealed before the
                 next choice; k in config.eval.adaptive_sizes. Like the
                 random draws, only clips the annotator rated in the
                 training speakers' pool can be chosen. Categorical heads:
                 adaptive_most_similar@k, on their class probabilities,
                 with the Bayes posterior (temperature 1)
  oracle         the best head chosen on the test clips (an upper bound)
  oracle_calibrated
                 the aggregate at each annotator's mean and s.d. over ALL
                 their ratings (test clips included): the ceiling of any
                 per-annotator calibration of the aggregate
  oracle_chance  the oracle's choice with each annotator's test clips
                 shuffled among their ratings: what picking the best of A
                 heads on so few test ratings reaches by luck (NSC: about
                 the oracle itself, so there the oracle is no ceiling)
Metrics: CCC_ind and CCC_con (mean prediction vs the consensus of ALL the
clip's ratings) per dimension, mean +- std over runs. Pooled evaluation,
for small targets (a listener with 3-4 test clips per fold gives a CCC that
is mostly noise): per seed, each annotator's out-of-fold predictions from
all folds are pooled and CCC_ind is computed once over that set (n = seeds),
reported beside the per-fold table. Tests against the
aggregate row pair runs by their (seed, fold) key: a paired t-test and
Wilcoxon over runs, and a paired t-test over seeds (each seed's mean over
its folds); the unit and n of each are reported with the table.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

from absl import logging
import jax
import ml_collections
import numpy as np
import tqdm

from annojax import adaptive
from annojax import baselines
from annojax import enroll
from annojax import losses
from annojax import metrics
from annojax import plots
from annojax import posterior
from annojax import train
from annojax.data import pipeline
from annojax.data import prepare as prepare_lib


def num_replicates(config) -> int:
  """Independent replicates = evaluation seeds: each pre-trains its own."""
  return int(config.eval.seeds)


def speaker_folds(speakers: np.ndarray, n_folds: int, seed: int = 0,
                  fold_by: str = "") -> list[np.ndarray]:
  r"""Speaker-independent folds.

  Default: the speakers are randomly partitioned into n_folds folds, a new
  partition for every seed. fold_by: a regex whose first group names a fixed
  fold of each speaker (e.g. r"^(Ses\d+)" for IEMOCAP's sessions); those
  folds are the same for every seed (n_folds is then the number of groups).
  """
  uniq = np.unique(speakers)
  if fold_by:
    pattern = re.compile(fold_by)
    keys = []
    for s in uniq:
      m = pattern.search(str(s))
      if not m:
        raise ValueError(f"config.eval.fold_by={fold_by!r} does not match "
                         f"speaker {str(s)!r}")
      keys.append(m.group(1) if m.groups() else m.group(0))
    keys = np.asarray(keys)
    return [uniq[keys == k] for k in np.unique(keys)]
  if len(uniq) < n_folds:
    raise ValueError(f"{len(uniq)} speakers cannot make {n_folds} folds")
  perm = np.random.default_rng([seed, 0xF01D]).permutation(uniq)
  return [np.sort(f) for f in np.array_split(perm, n_folds)]


ADAPTIVE = "adaptive_"  # row-name prefix of adaptively chosen clips


def _adaptive_sizes(ev) -> tuple[int, ...]:
  """config.eval.adaptive_sizes, checked: each a positive size that the
  random rows have too (the comparison the rows exist for)."""
  sizes = tuple(int(k) for k in ev.adaptive_sizes)
  bad = [k for k in sizes if k <= 0 or k not in ev.enroll_sizes]
  if bad:
    raise ValueError(
        f"config.eval.adaptive_sizes {sizes}: {bad} must be positive and in "
        f"config.eval.enroll_sizes {tuple(ev.enroll_sizes)}, so that each "
        "adaptive row has its random row")
  return sizes


def _size_name(k: int) -> str:
  return "all" if k == 0 else str(k)


def _sample_enrollment(rng, pool_rows_by_ann, k):
  """Per annotator, k random pool pairs (all if k == 0 or fewer exist)."""
  return [rows if (k == 0 or len(rows) <= k) else
          rng.choice(rows, size=k, replace=False) for rows in
          pool_rows_by_ann]


class _Run:
  """One (seed, fold): which pairs are test / enrollment pool."""

  def __init__(self, table, speaker_of_clip, test_speakers, seed, fold,
               min_test):
    rng = np.random.default_rng([seed, fold])
    others = np.setdiff1d(np.unique(speaker_of_clip), test_speakers)
    n_val = len(others) // 4
    val = rng.choice(others, size=n_val, replace=False) if n_val else []
    train_speakers = np.setdiff1d(others, val)
    pair_spk = speaker_of_clip[table.pair_clip]
    is_test = np.isin(pair_spk, test_speakers)
    is_pool = np.isin(pair_spk, train_speakers)
    ann = table.pair_annotator
    n_test = np.bincount(ann[is_test], minlength=ann.max() + 1)
    n_pool = np.bincount(ann[is_pool], minlength=ann.max() + 1)
    self.annotators = np.flatnonzero((n_test >= min_test) & (n_pool >= 1))
    self.excluded = int(((n_test > 0) & ~np.isin(
        np.arange(len(n_test)), self.annotators)).sum())
    keep = np.isin(ann, self.annotators)
    self.test_rows = np.flatnonzero(is_test & keep)
    pool = np.flatnonzero(is_pool & keep)
    # Position of each annotator in self.annotators.
    self.pos = {a: i for i, a in enumerate(self.annotators)}
    self.pool_by_ann = _rows_by_annotator(pool, ann, self.annotators)
    self.rng = rng


def fold_runs(table, seed: int, ev) -> list[_Run]:
  """The protocol's (seed, fold) runs of one seed, fold by fold."""
  return [_Run(table, table.speakers, speakers, seed, f, ev.min_test)
          for f, speakers in enumerate(speaker_folds(
              table.speakers, ev.folds, seed, ev.fold_by))]


def _rows_by_annotator(rows, annotator, ids):
  """`rows` grouped by their annotator: one array per id of the sorted
  `ids` (every row's annotator among them), rows in their given order."""
  order = np.argsort(annotator[rows], kind="stable")
  starts = np.searchsorted(annotator[rows][order], ids)
  return np.split(rows[order], starts[1:])


DIMENSIONAL_METRICS = ("ccc_ind", "ccc_con")
CATEGORICAL_METRICS = ("agreement_ind", "loglik_ind")


def _evaluate_row(pred, table, rows, categorical=False):
  y = table.pair_values[rows]
  ann = table.pair_annotator[rows]
  if categorical:  # one column, "all": means over annotators
    return {k: [v] for k, v in metrics.categorical_ind(pred, y, ann).items()}
  clip = table.pair_clip[rows]
  # CCC_con's label: the consensus of ALL the clip's ratings (also those
  # of annotators outside this run), constant within the clip.
  return {"ccc_ind": metrics.ccc_ind(pred, y, ann),
          "ccc_con": metrics.ccc_con(pred, table.consensus[clip], clip)}


def _replicate_models(config, workdir, prepared, seed):
  """Best params of seed's individual and aggregate models (must exist)."""
  out = []
  for kind in ("individual", "aggregate"):
    d = os.path.join(train.model_dir(workdir, kind, seed), "checkpoints")
    if not os.path.isdir(d):
      raise FileNotFoundError(
          f"no {kind} model for seed {seed} at {d}: every evaluation seed "
          f"pre-trains its own models (config.eval.seeds="
          f"{config.eval.seeds}); run --mode=train (or all) first")
    out.append(train.load_best(config, workdir, kind, prepared, seed))
  return out


def run_protocol(config: ml_collections.ConfigDict, workdir: str,
                 prepared: prepare_lib.Prepared | None = None) -> dict:
  """Runs the protocol; writes results.{json,md} and plots to <workdir>/eval."""
  ev = config.eval
  prepared = prepared or prepare_lib.prepare(config, workdir)
  src_meta = pipeline.read_meta(prepared.source)
  tgt_meta = pipeline.read_meta(prepared.target)
  if src_meta.dims != tgt_meta.dims:
    raise ValueError(f"source dims {src_meta.dims} != target dims "
                     f"{tgt_meta.dims}")
  table = pipeline.load_table(prepared.target, "full")
  # Categorical heads (CREMA-D): agreement / log-likelihood per annotator;
  # the linear-fit, calibration and fine-tune rows are for ratings only.
  categorical = config.train.loss in losses.CATEGORICAL
  metric_names = CATEGORICAL_METRICS if categorical else DIMENSIONAL_METRICS
  columns = ("all",) if categorical else tgt_meta.dims
  src_types = src_meta.annotator_types
  tgt_types = tgt_meta.annotator_types
  have_types = src_types is not None and tgt_types is not None

  cells: dict[str, dict] = {}
  tuned_by_seed = []  # mixture temperature / EB noise per seed
  rescale_by_seed = []  # aggregate_rescaled's (a, c) per seed
  held_out = None if categorical else source_held_out(prepared)
  if not categorical:  # every rating, by rater: the same for every seed
    target_packed = _packed_by_annotator(
        table.pair_clip, table.pair_annotator, table.pair_values)
    held_packed = _packed_by_annotator(
        held_out["pair_clip"], held_out["pair_annotator"],
        held_out["pair_values"])
  adaptive_sizes = _adaptive_sizes(ev)
  pooled: dict[str, dict] = {}  # row -> {(seed, 0): metrics over all folds}
  type_match: dict[str, list] = {}
  excluded, warnings, n_folds = [], [], None
  bar = tqdm.tqdm(total=ev.seeds, desc="evaluate (seeds)",
                  disable=not train.progress_bar(config))
  for seed in range(ev.seeds):
    (g_ia, p_ia), (g_ag, p_ag) = _replicate_models(config, workdir, prepared,
                                                   seed)
    z = train.trunk_features(g_ia, p_ia, table.embeddings)  # [C, D, H]
    kernel, bias = train.head_arrays(p_ia)
    k_ag, b_ag = train.head_arrays(p_ag)
    aggregate_on = lambda e: np.einsum("cdh,dh->cd", train.trunk_features(
        g_ag, p_ag, e), k_ag[0]) + b_ag[0]  # pylint: disable=cell-var-from-loop
    agg_clip = aggregate_on(table.embeddings)
    if train.warn_if_degenerate(
        f"aggregate model (seed {seed}) on the target", agg_clip.std(0),
        categorical):
      warnings.append(
          f"seed {seed}: the aggregate model's target predictions are "
          f"degenerate (s.d. {np.round(agg_clip.std(0), 4).tolist()}: "
          "constant or far outside the rating scale)")
    mean_clip = np.einsum("cdh,dh->cd", z, kernel.mean(0)) + bias.mean(0)
    if not categorical:
      prior = posterior.fit_prior(kernel, bias, ev.eb_rank)
      tuned = tune_on_source(config, held_out, g_ia, p_ia, kernel, bias, seed)
      tuned_by_seed.append(dataclasses.asdict(tuned))
      # Each annotator's mean and s.d. over ALL ratings (oracle_calibrated).
      cidx, y_all, m_all = target_packed
      calibrated_all = baselines.calibrate(agg_clip[cidx], y_all, m_all,
                                           shrink=0.0)
      cidx, y_src, m_src = held_packed
      rescale = baselines.typical_calibration(
          aggregate_on(held_out["embeddings"])[cidx], y_src, m_src)
      rescale_by_seed.append({"a": rescale[0].tolist(),
                              "c": rescale[1].tolist()})
    if adaptive_sizes:
      pred_all = adaptive.head_predictions(z, kernel, bias, categorical)
      # Categorical heads scored by log-likelihood: T = 1 is Bayes' rule
      # (adaptive.py); nothing is tuned for them.
      temperature = 1.0 if categorical else tuned.temperature

    def head_pred(rows, ann_pos, k_n, b_n, z=z):
      return train.pair_predictions(z, k_n, b_n, table.pair_clip[rows],
                                    ann_pos)

    runs = fold_runs(table, seed, ev)
    n_folds = len(runs)
    oof: dict[str, list] = {}  # row -> [(test rows, predictions)] by fold
    for f, run in enumerate(runs):
      excluded.append(run.excluded)
      rows = run.test_rows
      pos = np.array([run.pos[a] for a in table.pair_annotator[rows]])
      out = {}
      out["aggregate"] = agg_clip[table.pair_clip[rows]]
      if not categorical:
        out["aggregate_rescaled"] = rescale[0] * out["aggregate"] + rescale[1]
      out["mean_heads"] = mean_clip[table.pair_clip[rows]]
      rand = run.rng.integers(len(kernel), size=len(run.annotators))
      out["random_head"] = head_pred(rows, pos, kernel[rand], bias[rand])
      # Oracle: choose on the test clips themselves; and its chance level.
      test_by_ann = [rows[pos == i] for i in range(len(run.annotators))]
      out["oracle"] = _oracle(z, table, pos, test_by_ann, kernel, bias, ev)
      out["oracle_chance"] = _oracle(
          z, table, pos, test_by_ann, kernel, bias, ev,
          shuffle=np.random.default_rng([seed, f, 0xC4A7CE]))
      if not categorical:
        ann = table.pair_annotator[rows]
        out["oracle_calibrated"] = (calibrated_all[0][ann] * out["aggregate"]
                                    + calibrated_all[1][ann])
      names = [tgt_meta.annotator_ids[a] for a in run.annotators]

      def enrollment_rows(chosen, name, prefix=""):
        """most_similar / mixture / eb rows from each annotator's chosen
        pool rows -> (mapped heads), (packed clips, ratings, mask)."""
        clips = [table.pair_clip[c] for c in chosen]
        ys = [table.pair_values[c] for c in chosen]
        scores, cidx, y_e, m_e = enroll.enrollment_scores(
            z, clips, ys, kernel, bias, score=ev.score,
            head_chunk=ev.head_chunk, names=names)
        mapping = enroll.mapping(scores, y_e, m_e, ev.top_k, ev.weighted)
        k_n, b_n = mapping.head_params(kernel, bias)
        out[f"{prefix}most_similar@{name}"] = head_pred(rows, pos, k_n, b_n)
        if have_types:
          sel = src_types[mapping.heads[:, 0]]
          truth = tgt_types[run.annotators]
          chance = np.mean([np.mean(src_types == t) for t in truth])
          type_match.setdefault(f"{name}{' (adaptive)' if prefix else ''}",
                                []).append(
              (float(np.mean(sel == truth)), float(chance)))
        if not categorical:
          out[f"{prefix}mixture@{name}"] = head_pred(
              rows, pos, *posterior.mixture_heads(
                  scores, m_e.sum(1), kernel, bias, tuned.temperature))
          out[f"{prefix}eb@{name}"] = head_pred(rows, pos, *posterior.eb_heads(
              z[cidx], y_e, m_e, prior, tuned.noise))
        return (k_n, b_n), (cidx, y_e, m_e)

      for k in ev.enroll_sizes:
        name = _size_name(k)
        (k_n, b_n), (cidx, y_e, m_e) = enrollment_rows(
            _sample_enrollment(run.rng, run.pool_by_ann, k), name)
        if categorical:
          continue
        agg_test = out["aggregate"]
        a, c = baselines.linear_fit(agg_clip[cidx], y_e, m_e,
                                    ev.linear_ridge)
        out[f"linear_fit@{name}"] = a[pos] * agg_test + c[pos]
        a, c = baselines.calibrate(agg_clip[cidx], y_e, m_e,
                                   ev.calibration_shrink)
        out[f"calibrated@{name}"] = a[pos] * agg_test + c[pos]
        k_f, b_f = baselines.finetune(k_n, b_n, z[cidx], y_e, m_e,
                                      ev.finetune_steps, ev.finetune_lr,
                                      ev.finetune_l2)
        out[f"finetune@{name}"] = head_pred(rows, pos, k_f, b_f)
      if adaptive_sizes:  # one clip per round, ratings revealed in turn
        order = adaptive.simulate(
            z, pred_all, [(table.pair_clip[r], table.pair_values[r])
                          for r in run.pool_by_ann], kernel, bias,
            temperature, max(adaptive_sizes), ev.score, ev.head_chunk,
            names)
        for k in adaptive_sizes:
          enrollment_rows([r[o[:k]] for r, o in zip(run.pool_by_ann, order)],
                          _size_name(k), ADAPTIVE)
      for row, pred in out.items():
        cells.setdefault(row, {})[(seed, f)] = _evaluate_row(
            pred, table, rows, categorical)
        oof.setdefault(row, []).append((rows, pred))
    for row, parts in oof.items():  # each test pair is in one fold only
      pooled.setdefault(row, {})[(seed, 0)] = _evaluate_row(
          np.concatenate([p for _, p in parts]), table,
          np.concatenate([r for r, _ in parts]), categorical)
    bar.update(1)
  bar.close()

  results = summarize(cells, columns, metric_names)
  results["pooled"] = summarize(pooled, columns, metric_names)
  results["pooled"]["tests"] = {"runs": {
      "unit": "seed: each annotator's out-of-fold predictions pooled over "
              "the seed's folds", "n": ev.seeds,
      "tests": "paired t-test (*), Wilcoxon (JSON), vs aggregate"}}
  if adaptive_sizes:
    results["adaptive_vs_random"] = {
        which: compare_adaptive(
            lambda row, d, part=part: part["rows"][row][metric_names[0]][d][
                "runs"], adaptive_sizes, columns)
        for which, part in (("per_fold", results),
                            ("pooled", results["pooled"]))}
  shared = dict(prepared.overlap) if prepared.overlap else None
  results["protocol"] = {
      "folds": n_folds, "seeds": ev.seeds, "runs": len(cells["aggregate"]),
      "fold_by": ev.fold_by or "random speaker partition per seed",
      "target_annotators": tgt_meta.num_annotators,
      "pretrained_heads": len(kernel), "score": ev.score,
      "top_k": ev.top_k, "metrics": list(metric_names),
      "columns": list(columns),
      "excluded_annotator_runs (< min_test test ratings)": int(
          np.sum(excluded)),
      "overlap_with_pretraining": shared,
      "posterior_tuning (source held-out annotators)": tuned_by_seed,
      "aggregate_rescaled (a, c per seed; source held-out annotators)":
          rescale_by_seed,
      "warnings": warnings}
  if have_types:
    results["type_match"] = {
        k: {"selected_same_type": float(np.mean([v[0] for v in vals])),
            "chance": float(np.mean([v[1] for v in vals]))}
        for k, vals in type_match.items()}
  out_dir = os.path.join(workdir, "eval")
  if jax.process_index() != 0:  # every process computed the same results
    return results
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(out_dir, "results.md"), "w") as f:
    f.write(to_markdown(results))
  plots.ccc_vs_enrollment(results, columns, ev.enroll_sizes,
                          os.path.join(out_dir, "ccc_ind_vs_k.png"))
  if adaptive_sizes:
    for part, name, title in ((results, "", ""),
                              (results["pooled"], "_pooled", "pooled: ")):
      plots.adaptive_vs_random(
          part["rows"], metric_names[0], columns, adaptive_sizes,
          os.path.join(out_dir, f"adaptive_vs_random{name}.png"), title)
  logging.info("evaluation written to %s", out_dir)
  return results


def _packed_by_annotator(pair_clip, pair_annotator, pair_values):
  """Every rating, one padded row per annotator (sorted ids; enroll.pack):
  (clip idx [N, K], ratings [N, K, D], mask [N, K]). With the aggregate at
  x = its predictions on those clips: calibrate(x, ..., shrink=0) puts it
  at each annotator's own mean and s.d. (oracle_calibrated, on the target:
  the ceiling of any per-annotator calibration, the same in every fold);
  typical_calibration at the raters' typical scale (aggregate_rescaled, on
  the source's held-out raters)."""
  rows = np.arange(len(pair_annotator))
  groups = _rows_by_annotator(rows, pair_annotator, np.unique(pair_annotator))
  return enroll.pack([pair_clip[g] for g in groups],
                     [pair_values[g] for g in groups])


def _oracle(z, table, pos, test_by_ann, kernel, bias, ev, shuffle=None):
  """Predictions of each annotator's best head chosen on their test clips.

  shuffle (a numpy Generator): the oracle's chance level instead: each
  annotator's test clips are shuffled among their ratings first, so the
  heads carry no information about them; what the choice reaches by luck
  alone on this many test ratings per annotator."""
  clips = [table.pair_clip[r] for r in test_by_ann]
  if shuffle is not None:
    clips = [shuffle.permutation(c) for c in clips]
  chosen = enroll.enroll(z, clips, [table.pair_values[r] for r in test_by_ann],
                         kernel, bias, score=ev.score,
                         head_chunk=ev.head_chunk)
  pair_clip = np.empty(len(pos), int)
  for i, c in enumerate(clips):
    pair_clip[pos == i] = c
  k_n, b_n = chosen.head_params(kernel, bias)
  return train.pair_predictions(z, k_n, b_n, pair_clip, pos)


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


def tune_on_source(config, held_out, graphdef, params, kernel, bias, seed
                   ) -> posterior.Tuned:
  """The mixture temperature / EB noise of this seed's model, set on the
  source's held-out annotators (never the target)."""
  ev = config.eval
  tuned = posterior.tune(
      train.trunk_features(graphdef, params, held_out["embeddings"]),
      held_out["pair_clip"], held_out["pair_annotator"],
      held_out["pair_values"], kernel, bias, ev.mixture_temperatures,
      ev.eb_noise, seed=seed, score=ev.score, head_chunk=ev.head_chunk)
  logging.info("seed %d: mixture temperature %g, EB noise %g (from %d "
               "source held-out annotators)", seed, tuned.temperature,
               tuned.noise, tuned.annotators)
  return tuned


def compare_adaptive(runs, sizes, dims) -> dict:
  """Adaptive vs random clips, paired by run, for each rule and size.

  runs(row, dim) -> the row's values over runs (the same runs, in the same
  order, for every row). -> {"<rule>@<k>": {dim: {random, adaptive,
  difference (means), t_p (paired t-test), n}}}."""
  out = {}
  for kind in ("most_similar", "mixture", "eb"):
    for k in sizes:
      name = f"{kind}@{_size_name(k)}"
      entry = {}
      for d in dims:
        try:
          rnd = np.asarray(runs(name, d), np.float64)
          ada = np.asarray(runs(ADAPTIVE + name, d), np.float64)
        except KeyError:  # a rule without adaptive rows
          break
        entry[d] = {"random": float(np.nanmean(rnd)),
                    "adaptive": float(np.nanmean(ada)),
                    "difference": float(np.nanmean(ada - rnd)),
                    "t_p": metrics.paired_tests(ada, rnd)["t_p"],
                    "n": len(rnd)}
      if entry:
        out[name] = entry
  return out


def adaptive_markdown(comparison: dict, dims, unit: str,
                      metric: str = "CCC_ind") -> list[str]:
  """The adaptive-vs-random table: means, difference, `*` p < 0.05."""
  n = min((c["n"] for e in comparison.values() for c in e.values()),
          default=0)
  test = ("`*` paired t-test p < 0.05" if n >= metrics.MIN_PAIRS else
          f"no test (n = {n}, fewer than {metrics.MIN_PAIRS})")
  lines = [f"Adaptive vs random enrollment clips ({unit}): {metric} means, "
           f"adaptive minus random, {test}.", "",
           "| rule@k | " + " | ".join(f"random {d} | adaptive {d} | diff {d}"
                                      for d in dims) + " |",
           "|" + "---|" * (1 + 3 * len(dims))]
  for name, entry in comparison.items():
    cells = []
    for d in dims:
      c = entry[d]
      star = "*" if c["t_p"] < 0.05 else ""
      cells += [f"{c['random']:.3f}", f"{c['adaptive']:.3f}",
                f"{c['difference']:+.3f}{star}"]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return lines


def summarize(cells: dict[str, dict], dims,
              metric_names=DIMENSIONAL_METRICS) -> dict:
  """Mean/std over runs + paired tests vs the aggregate row.

  cells[row] maps a run key (seed, fold) to that run's metrics. Runs are
  paired with the aggregate's by key (never by position), every row must
  have exactly the aggregate's runs, and a key can occur only once, so no
  run counts twice. Two tests per cell: over runs (unit: one (seed, fold)
  run, n = runs) and over seeds (unit: a seed's mean over its folds,
  n = seeds; seeds are independent replicates, folds within a seed share
  the pre-trained models).
  """
  base_runs = cells["aggregate"]
  keys = sorted(base_runs)
  seed_of = np.array([k[0] for k in keys])
  seeds = np.unique(seed_of)
  for row, runs in cells.items():
    if sorted(runs) != keys:
      raise ValueError(f"row {row!r} has runs {sorted(runs)}, the aggregate "
                       f"row {keys}: runs cannot be paired")
  rows = {}
  for row, runs in cells.items():
    entry = {}
    for metric in metric_names:
      vals = np.array([runs[k][metric] for k in keys], np.float64)
      base = np.array([base_runs[k][metric] for k in keys], np.float64)
      by_seed, base_seed = (
          np.array([np.nanmean(v[seed_of == s], 0) for s in seeds])
          for v in (vals, base))
      entry[metric] = {}
      for j, d in enumerate(dims):
        cell = {"mean": float(np.nanmean(vals[:, j])),
                "std": float(np.nanstd(vals[:, j])),
                "runs": vals[:, j].tolist(),
                "run_keys": [list(k) for k in keys]}
        if row != "aggregate":
          # mean paired difference vs the aggregate: the marks' direction
          cell["difference"] = float(np.nanmean(vals[:, j] - base[:, j]))
          cell.update(metrics.paired_tests(vals[:, j], base[:, j]))
          cell["seed_t_p"] = metrics.paired_tests(
              by_seed[:, j], base_seed[:, j])["t_p"]
        entry[metric][d] = cell
    rows[row] = entry
  return {"rows": rows, "tests": {
      "runs": {"unit": "run = one (seed, fold); each seed has its own "
                       "pre-trained models and speaker folds",
               "n": len(keys), "tests": "paired t-test (*), Wilcoxon "
                                        "(JSON), vs aggregate"},
      "seeds": {"unit": "seed = mean over its folds (independent "
                        "replicates)", "n": len(seeds),
                "tests": ("paired t-test (+), vs aggregate"
                          if len(seeds) >= metrics.MIN_PAIRS else
                          f"none: fewer than {metrics.MIN_PAIRS} seeds")}}}


_ROW_KINDS = {"most_similar": 0, "mixture": 1, "eb": 2, "linear_fit": 3,
              "calibrated": 4, "finetune": 5}
_ROW_KINDS.update({ADAPTIVE + k: v + 0.5 for k, v in _ROW_KINDS.items()})


_ORACLES = ("oracle", "oracle_calibrated", "oracle_chance")


def _row_order(names):
  fixed = [n for n in ("aggregate", "aggregate_rescaled", "mean_heads",
                       "random_head") if n in names]
  rest = [n for n in names if n not in fixed and n not in _ORACLES]

  def key(n):
    kind, _, size = n.partition("@")
    return (_ROW_KINDS.get(kind, 9), 1e9 if size == "all" else int(size or 0))
  return fixed + sorted(rest, key=key) + [n for n in _ORACLES if n in names]


def _overlap_line(shared) -> str:
  if not shared:
    return ("Leakage check: not run for this table (no prepare in this "
            "call).")
  counts = ", ".join(f"{shared[k]} {k}" for k in prepare_lib.OVERLAP_KINDS)
  line = (f"Leakage check: the target shares {counts} with the "
          "pre-training data.")
  if shared.get("allowed"):
    line += (" **Overlap allowed by config.data.allow_overlap "
             f"({', '.join(shared['allowed'])}): the test material is not "
             "all unseen.**")
  return line


def _mark(cell: dict, test: str, sign: str) -> str:
  """`sign` + `^` / `v` where the cell's test gives p < 0.05 and the row is
  above / below the aggregate (its mean paired difference)."""
  if not cell.get(test, 1.0) < 0.05:  # also False for NaN: no test
    return ""
  diff = cell.get("difference")  # absent in results from before it
  return sign + ("" if diff is None else "^" if diff > 0 else "v")


def _table(rows: dict, names, dims, seed_mark: bool = True) -> list[str]:
  label = {"ccc_ind": "CCC_ind", "ccc_con": "CCC_con",
           "agreement_ind": "agreement_ind", "loglik_ind": "loglik_ind"}
  head = "| row | " + " | ".join(f"{label[m]} {d}" for m in names
                                 for d in dims) + " |"
  lines = [head, "|" + "---|" * (1 + len(names) * len(dims))]
  for row in _row_order(rows):
    cells = []
    for metric in names:
      for d in dims:
        v = rows[row][metric][d]
        star = _mark(v, "t_p", "*")
        if seed_mark:
          star += _mark(v, "seed_t_p", "+")
        cells.append(f"{v['mean']:.3f} +- {v['std']:.3f}{star}")
    lines.append(f"| {row} | " + " | ".join(cells) + " |")
  return lines


# What each row is (results.md's legend), by the part before "@".
ROW_LEGEND = {
    "aggregate": "the consensus model (one head, trained on mean ratings)",
    "aggregate_rescaled": "the aggregate at the raters' typical scale (one "
                          "a x + c for everyone, from the source's held-out "
                          "raters): the baseline an individual row must "
                          "beat",
    "mean_heads": "the mean of all pre-trained heads",
    "random_head": "a random pre-trained head per annotator",
    "most_similar": "the pre-trained head that best fits the k enrollment "
                    "ratings, copied (the paper's method)",
    "mixture": "all heads weighted by a posterior from their enrollment "
               "scores (temperature tuned on source raters)",
    "eb": "empirical-Bayes head: the MAP head under a Gaussian prior fitted "
          "to the pre-trained heads",
    "linear_fit": "the aggregate's output, linearly fit to each annotator's "
                  "k ratings",
    "calibrated": "the aggregate at each annotator's mean and s.d. from the "
                  "k ratings, shrunk toward the identity",
    "finetune": "the most-similar head fine-tuned on the k ratings",
    "oracle": "the best head chosen on the annotator's TEST ratings (an "
              "upper bound, not a method)",
    "oracle_chance": "the oracle's choice with test clips shuffled among "
                     "their ratings: what choosing the best of many heads "
                     "reaches by luck",
    "oracle_calibrated": "the aggregate at each annotator's true mean and "
                         "s.d. (all their ratings): the ceiling of any "
                         "per-annotator calibration",
}


def _legend(names) -> list[str]:
  """One line per kind of row present; @k = k random enrollment clips
  (all = every pool clip), adaptive_ = clips chosen adaptively."""
  kinds = []
  for n in names:
    kind = n.partition("@")[0].removeprefix(ADAPTIVE)
    if kind not in kinds and kind in ROW_LEGEND:
      kinds.append(kind)
  lines = ["Rows (@k: k enrollment clips drawn at random from the "
           "annotator's clips of training-fold speakers, all: every one; "
           "adaptive_: the same rule on adaptively chosen clips):", ""]
  return lines + [f"- {k}: {ROW_LEGEND[k]}" for k in kinds]


_METRIC_LABEL = {"ccc_ind": "CCC_ind"}


def _seed_test_line(seeds: dict) -> str:
  if seeds["n"] < metrics.MIN_PAIRS:
    return (f"- `+^` / `+v`: no test over seeds: n = {seeds['n']} seeds, "
            f"fewer than {metrics.MIN_PAIRS} (set config.eval.seeds).")
  return (f"- `+^` / `+v`: paired t-test over seeds; unit: {seeds['unit']}; "
          f"n = {seeds['n']}.")


def to_markdown(results: dict) -> str:
  p = results["protocol"]
  dims, names = p["columns"], p["metrics"]
  tests = results["tests"]
  lines = [f"# Cross-corpus evaluation ({p['runs']} runs: {p['seeds']} seeds "
           f"x {p['folds']} folds; {p['pretrained_heads']} pre-trained heads, "
           f"{p['target_annotators']} target annotators; score "
           f"{p['score']}, top-{p['top_k']})", "",
           "Mean +- std over runs. Tests vs the aggregate row, paired by run; "
           "`^` / `v`: the row is above / below the aggregate (p < 0.05, "
           "uncorrected for the number of cells):",
           f"- `*^` / `*v`: paired t-test over runs; unit: "
           f"{tests['runs']['unit']}; n = {tests['runs']['n']} "
           "(Wilcoxon p in the JSON).",
           _seed_test_line(tests["seeds"]),
           "", _overlap_line(p.get("overlap_with_pretraining")), ""]
  for w in p.get("warnings", []):
    lines += [f"**Warning: {w}.**", ""]
  lines += _table(results["rows"], names, dims)
  lines += [""] + _legend(_row_order(results["rows"]))
  if "pooled" in results:
    n = results["pooled"]["tests"]["runs"]["n"]
    test = (f"`*^` / `*v`: paired t-test p < 0.05 vs aggregate over seeds "
            f"(n = {n})" if n >= metrics.MIN_PAIRS else
            f"no test: n = {n} seeds, fewer than {metrics.MIN_PAIRS}")
    lines += ["", "Pooled over folds: per seed, each annotator's "
              "out-of-fold predictions from all folds, then one CCC_ind per "
              f"annotator over that set. Mean +- std over seeds; {test}.",
              ""]
    lines += _table(results["pooled"]["rows"], names, dims, seed_mark=False)
  for table, unit in (("per_fold", "paired over runs"),
                      ("pooled", "pooled, paired over seeds")):
    if table in results.get("adaptive_vs_random", {}):
      lines += [""] + adaptive_markdown(
          results["adaptive_vs_random"][table], dims, unit,
          _METRIC_LABEL.get(names[0], names[0]))
  if "type_match" in results:
    lines += ["", "Selected head shares the new annotator's latent type "
              "(synthetic ground truth):", "",
              "| enrollment clips | same type | chance |", "|---|---|---|"]
    for k, v in results["type_match"].items():
      lines.append(f"| {k} | {v['selected_same_type']:.3f} | "
                   f"{v['chance']:.3f} |")
  return "\n".join(lines) + "\n"
