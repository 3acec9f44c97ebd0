"""Training throughput against the number of heads, layout and head update.

  python bench/train_bench.py [--heads=100,2000,13000,20000] [--batch=32,256]

Times the jit-compiled annojax.train.train_step (forward, masked 1 - CCC,
backward, optimizer update) on in-memory batches (by default 1024-d embeddings
as from WavLM-large, 2 dims, hidden 256 as in METHOD.md, 10 raters per
clip), so the figure is the model's cost alone; bench/data_bench.py measures
the input pipeline. Columns: the dense label layout (all heads, masked); the
sparse layout (only the rated heads) with the optax update of every head; and
the sparse layout with row-sparse head updates (annojax/head_optim.py), SGD
(exact) and Adam (lazy). Every column computes the same first loss (checked).
--profile lists the costliest XLA ops of a step (jax.profiler trace).
--per-call=1,8,32 compares steps per dispatch (config.train.steps_per_call:
the step scanned over blocks of batches on the device) instead.
--families=heads,lowrank,embedding times each annotator family
(config.model.annotators, annojax/models.py) in each column, side by side
(columns "<family> / <variant>"; the first loss is checked within a family).

  python bench/train_bench.py --heads=2000,20000 --batch=32,256 \
      --variants="row-sparse SGD (exact)" --families=heads,lowrank,embedding \
      --profile=
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import ml_collections
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))  # the repository root
from annojax import train
from annojax.data import pipeline


def make_batches(n_batches, batch, a, d, f, raters, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n_batches):
    ann = np.stack([rng.choice(a, raters, replace=False)
                    for _ in range(batch)]).astype(np.int32)
    vals = rng.uniform(-1, 1, (batch, raters, d)).astype(np.float32)
    emb = rng.standard_normal((batch, f), dtype=np.float32)
    dense_y = np.zeros((batch, a, d), np.float32)
    dense_m = np.zeros((batch, a), np.float32)
    rows = np.arange(batch)[:, None]
    dense_y[rows, ann] = vals
    dense_m[rows, ann] = 1.0
    valid = np.ones((batch,), np.float32)
    out.append({
        "dense": {"embedding": emb, "labels": dense_y, "label_mask": dense_m,
                  "valid": valid},
        "sparse": {"embedding": emb, "labels": vals, "annotators": ann,
                   "label_mask": np.ones((batch, raters), np.float32),
                   "valid": valid}})
  return out


# (label layout, head update, optimizer) of each column.
VARIANTS = {
    "dense layout": ("dense", "dense", "sgd"),
    "sparse layout + optax update": ("sparse", "dense", "sgd"),
    "row-sparse SGD (exact)": ("sparse", "sparse", "sgd"),
    "row-sparse Adam (lazy)": ("sparse", "sparse", "adam"),
}


def _setup(a, variant, batches, config):
  family, _, variant = variant.rpartition(" / ")
  config.model.annotators = family or "heads"
  layout, update, opt = VARIANTS[variant]
  config.data.layout, config.optim.head_update = layout, update
  config.optim.name = opt
  meta = pipeline.Meta(dims=("activation", "valence"),
                       annotator_ids=tuple(map(str, range(a))),
                       annotator_types=None,
                       embedding_dim=batches[0][layout]["embedding"].shape[1],
                       split_sizes={})
  graphdef, tx, state = train._initial_state(config, meta, "individual")  # pylint: disable=protected-access
  fn = train.step_function(config, meta, "individual", graphdef, tx, seed=0)
  return layout, meta, graphdef, state, fn


def bench(cells, batches, config, steps, rounds):
  """{(heads, variant): (examples/s, first-step compile s, first loss)}.

  Every cell is compiled first, then all are timed in `rounds` interleaved
  rounds of `steps` steps each, so a slow spell of a shared machine hits
  every cell alike; the rate is the median over rounds.
  """
  runs, out = {}, {}
  for a, v in cells:
    layout, _, _, state, fn = _setup(a, v, batches[a], config)
    step = jax.jit(fn, donate_argnums=0)
    dev = [jax.device_put(b[layout]) for b in batches[a]]
    t0 = time.perf_counter()
    state, m = step(state, dev[0])
    first_loss = float(m["loss"])
    jax.block_until_ready(state)
    runs[a, v] = [step, state, dev, []]
    out[a, v] = [time.perf_counter() - t0, first_loss]
  for _ in range(rounds):
    for cell in cells:
      step, state, dev, times = runs[cell]
      t0 = time.perf_counter()
      for i in range(steps):
        state, _ = step(state, dev[1 + i % (len(dev) - 1)])
      jax.block_until_ready(state)
      times.append(time.perf_counter() - t0)
      runs[cell][1] = state
  return {c: (steps * len(batches[c[0]][0]["sparse"]["embedding"])
              / float(np.median(runs[c][3])), *out[c]) for c in cells}


def bench_per_call(cells, batches, config, per_call, blocks, rounds):
  """{(heads, variant, K): examples/s} with K steps per dispatch
  (train.multi_step_function: lax.scan over K batches stacked on the
  device; K = 1: the plain jitted step), `blocks` dispatches per round,
  rounds interleaved over every cell, median over rounds."""
  runs = {}
  for a, v in cells:
    for k in per_call:  # a fresh state each (the calls donate it)
      layout, _, _, state, fn = _setup(a, v, batches[a], config)
      one = [b[layout] for b in batches[a]]
      if k == 1:
        call = jax.jit(fn, donate_argnums=0)
        data = [jax.device_put(b) for b in one]
      else:
        call = jax.jit(train.multi_step_function(fn), donate_argnums=0)
        data = [jax.device_put({key: np.stack([one[(i + j) % len(one)][key]
                                               for j in range(k)])
                                for key in one[0]}) for i in range(2)]
      state, _ = call(state, data[0])  # compile
      jax.block_until_ready(state)
      runs[a, v, k] = [call, state, data, []]
  for _ in range(rounds):
    for cell, run in runs.items():
      call, state, data, times = run
      t0 = time.perf_counter()
      for i in range(blocks * (max(per_call) // cell[2])):
        state, _ = call(state, data[i % len(data)])
      jax.block_until_ready(state)
      times.append(time.perf_counter() - t0)
      run[1] = state
  b = len(batches[cells[0][0]][0]["sparse"]["embedding"])
  return {c: blocks * max(per_call) * b / float(np.median(r[3]))
          for c, r in runs.items()}


def profile(a, variant, batches, config, steps, top=12):
  """[(ms per step, XLA op, its output shape)] of the `top` costliest ops of
  the jitted step, from a jax.profiler trace of `steps` steps."""
  import collections  # pylint: disable=g-import-not-at-top
  import glob  # pylint: disable=g-import-not-at-top
  import gzip  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  layout, _, _, state, fn = _setup(a, variant, batches, config)
  step = jax.jit(fn, donate_argnums=0)
  batch = jax.device_put(batches[0][layout])
  hlo = step.lower(state, batch).compile().as_text()
  for _ in range(3):
    state, _ = step(state, batch)
  jax.block_until_ready(state)
  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d, create_perfetto_trace=True):
      for _ in range(steps):
        state, _ = step(state, batch)
      jax.block_until_ready(state)
    trace = glob.glob(f"{d}/**/*perfetto_trace.json.gz", recursive=True)
    with gzip.open(trace[0]) as f:
      events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  total = collections.Counter()
  for e in events:
    name = e.get("name", "")
    if e.get("ph") == "X" and re.search(rf"\s%{re.escape(name)} = ", hlo):
      total[name] += e["dur"]
  out = []
  for name, us in total.most_common(top):
    line = re.search(rf"\s%{re.escape(name)} = ([^ ]+)", hlo).group(1)
    out.append((us / steps / 1e3, name, line.split("{")[0]))
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--heads", default="100,2000,13000,20000")
  p.add_argument("--batch", default="32,256",
                 help="comma-separated global batch sizes")
  p.add_argument("--steps", type=int, default=10,
                 help="steps per timed round")
  p.add_argument("--rounds", type=int, default=5,
                 help="interleaved rounds per variant (median reported)")
  p.add_argument("--features", type=int, default=1024)
  p.add_argument("--raters", type=int, default=10)
  p.add_argument("--hidden", type=int, default=256)
  p.add_argument("--variants", default=",".join(VARIANTS),
                 help="comma-separated columns, of: " + ", ".join(VARIANTS))
  p.add_argument("--families", default="",
                 help="comma-separated annotator families to compare in "
                      "every column ('' = heads only)")
  p.add_argument("--profile", default="2000,20000",
                 help="heads at which to split a step's time ('' = none)")
  p.add_argument("--per-call", default="",
                 help="comma-separated steps per dispatch to compare, e.g. "
                      "1,8,32 (config.train.steps_per_call: lax.scan over "
                      "blocks of batches); '' = none. Replaces the variant "
                      "table")
  args = p.parse_args()
  config = ml_collections.ConfigDict({
      "model": {"hidden": args.hidden, "dropout": 0.2,
                "annotators": "heads", "embedding_dim": 16,
                "decoder_hidden": 64},
      "optim": {"name": "sgd", "learning_rate": 1e-3, "momentum": 0.9,
                "head_update": "dense"},
      "train": {"seed": 0, "loss": "ccc"}, "data": {"layout": "sparse"}})
  variants = args.variants.split(",")
  if args.families:
    variants = [f"{f} / {v}" for v in variants
                for f in args.families.split(",")]
  heads = [int(x) for x in args.heads.split(",")]
  dev = jax.devices()[0]
  print(f"{args.features}-d embeddings, hidden {args.hidden}, 2 dims, "
        f"{args.raters} raters/clip; device {dev.platform}:{dev.device_kind}"
        f" x{jax.device_count()}; examples/s (first-step compile s)")
  if args.per_call:
    ks = [int(x) for x in args.per_call.split(",")]
    for batch in [int(x) for x in args.batch.split(",")]:
      batches = {a: make_batches(4, batch, a, 2, args.features, args.raters)
                 for a in heads}
      res = bench_per_call([(a, v) for a in heads for v in variants],
                           batches, config, ks, 2, args.rounds)
      print(f"\nbatch {batch}: examples/s (x one step per call)\n")
      print("| A heads | variant | " + " | ".join(f"{k} per call"
                                                   for k in ks) + " |")
      print("|---" * (len(ks) + 2) + "|")
      for a in heads:
        for v in variants:
          base = res[a, v, ks[0]]
          print(f"| {a} | {v} | " + " | ".join(
              f"{res[a, v, k]:,.0f} ({res[a, v, k] / base:.2f}x)"
              for k in ks) + " |", flush=True)
    return
  for batch in [int(x) for x in args.batch.split(",")]:
    print(f"\nbatch {batch}\n")
    print("| A heads | " + " | ".join(variants) + " |")
    print("|---" * (len(variants) + 1) + "|")
    batches = {a: make_batches(4, batch, a, 2, args.features, args.raters)
               for a in heads}
    res = bench([(a, v) for a in heads for v in variants], batches, config,
                args.steps, args.rounds)
    for a in heads:
      # Same params, same data: every column's first loss must agree.
      for fam in {v.rpartition(" / ")[0] for v in variants}:
        first = [res[a, v][2] for v in variants
                 if v.rpartition(" / ")[0] == fam]
        np.testing.assert_allclose(first, first[0], rtol=1e-4)
      print(f"| {a} | " + " | ".join(
          f"{res[a, v][0]:,.0f} ({res[a, v][1]:.1f})" for v in variants)
            + " |", flush=True)
    for v in variants:
      if len(heads) > 1:
        print(f"- {v}: {heads[-1]} heads at "
              f"{res[heads[-1], v][0] / res[heads[0], v][0]:.2f}x the rate "
              f"at {heads[0]}")
  if args.profile:
    print("\nWhere a step's time goes (batch 256, jax.profiler trace; the "
          "costliest XLA ops, ms per step):")
    for a in [int(x) for x in args.profile.split(",")]:
      batches = make_batches(1, 256, a, 2, args.features, args.raters)
      for v in variants:
        if v.endswith("dense layout"):
          continue
        ops = profile(a, v, batches, config, args.steps)
        print(f"\n{a} heads, {v}: top {len(ops)} ops "
              f"{sum(o[0] for o in ops):.2f} ms\n")
        print("| ms | op | output |")
        print("|---|---|---|")
        for ms, name, shape in ops:
          print(f"| {ms:.2f} | {name} | {shape} |", flush=True)


if __name__ == "__main__":
  main()
