"""The protocol's loop: seeds x folds, every selected row on each run,
out-of-fold predictions pooled per seed, paired tests, results.{json,md}
and plots in <workdir>/eval (METHOD.md, Evaluation protocol).

Per-fold table: each row's metrics per (seed, fold) run, mean +- std over
runs. Pooled table, for small targets (a listener with 3-4 test clips per
fold gives a CCC that is mostly noise): per seed, each annotator's
out-of-fold predictions from all folds are pooled and CCC_ind is computed
once over that set (n = seeds). Adaptive rows are compared with their
random rows at the same k in both (adaptive_compare.py).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os

from absl import logging
import jax
import ml_collections
import numpy as np
import tqdm

from annojax import plots
from annojax import train
from annojax.data import prepare as prepare_lib
from annojax.protocol import adaptive_compare
from annojax.protocol import context
from annojax.protocol import diagnostic
from annojax.protocol import folds
from annojax.protocol import rating_distributions
from annojax.protocol import rows as rows_lib
from annojax.protocol import source
from annojax.protocol import summary
from annojax.protocol import tables


@dataclasses.dataclass
class _Collected:
  """What the loop gathers over seeds and folds."""
  cells: dict = dataclasses.field(default_factory=dict)  # row -> {key: m}
  pooled: dict = dataclasses.field(default_factory=dict)  # row -> {(s, 0)}
  type_match: dict = dataclasses.field(default_factory=dict)
  excluded: list = dataclasses.field(default_factory=list)
  warnings: list = dataclasses.field(default_factory=list)
  tuned: list = dataclasses.field(default_factory=list)
  rescale: list = dataclasses.field(default_factory=list)
  blend: list = dataclasses.field(default_factory=list)
  # Rating distributions: row -> {(seed, 0): metrics}; what each seed
  # tuned; the first seed's clips and plot data.
  distributions: dict = dataclasses.field(default_factory=dict)
  distribution_tuned: list = dataclasses.field(default_factory=list)
  distribution_facts: dict = dataclasses.field(default_factory=dict)
  distribution_plot: dict = dataclasses.field(default_factory=dict)
  folds: int = 0
  heads: int = 0


def run_protocol(config: ml_collections.ConfigDict, workdir: str,
                 prepared: prepare_lib.Prepared | None = None) -> dict:
  """Runs the protocol; writes results.{json,md} and plots to <workdir>/eval."""
  prepared = prepared or prepare_lib.prepare(config, workdir)
  target = context.Target(config, prepared)
  selected, left_out = selected_rows(config, target)
  sizes = folds.adaptive_sizes(config.eval)
  got = _Collected()
  if left_out:
    logging.warning("%s", left_out)
    got.warnings.append(left_out)
  bar = tqdm.tqdm(total=config.eval.seeds, desc="evaluate (seeds)",
                  disable=not train.progress_bar(config))
  for seed in range(config.eval.seeds):
    _run_seed(context.Seed(target, workdir, seed), selected, sizes, got)
    bar.update(1)
  bar.close()
  results = _results(target, got, sizes)
  if jax.process_index() == 0:  # every process computed the same results
    _write(results, os.path.join(workdir, "eval"), config.eval, sizes)
    if got.distribution_plot:
      plots.rating_distributions(got.distribution_plot, target.columns,
                                 os.path.join(workdir, "eval"))
  return results


def selected_rows(config, target: context.Target):
  """The rows the protocol runs -> (rows, why some default rows were left
  out, or None): rows that cannot be scored on this target (rating
  distributions without clips of min_ratings ratings) are left out of the
  default selection; named in config.eval.rows, they are an error."""
  for module in config.eval.row_modules:  # rows registered elsewhere
    importlib.import_module(module)
  names = tuple(config.eval.rows)
  selected = rows_lib.select(names, target.categorical,
                             context.families(config))
  named = any(rows_lib.REGISTRY[n].output == rows_lib.DISTRIBUTION
              for n in names)
  return rating_distributions.applicable(
      selected, target.table, config.eval.distribution, named)


def check_rows(config, prepared: prepare_lib.Prepared) -> None:
  """Before any training: the rows config.eval.rows names can be scored on
  the prepared target (an error now, not after hours of training)."""
  selected_rows(config, context.Target(config, prepared))


def _run_seed(seed: context.Seed, selected, sizes, got: _Collected):
  target = seed.target
  if train.warn_if_degenerate(
      f"aggregate model (seed {seed.seed}) on the target",
      seed.aggregate_clip.std(0), target.categorical):
    got.warnings.append(
        f"seed {seed.seed}: the aggregate model's target predictions are "
        f"degenerate (s.d. {np.round(seed.aggregate_clip.std(0), 4).tolist()}"
        ": constant or far outside the rating scale)")
  runs = folds.fold_runs(target.table, seed.seed, seed.ev)
  oof: dict[str, list] = {}  # row -> [(test rows, predictions)] by fold
  for f, run in enumerate(runs):
    got.excluded.append(run.excluded)
    ctx = context.Fold(seed, run, f)
    for row, pred in rows_lib.predict(ctx, selected, sizes).items():
      got.cells.setdefault(row, {})[(seed.seed, f)] = summary.score_row(
          pred, target.table, ctx.rows, target.categorical)
      oof.setdefault(row, []).append((ctx.rows, pred))
    if target.types is not None:
      _record_type_match(ctx, got.type_match)
  for row, parts in oof.items():  # each test pair is in one fold only
    got.pooled.setdefault(row, {})[(seed.seed, 0)] = summary.score_row(
        np.concatenate([p for _, p in parts]), target.table,
        np.concatenate([r for r, _ in parts]), target.categorical)
  if any(r.output == rows_lib.DISTRIBUTION for r in selected):
    _distributions(seed, selected, got)
  # What the seed learnt on the source, where a row used it.
  if "tuned" in vars(seed):
    got.tuned.append(dataclasses.asdict(seed.tuned))
  if "rescale" in vars(seed):
    got.rescale.append({"a": seed.rescale[0].tolist(),
                        "c": seed.rescale[1].tolist()})
  if "blend" in vars(seed):
    got.blend.append({"seed": seed.seed, **seed.blend.to_json()})
  got.folds, got.heads = len(runs), seed.num_heads
  if seed.seed == 0 and jax.process_index() == 0:
    _save_tuning(seed, got)


def _save_tuning(seed: context.Seed, got: _Collected):
  """Seed 0's model is the one exported: what the protocol tuned for it on
  the source, for export to reuse (source.load_tuning)."""
  parts = {}
  if "tuned" in vars(seed):
    parts["posterior"] = {"temperature": float(seed.tuned.temperature),
                          "noise": float(seed.tuned.noise),
                          "annotators": int(seed.tuned.annotators)}
  if "blend" in vars(seed):
    parts["blend"] = seed.blend.to_json()
    parts["rescale"] = {"a": seed.rescale[0].tolist(),
                        "c": seed.rescale[1].tolist()}
  kde = got.distribution_tuned[-1].get("heads_kde") if (
      got.distribution_tuned and got.distribution_tuned[-1]["seed"] == 0
  ) else None
  if kde:
    parts["heads_kde"] = {"width": kde["width"], "shrink": kde["shrink"]}
  if parts:
    source.save_tuning(seed.workdir, seed.tuning_key, parts)


def _distributions(seed: context.Seed, selected, got: _Collected):
  cells, d, mixtures = rating_distributions.evaluate_seed(seed, selected)
  for row, c in cells.items():
    got.distributions.setdefault(row, {})[(seed.seed, 0)] = c
  got.distribution_tuned.append({"seed": seed.seed, **d.tuned})
  if not got.distribution_facts:
    got.distribution_facts = rating_distributions.facts(d)
    got.distribution_plot = rating_distributions.plot_data(
        d, mixtures, seed.ev.distribution.plot_clips)


def _record_type_match(ctx: context.Fold, type_match: dict):
  """Synthetic ground truth: does the top-1 head share the new annotator's
  latent type? For every enrollment set a row scored."""
  src_types, tgt_types = ctx.seed.target.types
  truth = tgt_types[ctx.run.annotators]
  chance = float(np.mean([np.mean(src_types == t) for t in truth]))
  for name, e in ctx.enrollment_sets():
    if e.scored:
      sel = src_types[e.mapping.heads[:, 0]]
      type_match.setdefault(name, []).append(
          (float(np.mean(sel == truth)), chance))


def _results(target: context.Target, got: _Collected, sizes) -> dict:
  ev, columns = target.config.eval, target.columns
  metric_names = (summary.CATEGORICAL_METRICS if target.categorical else
                  summary.DIMENSIONAL_METRICS)
  results = summary.summarize(got.cells, columns, metric_names)
  results["pooled"] = summary.summarize(got.pooled, columns, metric_names)
  results["pooled"]["tests"] = {"runs": {
      "unit": "seed: each annotator's out-of-fold predictions pooled over "
              "the seed's folds", "n": ev.seeds,
      "tests": "paired t-test (*), Wilcoxon (JSON), vs aggregate"},
      "correction": results["pooled"]["tests"]["correction"]}
  if sizes:
    results["adaptive_vs_random"] = {
        which: adaptive_compare.compare_adaptive(
            lambda row, d, part=part: part["rows"][row][metric_names[0]][d][
                "runs"], sizes, columns)
        for which, part in (("per_fold", results),
                            ("pooled", results["pooled"]))}
  if got.distributions:
    results["distributions"] = rating_distributions.summarize(
        got.distributions, columns, ev.seeds, got.distribution_facts,
        got.distribution_tuned)
  results["protocol"] = _protocol_facts(target, got, metric_names)
  check = diagnostic.distinguishable(results)
  if check is not None:
    results["heads_distinguishable"] = check
  if target.types is not None:
    results["type_match"] = {
        k: {"selected_same_type": float(np.mean([v[0] for v in vals])),
            "chance": float(np.mean([v[1] for v in vals]))}
        for k, vals in got.type_match.items()}
  return results


def _protocol_facts(target: context.Target, got: _Collected, metric_names
                    ) -> dict:
  ev, prepared = target.config.eval, target.prepared
  shared = dict(prepared.overlap) if prepared.overlap else None
  return {
      "folds": got.folds, "seeds": ev.seeds,
      "runs": len(got.cells["aggregate"]),
      "fold_by": ev.fold_by or "random speaker partition per seed",
      "target_annotators": target.meta.num_annotators,
      "pretrained_heads": got.heads, "score": ev.score,
      "top_k": ev.top_k, "metrics": list(metric_names),
      "columns": list(target.columns),
      "excluded_annotator_runs (< min_test test ratings)": int(
          np.sum(got.excluded)),
      "overlap_with_pretraining": shared,
      "posterior_tuning (source held-out annotators)": got.tuned,
      "aggregate_rescaled (a, c per seed; source held-out annotators)":
          got.rescale,
      "blend (weights per enrollment size per seed; source held-out "
      "annotators)": got.blend,
      "warnings": got.warnings}


def _write(results: dict, out_dir: str, ev, sizes):
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(out_dir, "results.md"), "w") as f:
    f.write(tables.to_markdown(results))
  columns, metric = results["protocol"]["columns"], results["protocol"][
      "metrics"][0]
  plots.ccc_vs_enrollment(results, columns, ev.enroll_sizes,
                          os.path.join(out_dir, "ccc_ind_vs_k.png"))
  if sizes:
    for part, name, title in ((results, "", ""),
                              (results["pooled"], "_pooled", "pooled: ")):
      plots.adaptive_vs_random(
          part["rows"], metric, columns, sizes,
          os.path.join(out_dir, f"adaptive_vs_random{name}.png"), title)
  logging.info("evaluation written to %s", out_dir)
