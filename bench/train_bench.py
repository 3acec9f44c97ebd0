"""Training throughput: all heads (dense) vs only the observed heads (sparse).

  python bench/train_bench.py [--heads=100,2000,13000] [--batch=256]

Times the jit-compiled annojax.train.train_step (forward, masked 1 - CCC,
backward, optimizer update) on in-memory batches (by default 1024-d embeddings
as from WavLM-large, 2 dims, hidden 256 as in METHOD.md, 10 raters per
clip), so the figure is the model's cost alone; bench/data_bench.py measures
the input pipeline. Both layouts compute the same loss (checked).
"""

from __future__ import annotations

import argparse
import os
import sys
import functools
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))  # the repository root
from annojax import losses
from annojax import models
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


def bench(a, layout, batches, config, steps):
  meta = pipeline.Meta(dims=("activation", "valence"),
                       annotator_ids=tuple(map(str, range(a))),
                       annotator_types=None,
                       embedding_dim=batches[0][layout]["embedding"].shape[1],
                       split_sizes={})
  graphdef, tx, state = train._initial_state(config, meta, "individual")
  step = jax.jit(functools.partial(
      train.train_step, graphdef=graphdef, tx=tx,
      loss_fn=losses.get("ccc"), seed=0), donate_argnums=0)
  dev = [jax.device_put(b[layout]) for b in batches]
  t0 = time.perf_counter()
  state, m = step(state, dev[0])
  first_loss = float(m["loss"])
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(state)
  t0 = time.perf_counter()
  for i in range(steps):
    state, m = step(state, dev[1 + i % (len(dev) - 1)])
  jax.block_until_ready(state)
  sec = time.perf_counter() - t0
  return steps * len(batches[0][layout]["embedding"]) / sec, compile_s, \
      first_loss


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--heads", default="100,2000,13000")
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--features", type=int, default=1024)
  p.add_argument("--raters", type=int, default=10)
  p.add_argument("--hidden", type=int, default=256)
  args = p.parse_args()
  config = ml_collections.ConfigDict({
      "model": {"hidden": args.hidden, "dropout": 0.2},
      "optim": {"name": "sgd", "learning_rate": 1e-3, "momentum": 0.9},
      "train": {"seed": 0}})
  dev = jax.devices()[0]
  print(f"batch {args.batch}, {args.features}-d embeddings, hidden "
        f"{args.hidden}, 2 dims, {args.raters} raters/clip; device "
        f"{dev.platform}:{dev.device_kind} x{jax.device_count()}\n")
  print("| A heads | dense ex/s | sparse ex/s | sparse / dense | dense "
        "compile s | sparse compile s |")
  print("|---|---|---|---|---|---|")
  for a in [int(x) for x in args.heads.split(",")]:
    batches = make_batches(4, args.batch, a, 2, args.features, args.raters)
    d_eps, d_c, d_loss = bench(a, "dense", batches, config, args.steps)
    s_eps, s_c, s_loss = bench(a, "sparse", batches, config, args.steps)
    # Same params, same data: the first step's loss must agree.
    np.testing.assert_allclose(d_loss, s_loss, rtol=1e-4)
    print(f"| {a} | {d_eps:,.0f} | {s_eps:,.0f} | {s_eps / d_eps:.2f}x | "
          f"{d_c:.2f} | {s_c:.2f} |", flush=True)


if __name__ == "__main__":
  main()
