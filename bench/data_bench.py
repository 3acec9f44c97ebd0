"""Input pipeline: TFDS array_record reads vs numpy arrays already in memory.

  python bench/data_bench.py [--workdir=/tmp/annojax_bench_data]
      [--embedding_dim=64]

Prepares the embedded synthetic default (source corpus, ~11k training clips;
--embedding_dim sets its embedding size) once, then builds one epoch of
shuffled sparse-layout training batches of --batch clips three ways: (1)
annojax's TFDS data source with no cache (every epoch decodes the records
from disk), (2) the same with the in-memory cache warm (epochs after the
first), (3) numpy indexing into preloaded arrays, clip by clip (the
reference of the first version of this benchmark). The three run in
interleaved rounds; each reports its best round, as examples/s and as a
ratio to numpy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))  # the repository root
from annojax.data import pipeline
from annojax.data import prepare
from configs import default


def epoch_tfds(reader, batch, kw):
  n = 0
  for b in pipeline.train_batches(reader, batch, 0, 0, **kw):
    n += len(b["embedding"])
  return n


def epoch_numpy(table, perm, batch, k, dims):
  starts = np.concatenate([[0], np.cumsum(np.bincount(
      table.pair_clip, minlength=len(table.clip_ids)))])
  n = 0
  for s in range(len(perm) // batch):
    rows = perm[s * batch:(s + 1) * batch]
    emb = table.embeddings[rows]
    ann = np.zeros((batch, k), np.int32)
    lab = np.zeros((batch, k, dims), np.float32)
    mask = np.zeros((batch, k), np.float32)
    for i, r in enumerate(rows):
      lo, hi = starts[r], starts[r + 1]
      ann[i, :hi - lo] = table.pair_annotator[lo:hi]
      lab[i, :hi - lo] = table.pair_values[lo:hi]
      mask[i, :hi - lo] = 1
    n += len(emb)
  return n


def timed(fns: dict, repeats: int) -> dict:
  """{name: examples/s of its best round}, the rounds interleaved."""
  best = {k: float("inf") for k in fns}
  for _ in range(repeats):
    for k, fn in fns.items():
      t0 = time.perf_counter()
      n = fn()
      best[k] = min(best[k], (time.perf_counter() - t0) / n)
  return {k: 1.0 / v for k, v in best.items()}


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--workdir", default="/tmp/annojax_bench_data")
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--embedding_dim", type=int, default=64)
  args = p.parse_args()
  config = default.get_config()
  config.data.synthetic.embedding_dim = args.embedding_dim
  t0 = time.perf_counter()
  prepared = prepare.prepare(config, args.workdir)
  print(f"prepare (or reuse): {time.perf_counter() - t0:.1f}s")
  meta = pipeline.read_meta(prepared.source)
  k = pipeline.max_raters(prepared.source, "train")
  kw = dict(layout="sparse", num_annotators=meta.num_annotators,
            num_dims=len(meta.dims), embedding_dim=meta.embedding_dim,
            max_raters=k)
  cold = pipeline.SplitReader(prepared.source, "train", cache=False)
  warm = pipeline.SplitReader(prepared.source, "train", cache=True)
  epoch_tfds(warm, args.batch, kw)  # fill the cache
  table = pipeline.load_table(prepared.source, "train")
  perm = np.random.default_rng(0).permutation(len(table.clip_ids))
  res = timed({
      "TFDS data source, no cache": lambda: epoch_tfds(cold, args.batch, kw),
      "TFDS data source, cache warm": lambda: epoch_tfds(warm, args.batch,
                                                         kw),
      "numpy in memory": lambda: epoch_numpy(table, perm, args.batch, k,
                                             len(meta.dims))}, args.repeats)
  print(f"\n{len(cold)} training clips, batch {args.batch}, sparse layout "
        f"(K={k}), {meta.embedding_dim}-d embeddings\n")
  print("| reader | examples/s | vs numpy |")
  print("|---|---|---|")
  for name, eps in res.items():
    print(f"| {name} | {eps:,.0f} | {eps / res['numpy in memory']:.2f}x |")


if __name__ == "__main__":
  main()
