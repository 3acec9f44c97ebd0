"""Enrollment search: batched annojax.enroll vs a per-candidate numpy loop.

  python bench/enroll_bench.py [--heads=500,5000,20000] [--new=10,1000]
      [--only-beyond] [--only-adaptive --adaptive=NxAxPOOL]
      [--only-families --families=NxA]
      [--only-precision --precision=NxA,...]

--families: each annotator family's enrollment (models.py, annojax/
rater_embeddings.py) beside the heads' top-1 search, for N new annotators x
A pre-trained ones, interleaved in one process: the copy rule (score every
pre-trained annotator, copy the best) and the fit rule (lowrank: closed-form
MAP; embedding: config.eval.embedding_fit_steps Adam steps).

Both methods score the same inputs (N new annotators x K enrollment clips,
A candidate heads, D dims, H features). The loop is the straightforward
implementation: for each head, predict every annotator's clips, then the
summed per-dimension CCC. Each (method, A, N) runs in its own subprocess so
peak memory is that method's alone: the rise of peak RSS above the RSS
before a call, measured after the warm-up call (peak reset via
/proc/self/clear_refs), so it is the steady-state working memory. Times are the best of --repeats
after one warm-up call (the batched call's compile is reported separately).
Prints a markdown table; scores of both methods are checked to agree.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))  # the repository root


def _rss_mib() -> float:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _peak_mib() -> float:
  with open("/proc/self/status") as f:
    return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) / 1024


def _reset_peak() -> None:
  # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current.
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")


def make_inputs(n, a, k, d, h, seed=0):
  rng = np.random.default_rng(seed)
  z = rng.standard_normal((n, k, d, h), dtype=np.float32)
  kernel = rng.standard_normal((a, d, h), dtype=np.float32) / np.sqrt(h)
  bias = rng.standard_normal((a, d), dtype=np.float32) * 0.1
  sizes = rng.integers(max(2, k // 2), k + 1, n)  # variable enrollment sizes
  mask = (np.arange(k)[None] < sizes[:, None]).astype(np.float32)
  y = rng.standard_normal((n, k, d), dtype=np.float32)
  return z, y, mask, kernel, bias


def loop_scores(z, y, mask, kernel, bias):
  """One head at a time, numpy: the baseline."""
  n, k, d, h = z.shape
  out = np.empty((n, len(kernel)), np.float32)
  zf = z.transpose(2, 0, 1, 3).reshape(d, n * k, h)  # one matmul per dim
  cnt = mask.sum(1)
  for a in range(len(kernel)):
    p = np.stack([zf[j] @ kernel[a, j] for j in range(d)], -1).reshape(
        n, k, d) + bias[a]
    m = mask[..., None]
    mp = (m * p).sum(1) / cnt[:, None]
    my = (m * y).sum(1) / cnt[:, None]
    dp, dy = m * (p - mp[:, None]), m * (y - my[:, None])
    cov = (dp * dy).sum(1) / cnt[:, None]
    vp = (dp * dp).sum(1) / cnt[:, None]
    vy = (dy * dy).sum(1) / cnt[:, None]
    out[:, a] = (2 * cov / (vp + vy + (mp - my) ** 2 + 1e-8)).sum(-1)
  return out


def child(method, n, a, k, d, h, repeats, loop_heads):
  z, y, mask, kernel, bias = make_inputs(n, a, k, d, h)
  scale = 1.0
  if method == "loop" and loop_heads and a > loop_heads:
    # The loop's cost is exactly linear in A (one head at a time): time the
    # first loop_heads heads and scale; the table marks these with '*'.
    scale = a / loop_heads
    kernel, bias = kernel[:loop_heads], bias[:loop_heads]
  if method == "batched":
    import jax
    from annojax import enroll
    args = [jax.device_put(x) for x in (z, y, mask, kernel, bias)]
    jax.block_until_ready(args)
    run = lambda: np.asarray(enroll.score_heads(*args))
  else:
    run = lambda: loop_scores(z, y, mask, kernel, bias)
  first = 0.0
  if method == "batched":  # warm-up: the batched call compiles here
    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
  _reset_peak()
  base = _rss_mib()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    scores = run()
    times.append(time.perf_counter() - t0)
  device, device_peak = "cpu", None
  if method == "batched":
    import jax
    dev = jax.devices()[0]
    device = f"{dev.platform}:{dev.device_kind}"
    stats = dev.memory_stats() if dev.platform != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:  # accelerator memory
      device_peak = stats["peak_bytes_in_use"] / 2 ** 20
  return {"method": method, "n": n, "a": a, "seconds": min(times) * scale,
          "extrapolated": scale != 1.0,
          "first_call": first, "peak_mib": max(0.0, _peak_mib() - base),
          "checksum": scores[:3, :50].tolist(), "device": device,
          "device_peak_mib": device_peak}


def beyond_top1(n, a, k, d, h, repeats):
  """Seconds of the top-1 search (score every head, pick the best, gather
  its weights) against the posterior mixture (score every head, softmax-
  weighted mean of all heads), the empirical-Bayes head (MAP under the
  heads' Gaussian prior; the prior is fitted once per model, timed apart)
  and the blended rule (the search, mixture, EB, calibration and gain,
  combined), for all N annotators at once, interleaved in one process."""
  import jax  # pylint: disable=g-import-not-at-top
  from annojax import enroll  # pylint: disable=g-import-not-at-top
  from annojax import blend  # pylint: disable=g-import-not-at-top
  from annojax import posterior  # pylint: disable=g-import-not-at-top
  z, y, mask, kernel, bias = make_inputs(n, a, k, d, h)
  counts = mask.sum(1)
  t0 = time.perf_counter()
  prior = posterior.fit_prior(kernel, bias, rank=16)
  prior_s = time.perf_counter() - t0
  jz, jy, jm, jk, jb = (jax.device_put(x) for x in (z, y, mask, kernel,
                                                     bias))

  def top1():
    return enroll.select(enroll.score_heads(jz, jy, jm, jk, jb)).head_params(
        kernel, bias)

  def mixture():
    return posterior.mixture_heads(enroll.score_heads(jz, jy, jm, jk, jb),
                                   counts, jk, jb, 1.0)

  def eb():
    return posterior.eb_heads(z, y, mask, prior, 0.1)

  # The blended rule (blend.py): the search, then the mixture, the EB head,
  # the calibrated consensus and the gain over the consensus, combined with
  # weights at every size (as learned on a source; here fixed).
  rng = np.random.default_rng(1)
  agg = rng.standard_normal((n, k, d)).astype(np.float32)
  heads = blend.Heads(kernel=kernel, bias=bias, prior=prior,
                      temperature=1.0, noise=0.1,
                      rescale=(np.ones(d), np.zeros(d)))
  weights = blend.Blend(sizes=(2, 10), weights=np.full((2, 3), 0.3),
                        gate=("none",) * 2, threshold=np.full(2, -np.inf),
                        raters=(0, 0), ccc=np.zeros((2, 2)))

  def blended():
    return blend.enroll_blended(weights, heads, z, agg, y, mask,
                                enroll.score_heads(jz, jy, jm, jk, jb))
  best, first = _interleaved({"top-1 search": top1,
                              "posterior mixture": mixture,
                              "empirical-Bayes head": eb,
                              "blended rule": blended}, repeats)
  return best, first, prior_s


def families(n, a, k, d, h, repeats, rank=16, units=64, steps=300):
  """(best seconds, first-call seconds) of each family's enrollment rules
  for all N annotators at once (one batched call each)."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from annojax import enroll  # pylint: disable=g-import-not-at-top
  from annojax import models  # pylint: disable=g-import-not-at-top
  from annojax import rater_embeddings as re_  # pylint: disable=g-import-not-at-top
  z, y, mask, kernel, bias = make_inputs(n, a, k, d, h)
  z = np.maximum(z, 0)  # trunk features follow a ReLU
  params = {}
  for family in ("lowrank", "embedding"):
    m = models.Model(8, d, a, hidden=h, family=family, rank=rank,
                     units=units, rngs=nnx.Rngs(0))
    params[family] = nnx.to_pure_dict(nnx.state(m))["heads"]
  prior = {f: re_.fit_prior(re_.table(p)) for f, p in params.items()}
  runs = {"heads: top-1 search": lambda: enroll.select(enroll.score_heads(
      z, y, mask, kernel, bias)).head_params(kernel, bias)}
  for f, p in params.items():
    runs[f"{f}: copy"] = lambda p=p: re_.copy(p, z, y, mask)
    runs[f"{f}: fit"] = lambda p=p, f=f: re_.fit(p, z, y, mask, prior[f],
                                                 0.1, steps)
  return _interleaved(runs, repeats)


def _interleaved(runs, repeats):
  """(best seconds, first-call seconds) of each named call: one first call
  each (compiles), then `repeats` rounds of all calls in turn."""
  first, best = {}, {}
  for name, fn in runs.items():
    t0 = time.perf_counter()
    fn()
    first[name] = time.perf_counter() - t0
    best[name] = float("inf")
  for _ in range(repeats):
    for name, fn in runs.items():
      t0 = time.perf_counter()
      fn()
      best[name] = min(best[name], time.perf_counter() - t0)
  return best, first


def adaptive_choice(n, a, pool, d, h, repeats, loop_annotators=50):
  """Seconds to choose the next clip(s) for N annotators from a pool of
  `pool` clips and A heads: one batched propose call (1 clip, and a round
  of 5) against a loop calling it per annotator (timed on the first
  `loop_annotators` and scaled by N / that), interleaved; the heads'
  predictions on the pool (once per pool) timed apart."""
  from annojax import adaptive  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  z = rng.standard_normal((pool, d, h), dtype=np.float32)
  kernel = rng.standard_normal((a, d, h), dtype=np.float32) / np.sqrt(h)
  bias = rng.standard_normal((a, d), dtype=np.float32) * 0.1
  t0 = time.perf_counter()
  pred = adaptive.head_predictions(z, kernel, bias).block_until_ready()
  pred_s = time.perf_counter() - t0
  w = rng.dirichlet(np.ones(a), n).astype(np.float32)
  avail = rng.random((n, pool)) < 0.9
  m = min(n, loop_annotators)

  def loop():
    return [adaptive.propose(pred, w[i:i + 1], avail[i:i + 1], 1)[0]
            for i in range(m)]
  runs = {"batched, 1 clip": lambda: adaptive.propose(pred, w, avail, 1),
          "batched, round of 5": lambda: adaptive.propose(pred, w, avail, 5),
          "per-annotator loop, 1 clip": loop}
  best, _ = _interleaved(runs, repeats)
  best["per-annotator loop, 1 clip"] *= n / m
  got = runs["batched, 1 clip"]()[0][:m, 0]
  want = np.concatenate(loop())[:, 0]
  assert (got == want).all(), "batched and per-annotator picks differ"
  return best, pred_s


def run_child(method, n, a, args):
  cmd = [sys.executable, __file__, "--child", method, "--n", str(n),
         "--a", str(a), "--k", str(args.k), "--d", str(args.d),
         "--h", str(args.h), "--repeats",
         str(args.repeats if method == "batched" or a * n < 5e6 else 1),
         "--loop-heads", str(args.loop_heads)]
  env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  out = subprocess.run(cmd, capture_output=True, text=True, env=env,
                       check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--heads", default="500,5000,20000")
  p.add_argument("--new", default="10,1000")
  p.add_argument("--k", type=int, default=30, help="max enrollment clips")
  p.add_argument("--d", type=int, default=2, help="emotion dimensions")
  p.add_argument("--h", type=int, default=256, help="features per dim")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--loop-heads", type=int, default=2000,
                 help="time the loop on this many heads when N * A is large "
                 "and scale linearly (0 = always the full loop)")
  p.add_argument("--beyond", default="1000x20000",
                 help="NxA for the top-1 vs mixture vs EB table ('' = skip)")
  p.add_argument("--only-beyond", action="store_true")
  p.add_argument("--adaptive", default="1000x20000x500",
                 help="NxAxPOOL for the adaptive next-clip table ('' = skip)")
  p.add_argument("--only-adaptive", action="store_true")
  p.add_argument("--families", default="1000x20000",
                 help="NxA for the annotator families' table ('' = skip)")
  p.add_argument("--only-families", action="store_true")
  p.add_argument("--precision", default="",
                 help="NxA cells comparing float32 and bfloat16 matmuls "
                      "(e.g. 1000x2000,1000x20000; '' = none)")
  p.add_argument("--only-precision", action="store_true")
  p.add_argument("--child")
  p.add_argument("--n", type=int)
  p.add_argument("--a", type=int)
  args = p.parse_args()
  if args.child:
    print(json.dumps(child(args.child, args.n, args.a, args.k, args.d, args.h,
                           args.repeats,
                           args.loop_heads if args.n * args.a > 5e6 else 0)))
    return
  if args.only_beyond:
    _print_beyond(args)
    return
  if args.only_adaptive:
    _print_adaptive(args)
    return
  if args.only_families:
    _print_families(args)
    return
  if args.only_precision:
    _print_precision(args)
    return
  rows = []
  print(f"K={args.k} enrollment clips (variable, padded), D={args.d}, "
        f"H={args.h}, {os.cpu_count()} CPU cores\n")
  print("| N new | A heads | batched s | loop s | speed-up | batched peak MiB"
        " | loop peak MiB | batched compile+first s | device |")
  print("|---|---|---|---|---|---|---|---|---|")
  for n in [int(x) for x in args.new.split(",")]:
    for a in [int(x) for x in args.heads.split(",")]:
      b = run_child("batched", n, a, args)
      l = run_child("loop", n, a, args)
      np.testing.assert_allclose(b["checksum"], l["checksum"], rtol=2e-3,
                                 atol=2e-3)
      rows.append((b, l))
      star = "*" if l["extrapolated"] else ""
      dev_peak = (f" (+{b['device_peak_mib']:.0f} on device)"
                  if b["device_peak_mib"] is not None else "")
      print(f"| {n} | {a} | {b['seconds']:.4f} | {l['seconds']:.3f}{star} | "
            f"{l['seconds'] / b['seconds']:.1f}x | {b['peak_mib']:.0f}{dev_peak} | "
            f"{l['peak_mib']:.0f} | {b['first_call']:.2f} | {b['device']} |",
            flush=True)
  print(f"\n* loop timed on its first {args.loop_heads} heads and scaled by "
        "A / that (its cost is linear in A).")
  # Growth: time per (N * A) unit for the batched call.
  print("\nbatched seconds per million (annotator, head) pairs:")
  for b, _ in rows:
    print(f"  N={b['n']:5d} A={b['a']:6d}: "
          f"{b['seconds'] / (b['n'] * b['a']) * 1e6:.3f}")
  _print_beyond(args)
  _print_adaptive(args)
  _print_families(args)


def _print_precision(args):
  """float32 vs bfloat16 matmuls (enroll.score_heads precision=), at each
  N x A of --precision, interleaved in one process: seconds (best of
  --repeats after a warm-up), the largest score difference, and how many
  top-1 choices differ (random ratings: the hardest case, margins tiny)."""
  import jax  # pylint: disable=g-import-not-at-top
  from annojax import enroll  # pylint: disable=g-import-not-at-top
  print("\nMatmul precision of the search (score = sum of 2 CCCs):\n")
  print("| N x A | float32 s | bfloat16 s | bf16 / f32 time | max score "
        "diff | top-1 differs | chunk (heads) | device |")
  print("|---|---|---|---|---|---|---|---|")
  for cell in args.precision.split(","):
    n, a = (int(x) for x in cell.split("x"))
    inputs = [jax.device_put(x) for x in make_inputs(n, a, args.k, args.d,
                                                     args.h)]
    out, best = {}, {}
    for prec in enroll.PRECISIONS:  # warm-up (compile)
      out[prec] = np.asarray(enroll.score_heads(*inputs, precision=prec))
      best[prec] = np.inf
    for _ in range(args.repeats):
      for prec in enroll.PRECISIONS:
        t0 = time.perf_counter()
        np.asarray(enroll.score_heads(*inputs, precision=prec))
        best[prec] = min(best[prec], time.perf_counter() - t0)
    f32, b16 = out["float32"], out["bfloat16"]
    dev = jax.devices()[0]
    chunk = enroll.chunk_size(enroll.bucket(n), enroll.bucket(args.k),
                              args.d, a)
    print(f"| {n:,} x {a:,} | {best['float32']:.4f} | "
          f"{best['bfloat16']:.4f} | "
          f"{best['bfloat16'] / best['float32']:.2f}x | "
          f"{np.abs(f32 - b16).max():.4f} | "
          f"{int((f32.argmax(1) != b16.argmax(1)).sum())} of {n} | "
          f"{chunk} | "
          f"{dev.platform}:{dev.device_kind} |", flush=True)


def _print_families(args):
  if not args.families:
    return
  n, a = (int(x) for x in args.families.split("x"))
  best, first = families(n, a, args.k, args.d, args.h, args.repeats)
  print(f"\nAnnotator families, N = {n} x <= {args.k} clips, A = {a} "
        "pre-trained annotators (r = 16; embedding decoder: 64 units, fit: "
        "300 Adam steps), seconds (best of interleaved repeats; first "
        "call):\n")
  print("| family: rule | seconds | first call | / heads top-1 search |")
  print("|---|---|---|---|")
  for name in best:
    print(f"| {name} | {best[name]:.3f} | {first[name]:.2f} | "
          f"{best[name] / best['heads: top-1 search']:.2f}x |")


def _print_adaptive(args):
  if not args.adaptive:
    return
  n, a, pool = (int(x) for x in args.adaptive.split("x"))
  best, pred_s = adaptive_choice(n, a, pool, args.d, args.h, args.repeats)
  print(f"\nAdaptive choice of the next clip(s), N = {n} annotators, A = {a} "
        f"heads, a pool of {pool} clips, seconds (best of interleaved "
        "repeats; the loop scaled from its first 50 annotators):\n")
  print("| call | seconds | / batched 1 clip |")
  print("|---|---|---|")
  for name, sec in best.items():
    print(f"| {name} | {sec:.3f} | {sec / best['batched, 1 clip']:.1f}x |")
  print(f"\nHeads' predictions on the pool (once per pool): {pred_s:.2f} s")


def _print_beyond(args):
  if not args.beyond:
    return
  n, a = (int(x) for x in args.beyond.split("x"))
  best, first, prior_s = beyond_top1(n, a, args.k, args.d, args.h,
                                     args.repeats)
  print(f"\nBeyond top-1, N = {n} x <= {args.k} clips, A = {a} heads, "
        "seconds (best of interleaved repeats; first call):\n")
  print("| rule | seconds | first call | / top-1 search | / mixture |")
  print("|---|---|---|---|---|")
  for name in best:
    print(f"| {name} | {best[name]:.3f} | {first[name]:.2f} | "
          f"{best[name] / best['top-1 search']:.2f}x | "
          f"{best[name] / best['posterior mixture']:.2f}x |")
  print(f"\nEB prior fit (once per model, A = {a}): {prior_s:.2f} s")


if __name__ == "__main__":
  main()
