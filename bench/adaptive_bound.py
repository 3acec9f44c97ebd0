"""How far can ANY choice of enrollment clips go? A clairvoyant designer.

  python bench/adaptive_bound.py --config=configs/default.py --workdir=W[,W2..]
      [--config.a.b=v ...] [--seeds=0,1,2,3,4] [--sizes=5,10,20,30]
      [--out=bench/results/adaptive_bound_default.md]

W: a finished run of `python -m annojax.main` with the same config (its
models and eval/results.json, whose source-tuned temperature and noise are
reused); several (e.g. NSC's partitions from bench/nsc.sh) are pooled into
one table, each with the data.partition_seed of its own config.json. For every (seed, fold) of the protocol and each new annotator,
the enrollment clips are ordered three ways, among the clips they actually
rated in the run's training-speaker pool (as in the protocol):

  random       a random order (the protocol's random draws);
  variance     the product's rule (adaptive.simulate): the clip on which
               the heads in contention disagree most, ratings revealed in
               turn;
  clairvoyant  a designer that KNOWS which head is best for this annotator
               (the oracle head, chosen on their test clips) and asks, each
               round, for the clip that best separates it from the rivals
               the annotator's ratings so far still favour: the largest
               sum_a w_a loss_a (p_a(c) - p_oracle(c))^2, w the mixture
               posterior, loss_a how much worse head a is on the test
               clips. It never sees a rating before choosing its clip.

and the first k of each order enroll the annotator by the protocol's rules
(most_similar = the paper's top-1 copy, the posterior mixture, the EB
head). No real designer knows the oracle head, so where the clairvoyant
order cannot make 10 clips worth 30 random ones, no clip choice can in
practice: the limit is what a rating can tell, not how the clips are
chosen. CCC_ind per fold (as the protocol's first table), mean over the
seeds x folds runs; paired t-tests per run.
"""

import json
import os
import sys

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from annojax import adaptive  # pylint: disable=g-import-not-at-top
from annojax import enroll  # pylint: disable=g-import-not-at-top
from annojax import metrics  # pylint: disable=g-import-not-at-top
from annojax import posterior  # pylint: disable=g-import-not-at-top
from annojax import train  # pylint: disable=g-import-not-at-top
from annojax.data import pipeline  # pylint: disable=g-import-not-at-top
from annojax.data import prepare  # pylint: disable=g-import-not-at-top
from annojax.protocol import folds  # pylint: disable=g-import-not-at-top
import report  # pylint: disable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file("config", "configs/default.py")
_WORKDIR = flags.DEFINE_list("workdir", None, "finished run(s)",
                              required=True)
_SEEDS = flags.DEFINE_string("seeds", "", "evaluation seeds (default all)")
_SIZES = flags.DEFINE_string("sizes", "5,10,20,30", "enrollment sizes")
_OUT = flags.DEFINE_string("out", "", "also write the table here")

POLICIES = ("random", "variance", "clairvoyant")
RULES = ("most_similar", "mixture", "eb")


@jax.jit
def _separation(pred, weights, best):
  """sum_a w_na sum_d (p_a(c, d) - best_n(c, d))^2 -> [N, C]; pred
  [C, A, D], weights [N, A] (summing to 1), best [N, C, D]."""
  m1 = jnp.einsum("na,cad->ncd", weights, pred)
  m2 = jnp.einsum("na,cad->ncd", weights, pred * pred)
  return (m2 - 2 * best * m1 + best * best).sum(-1)


def clairvoyant(pred, loss, oracle):
  """The designer's choice, for adaptive.simulate: per annotator the clip
  of largest sum_a w_a loss_a (p_a(c) - p_oracle(c))^2, -1 if none left."""
  best = jnp.transpose(jnp.asarray(pred)[:, oracle, :], (1, 0, 2))

  def choose(weights, available):
    w = np.asarray(weights) * loss
    w = w / np.maximum(w.sum(1, keepdims=True), 1e-12)
    sep = np.where(available, np.asarray(
        _separation(pred, jnp.asarray(w), best)), -np.inf)
    picks = sep.argmax(1)
    return np.where(np.isfinite(sep[np.arange(len(sep)), picks]), picks, -1)

  return choose


def seed_runs(config, workdir, prepared, table, seed, tuned, sizes):
  """{(policy, rule, k): [CCC_ind [D] per fold]} of one seed."""
  ev = config.eval
  graphdef, params = train.load_best(config, workdir, "individual", prepared,
                                     seed)
  z = train.trunk_features(graphdef, params, table.embeddings)
  kernel, bias = train.head_arrays(params)
  pred = adaptive.head_predictions(z, kernel, bias)
  prior = posterior.fit_prior(kernel, bias, ev.eb_rank)
  out = {}
  for run in folds.fold_runs(table, seed, ev):
    rows = run.test_rows
    pos = np.array([run.pos[a] for a in table.pair_annotator[rows]])
    test = [rows[pos == i] for i in range(len(run.annotators))]
    on_test, _, _, _ = enroll.enrollment_scores(
        z, [table.pair_clip[r] for r in test],
        [table.pair_values[r] for r in test], kernel, bias, score=ev.score,
        head_chunk=ev.head_chunk)
    on_test = np.asarray(on_test)
    oracle = on_test.argmax(1)
    loss = np.maximum(on_test.max(1, keepdims=True) - on_test, 0.0)
    pools = [(table.pair_clip[r], table.pair_values[r])
             for r in run.pool_by_ann]
    orders = {
        "random": [run.rng.permutation(len(r)) for r in run.pool_by_ann],
        "variance": adaptive.simulate(
            z, pred, pools, kernel, bias, tuned["temperature"], max(sizes),
            ev.score, ev.head_chunk),
        "clairvoyant": adaptive.simulate(
            z, pred, pools, kernel, bias, tuned["temperature"], max(sizes),
            ev.score, ev.head_chunk, choose=clairvoyant(pred, loss, oracle))}
    for policy, order in orders.items():
      for k in sizes:
        chosen = [r[o[:k]] for r, o in zip(run.pool_by_ann, order)]
        scores, cidx, y_e, m_e = enroll.enrollment_scores(
            z, [table.pair_clip[c] for c in chosen],
            [table.pair_values[c] for c in chosen], kernel, bias,
            score=ev.score, head_chunk=ev.head_chunk)
        heads = {
            "most_similar": enroll.mapping(
                scores, y_e, m_e, ev.top_k, ev.weighted).head_params(
                    kernel, bias),
            "mixture": posterior.mixture_heads(
                scores, m_e.sum(1), kernel, bias, tuned["temperature"]),
            "eb": posterior.eb_heads(z[cidx], y_e, m_e, prior,
                                     tuned["noise"])}
        for rule, (k_n, b_n) in heads.items():
          p = train.pair_predictions(z, k_n, b_n, table.pair_clip[rows], pos)
          out.setdefault((policy, rule, k), []).append(metrics.ccc_ind(
              p, table.pair_values[rows], table.pair_annotator[rows]))
    p = train.pair_predictions(z, kernel[oracle], bias[oracle],
                               table.pair_clip[rows], pos)
    out.setdefault(("oracle", "", 0), []).append(metrics.ccc_ind(
        p, table.pair_values[rows], table.pair_annotator[rows]))
  return out


def markdown(cells, sizes, dims, title) -> str:
  """Per rule: each policy's CCC_ind at every k; each cell paired with
  random clips at the largest k of the same rule (`*`: adjusted p < 0.05,
  the whole table one family, report.marks)."""
  top = max(sizes)
  keys = [(rule, k, policy, d) for rule in RULES for k in sizes
          for policy in POLICIES for d in range(len(dims))
          if (policy, k) != ("random", top)]  # not the reference itself
  pairs = [(np.array(cells[(policy, rule, k)])[:, d],
            np.array(cells[("random", rule, top)])[:, d])
           for rule, k, policy, d in keys]
  found, sentence = report.marks(pairs, f"random@{top} of the same rule")
  mark = dict(zip(keys, found))
  lines = [title, "",
           f"CCC_ind per fold, mean over runs ({' / '.join(dims)}); "
           f"{sentence}.",
           ""]
  for rule in RULES:
    lines += [f"**{rule}**", "",
              "| clips | " + " | ".join(POLICIES) + " |",
              "|---|" + "---|" * len(POLICIES)]
    for k in sizes:
      row = []
      for policy in POLICIES:
        vals = np.array(cells[(policy, rule, k)])
        row.append(" / ".join(
            f"{np.nanmean(vals[:, d]):.3f}{mark.get((rule, k, policy, d), '')}"
            for d in range(len(dims))))
      lines.append(f"| {k} | " + " | ".join(row) + " |")
    lines.append("")
  oracle = np.array(cells[("oracle", "", 0)]).mean(0)
  lines.append(f"Oracle head (chosen on the test clips): "
               f"{' / '.join(f'{v:.3f}' for v in oracle)}; runs: "
               f"{len(cells[('oracle', '', 0)])}.")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  config = _CONFIG.value
  config.train.progress_bar = False
  sizes = tuple(int(k) for k in _SIZES.value.split(","))
  seeds = ([int(s) for s in _SEEDS.value.split(",")] if _SEEDS.value
           else range(config.eval.seeds))
  cells = {}
  for workdir in _WORKDIR.value:
    with open(os.path.join(workdir, "config.json")) as f:
      part = json.load(f)["data"].get("partition_seed")
    if part is not None:
      config.data.partition_seed = part
    prepared = prepare.prepare(config, workdir)
    table = pipeline.load_table(prepared.target, "full")
    with open(os.path.join(workdir, "eval", "results.json")) as f:
      tuned = json.load(f)["protocol"][
          "posterior_tuning (source held-out annotators)"]
    for seed in seeds:
      for key, v in seed_runs(config, workdir, prepared, table, seed,
                              tuned[seed], sizes).items():
        cells.setdefault(key, []).extend(v)
  dims = pipeline.read_meta(prepared.target).dims
  report.emit(markdown(cells, sizes, dims,
                       f"Clip choice vs a clairvoyant designer: "
                       f"{', '.join(_WORKDIR.value)} (bench/adaptive_bound.py)"
                       f", seeds {','.join(map(str, seeds))} of each."),
              _OUT.value)


if __name__ == "__main__":
  app.run(main)
