"""The cross-corpus evaluation protocol (METHOD.md, Evaluation protocol).

Target-corpus speakers are split into `folds` speaker-independent folds; for
each (seed, fold): test speakers = the fold, a quarter of the other speakers
is validation, the rest are training speakers. A target annotator's
enrollment clips are drawn (seeded) from the clips of training speakers they
rated; they are tested on the clips of test speakers they rated (annotators
with < eval.min_test test ratings leave CCC_ind, counted).

Rows (each gives one prediction per test (clip, annotator) pair):
  aggregate      the consensus model, same prediction for everyone
  mean_heads     the mean of all pre-trained heads
  random_head    a random pre-trained head per annotator
  most_similar@k the best-scoring head on k enrollment clips (k=all: every
                 training-speaker clip the annotator rated)
  linear_fit@k   per-annotator ridge fit y ~ a * aggregate + c on the same k
                 clips (pulled toward a=1, c=0)
  finetune@k     the most-similar head, fine-tuned on the k clips
  oracle         the best head chosen on the test clips (an upper bound)
Metrics: CCC_ind and CCC_con per dimension, mean +- std over seeds x folds,
paired t-test and Wilcoxon against the aggregate row on the same runs.
"""

from __future__ import annotations

import functools
import json
import os

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from annojax import enroll
from annojax import losses
from annojax import metrics
from annojax import plots
from annojax import train
from annojax.data import pipeline
from annojax.data import prepare as prepare_lib


def speaker_folds(speakers: np.ndarray, n_folds: int) -> list[np.ndarray]:
  """Speaker-independent folds (fixed, sorted speaker order)."""
  uniq = np.unique(speakers)
  if len(uniq) < n_folds:
    raise ValueError(f"{len(uniq)} speakers cannot make {n_folds} folds")
  return np.array_split(uniq, n_folds)


def _size_name(k: int) -> str:
  return "all" if k == 0 else str(k)


def _sample_enrollment(rng, pool_rows_by_ann, k):
  """Per annotator, k random pool pairs (all if k == 0 or fewer exist)."""
  return [rows if (k == 0 or len(rows) <= k) else
          rng.choice(rows, size=k, replace=False) for rows in
          pool_rows_by_ann]


def _linear_fit(x, y, mask, ridge):
  """Per annotator/dim ridge fit y ~ a x + c, prior a=1, c=0 -> (a, c)."""
  m = mask[..., None]
  sxx = (m * x * x).sum(1) + ridge
  sx = (m * x).sum(1)
  n = m.sum(1) + ridge
  sxy = (m * x * y).sum(1) + ridge
  sy = (m * y).sum(1)
  det = sxx * n - sx * sx
  return (sxy * n - sx * sy) / det, (sxx * sy - sx * sxy) / det


@functools.partial(jax.jit, static_argnames=("steps",))
def _finetune(kernel0, bias0, z, y, mask, steps, lr, l2):
  """Head-only Adam on each annotator's enrollment clips, all at once.

  kernel0 [N, D, H], bias0 [N, D], z [N, K, D, H], y [N, K, D], mask [N, K].
  Loss per annotator: masked MSE + l2 * ||head - mapped head||^2.
  """
  tx = optax.adam(lr)

  def loss_fn(params):
    k, b = params
    p = jnp.einsum("nkdh,ndh->nkd", z, k) + b[:, None]
    m = mask[..., None]
    mse = (m * (p - y) ** 2).sum((1, 2)) / jnp.maximum(mask.sum(1), 1)
    reg = ((k - kernel0) ** 2).sum((1, 2)) + ((b - bias0) ** 2).sum(1)
    return (mse + l2 * reg).sum()  # separable: independent per annotator

  def body(_, carry):
    params, opt = carry
    g = jax.grad(loss_fn)(params)
    upd, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, upd), opt

  params = (kernel0, bias0)
  return jax.lax.fori_loop(0, steps, body, (params, tx.init(params)))[0]


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
    order = np.argsort(ann[pool], kind="stable")
    starts = np.searchsorted(ann[pool][order], self.annotators)
    self.pool_by_ann = np.split(pool[order], starts[1:])
    self.rng = rng


DIMENSIONAL_METRICS = ("ccc_ind", "ccc_con")
CATEGORICAL_METRICS = ("agreement_ind", "loglik_ind")


def _evaluate_row(pred, table, rows, categorical=False):
  y = table.pair_values[rows]
  ann = table.pair_annotator[rows]
  if categorical:  # one column, "all": means over annotators
    return {"agreement_ind": [metrics.agreement_ind(pred, y, ann).mean()],
            "loglik_ind": [metrics.loglik_ind(pred, y, ann).mean()]}
  return {"ccc_ind": metrics.ccc_ind(pred, y, ann),
          "ccc_con": metrics.ccc_con(pred, y, table.pair_clip[rows])}


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
  # the linear-fit and fine-tune rows are defined for ratings only.
  categorical = config.train.loss in losses.CATEGORICAL
  metric_names = CATEGORICAL_METRICS if categorical else DIMENSIONAL_METRICS
  columns = ("all",) if categorical else tgt_meta.dims
  g_ia, p_ia = train.load_best(config, workdir, "individual", prepared)
  g_ag, p_ag = train.load_best(config, workdir, "aggregate", prepared)

  z = train.trunk_features(g_ia, p_ia, table.embeddings)  # [C, D, H]
  kernel, bias = train.head_arrays(p_ia)
  k_ag, b_ag = train.head_arrays(p_ag)
  agg_clip = np.einsum("cdh,dh->cd", train.trunk_features(
      g_ag, p_ag, table.embeddings), k_ag[0]) + b_ag[0]
  mean_clip = np.einsum("cdh,dh->cd", z, kernel.mean(0)) + bias.mean(0)
  src_types = src_meta.annotator_types
  tgt_types = tgt_meta.annotator_types
  have_types = src_types is not None and tgt_types is not None

  def head_pred(rows, ann_pos, k_n, b_n):
    return train.pair_predictions(z, k_n, b_n, table.pair_clip[rows],
                                  ann_pos)

  folds = speaker_folds(table.speakers, ev.folds)
  cells: dict[str, list] = {}
  type_match: dict[str, list] = {}
  excluded = []
  total = ev.seeds * ev.folds
  bar = tqdm.tqdm(total=total, desc="evaluate (seed x fold)",
                  disable=not train.progress_bar(config))
  for seed in range(ev.seeds):
    for f, test_speakers in enumerate(folds):
      run = _Run(table, table.speakers, test_speakers, seed, f, ev.min_test)
      excluded.append(run.excluded)
      rows = run.test_rows
      pos = np.array([run.pos[a] for a in table.pair_annotator[rows]])
      out = {}
      out["aggregate"] = agg_clip[table.pair_clip[rows]]
      out["mean_heads"] = mean_clip[table.pair_clip[rows]]
      rand = run.rng.integers(len(kernel), size=len(run.annotators))
      out["random_head"] = head_pred(rows, pos, kernel[rand], bias[rand])
      # Oracle: choose on the test clips themselves.
      test_by_ann = [rows[pos == i] for i in range(len(run.annotators))]
      oracle = enroll.enroll(
          z, [table.pair_clip[r] for r in test_by_ann],
          [table.pair_values[r] for r in test_by_ann], kernel, bias,
          score=ev.score, head_chunk=ev.head_chunk)
      out["oracle"] = head_pred(rows, pos, *oracle.head_params(kernel, bias))
      for k in ev.enroll_sizes:
        name = _size_name(k)
        chosen = _sample_enrollment(run.rng, run.pool_by_ann, k)
        clips = [table.pair_clip[c] for c in chosen]
        ys = [table.pair_values[c] for c in chosen]
        mapping = enroll.enroll(
            z, clips, ys, kernel, bias, score=ev.score, top_k=ev.top_k,
            weighted=ev.weighted, head_chunk=ev.head_chunk,
            names=[tgt_meta.annotator_ids[a] for a in run.annotators])
        k_n, b_n = mapping.head_params(kernel, bias)
        out[f"most_similar@{name}"] = head_pred(rows, pos, k_n, b_n)
        if categorical:
          continue
        cidx, y_e, m_e = enroll.pack(clips, ys)
        a, c = _linear_fit(agg_clip[cidx], y_e, m_e, ev.linear_ridge)
        out[f"linear_fit@{name}"] = (a[pos] * agg_clip[table.pair_clip[rows]]
                                     + c[pos])
        k_f, b_f = _finetune(k_n, b_n, z[cidx], y_e, m_e, ev.finetune_steps,
                             ev.finetune_lr, ev.finetune_l2)
        out[f"finetune@{name}"] = head_pred(rows, pos, np.asarray(k_f),
                                            np.asarray(b_f))
        if have_types:
          sel = src_types[mapping.heads[:, 0]]
          truth = tgt_types[run.annotators]
          chance = np.mean([np.mean(src_types == t) for t in truth])
          type_match.setdefault(name, []).append(
              (float(np.mean(sel == truth)), float(chance)))
      for row, pred in out.items():
        cells.setdefault(row, []).append(
            _evaluate_row(pred, table, rows, categorical))
      bar.update(1)
  bar.close()

  results = summarize(cells, columns, metric_names)
  results["protocol"] = {
      "folds": ev.folds, "seeds": ev.seeds, "runs": total,
      "target_annotators": tgt_meta.num_annotators,
      "pretrained_heads": len(kernel), "score": ev.score,
      "top_k": ev.top_k, "metrics": list(metric_names),
      "columns": list(columns),
      "excluded_annotator_runs (< min_test test ratings)": int(
          np.sum(excluded))}
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
  logging.info("evaluation written to %s", out_dir)
  return results


def summarize(cells: dict[str, list], dims,
              metric_names=DIMENSIONAL_METRICS) -> dict:
  """Mean/std over runs + paired tests vs the aggregate row."""
  rows = {}
  for row, runs in cells.items():
    entry = {}
    for metric in metric_names:
      vals = np.array([r[metric] for r in runs])  # [runs, D]
      base = np.array([r[metric] for r in cells["aggregate"]])
      entry[metric] = {
          d: {"mean": float(np.nanmean(vals[:, j])),
              "std": float(np.nanstd(vals[:, j])),
              **({} if row == "aggregate" else
                 metrics.paired_tests(vals[:, j], base[:, j])),
              "runs": vals[:, j].tolist()}
          for j, d in enumerate(dims)}
    rows[row] = entry
  return {"rows": rows}


def _row_order(names):
  fixed = ["aggregate", "mean_heads", "random_head"]
  rest = [n for n in names if n not in fixed and n != "oracle"]

  def key(n):
    kind, _, size = n.partition("@")
    order = {"most_similar": 0, "linear_fit": 1, "finetune": 2}
    return (order.get(kind, 9), 1e9 if size == "all" else int(size or 0))
  return fixed + sorted(rest, key=key) + ["oracle"]


def to_markdown(results: dict) -> str:
  p = results["protocol"]
  dims, names = p["columns"], p["metrics"]
  lines = [f"# Cross-corpus evaluation ({p['runs']} runs: {p['seeds']} seeds "
           f"x {p['folds']} folds; {p['pretrained_heads']} pre-trained heads, "
           f"{p['target_annotators']} target annotators; score "
           f"{p['score']}, top-{p['top_k']})", "",
           "Mean +- std over runs. `*`: paired t-test p < 0.05 vs aggregate "
           "(Wilcoxon p in the JSON).", ""]
  label = {"ccc_ind": "CCC_ind", "ccc_con": "CCC_con",
           "agreement_ind": "agreement_ind", "loglik_ind": "loglik_ind"}
  head = "| row | " + " | ".join(f"{label[m]} {d}" for m in names
                                 for d in dims) + " |"
  lines += [head, "|" + "---|" * (1 + len(names) * len(dims))]
  for row in _row_order(results["rows"]):
    e = results["rows"][row]
    cells = []
    for metric in names:
      for d in dims:
        v = e[metric][d]
        star = "*" if v.get("t_p", 1.0) < 0.05 else ""
        cells.append(f"{v['mean']:.3f} +- {v['std']:.3f}{star}")
    lines.append(f"| {row} | " + " | ".join(cells) + " |")
  if "type_match" in results:
    lines += ["", "Selected head shares the new annotator's latent type "
              "(synthetic ground truth):", "",
              "| enrollment clips | same type | chance |", "|---|---|---|"]
    for k, v in results["type_match"].items():
      lines.append(f"| {k} | {v['selected_same_type']:.3f} | "
                   f"{v['chance']:.3f} |")
  return "\n".join(lines) + "\n"
