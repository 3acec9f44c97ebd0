"""annojax against a PyTorch reference of the paper's implementation.

  pip install torch==2.13.0      # benchmark-only: never in requirements.txt
  python bench/torch_bench.py [--heads=100,2000,13000,20000] [--batch=32,256]
      [--new=1000] [--enroll-heads=2000,20000] [--compile=1]

The PyTorch reference is written here from ../shared/METHOD.md, as the paper
describes its implementation: the same trunk (dropout, Dense(H)+ReLU, per
dimension 2 x (Dense(H)+ReLU)), one linear unit per annotator per dimension
computed for ALL annotators as one batched matmul, the masked 1 - CCC loss
summed over dimensions, SGD (lr 1e-3, momentum 0.9). It is checked to give
annojax's loss on the same batch with the same weights (copied from annojax)
to float tolerance before anything is timed.

Training: examples/s of one optimizer step on in-memory batches (1,024-d
embeddings, hidden 256, 2 dims, 10 raters per clip), annojax's step as the
product runs it with the reference optimizer (`layout=auto`,
`head_update=auto`: dense layout below 256 heads, then only the rated heads,
row-sparse updates once heads outnumber the batch's rating slots) against
PyTorch eager and torch.compile (inductor). Each (heads, batch) cell runs
its three steps in interleaved rounds; the median round counts.

Enrollment search: N new annotators x K clips scored against A heads
(sum of per-dimension CCC): annojax's one batched, jit-compiled call
(annojax.enroll.score_heads), the PyTorch per-candidate loop (the paper's:
every head run on the new annotator's clips, candidate by candidate; all N
annotators at once per head) and a batched PyTorch version (heads in chunks
of ~512 MiB of predictions, like annojax). Scores are checked to agree.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))  # the repository root
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # pylint: disable=g-import-not-at-top
import ml_collections  # pylint: disable=g-import-not-at-top
import torch  # pylint: disable=g-import-not-at-top
from flax import nnx  # pylint: disable=g-import-not-at-top

from annojax import enroll  # pylint: disable=g-import-not-at-top
from annojax import losses  # pylint: disable=g-import-not-at-top
from annojax import train  # pylint: disable=g-import-not-at-top
from annojax.data import pipeline  # pylint: disable=g-import-not-at-top
import enroll_bench  # pylint: disable=g-import-not-at-top
import train_bench  # pylint: disable=g-import-not-at-top

EPS = 1e-8
# The reference runs where PyTorch finds a GPU (a lent device), else on the
# CPU; annojax runs on jax's default device.
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync():
  if DEVICE.type == "cuda":
    torch.cuda.synchronize()


class Reference(torch.nn.Module):
  """The paper's model in PyTorch: trunk + all-annotator heads."""

  def __init__(self, f, d, a, h, dropout):
    super().__init__()
    self.dropout = dropout
    self.shared = torch.nn.Linear(f, h)
    self.w1 = torch.nn.Parameter(torch.empty(d, h, h))
    self.b1 = torch.nn.Parameter(torch.zeros(d, h))
    self.w2 = torch.nn.Parameter(torch.empty(d, h, h))
    self.b2 = torch.nn.Parameter(torch.zeros(d, h))
    self.kernel = torch.nn.Parameter(torch.empty(a, d, h))
    self.bias = torch.nn.Parameter(torch.zeros(a, d))

  def forward(self, x):
    x = torch.nn.functional.dropout(x, self.dropout, self.training)
    h = torch.relu(self.shared(x))                                   # [B, H]
    z = torch.relu(torch.einsum("bh,dhk->bdk", h, self.w1) + self.b1)
    z = torch.relu(torch.einsum("bdh,dhk->bdk", z, self.w2) + self.b2)
    return torch.einsum("bdh,adh->bad", z, self.kernel) + self.bias  # [B,A,D]


def masked_ccc_loss(pred, label, mask):
  """Sum over dims of 1 - CCC over the observed (clip, annotator) pairs."""
  d = pred.shape[-1]
  p, y = pred.reshape(-1, d), label.reshape(-1, d)
  m = mask.reshape(-1, 1)
  n = m.sum(0).clamp(min=1.0)
  mp, my = (m * p).sum(0) / n, (m * y).sum(0) / n
  dp, dy = m * (p - mp), m * (y - my)
  cov = (dp * dy).sum(0) / n
  ccc = 2 * cov / ((dp * dp).sum(0) / n + (dy * dy).sum(0) / n
                   + (mp - my) ** 2 + EPS)
  return (1 - ccc).sum()


def copy_weights(ref: Reference, params: dict) -> None:
  """annojax's parameters into the reference (annojax kernels are [in, out],
  as x @ W; torch's Linear holds [out, in])."""
  t = params["trunk"]
  mlps = t["branches"]["mlps"]
  heads = params["heads"]["stack"]
  as_t = lambda x: torch.tensor(np.array(x))  # a writable copy
  with torch.no_grad():
    ref.shared.weight.copy_(as_t(t["shared"]["kernel"]).T)
    ref.shared.bias.copy_(as_t(t["shared"]["bias"]))
    for i, layer in ((1, "l1"), (2, "l2")):
      getattr(ref, f"w{i}").copy_(as_t(mlps[layer]["kernel"]))
      getattr(ref, f"b{i}").copy_(as_t(mlps[layer]["bias"]))
    ref.kernel.copy_(as_t(heads["kernel"]))
    ref.bias.copy_(as_t(heads["bias"]))


def annojax_step(a, batch_size, raters, features, hidden=256):
  """(state, jitted step, layout, head update) as the product trains."""
  config = ml_collections.ConfigDict({
      "model": {"hidden": hidden, "dropout": 0.2},
      "optim": {"name": "sgd", "learning_rate": 1e-3, "momentum": 0.9,
                "head_update": "auto"},
      "train": {"seed": 0, "loss": "ccc", "batch_size": batch_size},
      "data": {"layout": "auto"}})
  meta = pipeline.Meta(dims=("activation", "valence"),
                       annotator_ids=tuple(map(str, range(a))),
                       annotator_types=None, embedding_dim=features,
                       split_sizes={}, max_raters={"train": raters})
  graphdef, tx, state = train._initial_state(config, meta, "individual")  # pylint: disable=protected-access
  fn = train.step_function(config, meta, "individual", graphdef, tx, seed=0)
  from annojax import head_optim  # pylint: disable=g-import-not-at-top
  layout = pipeline.choose_layout("auto", a)
  update = head_optim.resolve(config, meta, "individual")
  return graphdef, state, jax.jit(fn, donate_argnums=0), layout, update


def check_same_loss(graphdef, params, ref, batch) -> tuple[float, float]:
  """Both models' loss on one dense batch, without dropout."""
  model = nnx.merge(graphdef, params)
  pred = model(batch["embedding"])
  ours = float(losses.ccc_loss(pred, batch["labels"],
                               batch["label_mask"])[0])
  ref.eval()
  t = {k: torch.from_numpy(batch[k]).to(DEVICE)
       for k in ("embedding", "labels", "label_mask")}
  with torch.no_grad():
    theirs = float(masked_ccc_loss(ref(t["embedding"]), t["labels"],
                                   t["label_mask"]))
  ref.train()
  return ours, theirs


def bench_training(heads, batch_sizes, features, raters, rounds, steps,
                   compile_too):
  rows = []
  for b in batch_sizes:
    for a in heads:
      batches = train_bench.make_batches(4, b, a, 2, features, raters)
      graphdef, state, step, layout, update = annojax_step(
          a, b, raters, features)
      ref = Reference(features, 2, a, 256, 0.2).to(DEVICE)
      copy_weights(ref, state["params"])
      ours, theirs = check_same_loss(graphdef, state["params"], ref,
                                     batches[0]["dense"])
      # On a GPU jax's default f32 matmuls use TF32 (~1e-5 relative).
      np.testing.assert_allclose(ours, theirs, rtol=1e-5 if DEVICE.type ==
                                 "cpu" else 1e-4)
      dense = [{k: torch.from_numpy(v).to(DEVICE)
                for k, v in bb["dense"].items()} for bb in batches]

      def make_torch(model):
        opt = torch.optim.SGD(ref.parameters(), lr=1e-3, momentum=0.9)

        def tstep(bb):
          opt.zero_grad(set_to_none=True)
          loss = masked_ccc_loss(model(bb["embedding"]), bb["labels"],
                                 bb["label_mask"] * bb["valid"][:, None])
          loss.backward()
          opt.step()
          return loss
        return tstep

      runs = {"annojax": None, "torch eager": make_torch(ref)}
      if compile_too:
        runs["torch.compile"] = make_torch(torch.compile(ref))
      dev = [jax.device_put(bb[layout]) for bb in batches]
      first = {}
      st = state
      for name, fn in runs.items():  # warm-up (compiles)
        t0 = time.perf_counter()
        if name == "annojax":
          st, _ = step(st, dev[0])
          jax.block_until_ready(st)
        else:
          fn(dense[0])
          _sync()
        first[name] = time.perf_counter() - t0
      times = {name: [] for name in runs}
      for _ in range(rounds):
        for name, fn in runs.items():
          t0 = time.perf_counter()
          for i in range(steps):
            if name == "annojax":
              st, _ = step(st, dev[1 + i % 3])
            else:
              fn(dense[1 + i % 3])
          if name == "annojax":
            jax.block_until_ready(st)
          else:
            _sync()
          times[name].append(time.perf_counter() - t0)
      eps = {n: steps * b / float(np.median(t)) for n, t in times.items()}
      rows.append((b, a, layout, update, ours, theirs, eps, first))
      print(f"  batch {b}, {a} heads: " + ", ".join(
          f"{n} {v:,.0f}" for n, v in eps.items()), flush=True)
  return rows


def torch_loop_scores(z, y, mask, kernel, bias):
  """PyTorch, one candidate head at a time (all N annotators per head)."""
  n, k, d, h = z.shape
  cnt = mask.sum(1, keepdim=True)
  m = mask[..., None]
  my = (m * y).sum(1) / cnt
  dy = m * (y - my[:, None])
  vy = (dy * dy).sum(1) / cnt
  out = torch.empty(n, len(kernel), device=z.device)
  for a in range(len(kernel)):
    p = torch.einsum("nkdh,dh->nkd", z, kernel[a]) + bias[a]
    mp = (m * p).sum(1) / cnt
    dp = m * (p - mp[:, None])
    cov = (dp * dy).sum(1) / cnt
    vp = (dp * dp).sum(1) / cnt
    out[:, a] = (2 * cov / (vp + vy + (mp - my) ** 2 + EPS)).sum(-1)
  return out


def torch_batched_scores(z, y, mask, kernel, bias, budget=512 * 2 ** 20):
  """PyTorch, every head at once in chunks of ~`budget` bytes of
  predictions [N, K, chunk, D]."""
  n, k, d, h = z.shape
  chunk = max(1, budget // (4 * n * k * d))
  cnt = mask.sum(1)[:, None, None]                           # [N, 1, 1]
  m = mask[:, :, None, None]                                 # [N, K, 1, 1]
  y4 = y[:, :, None, :]
  my = (m * y4).sum(1) / cnt                                 # [N, 1, D]
  dy = m * (y4 - my[:, None])
  vy = (dy * dy).sum(1) / cnt
  out = []
  for s in range(0, len(kernel), chunk):
    p = torch.einsum("nkdh,adh->nkad", z, kernel[s:s + chunk]) + bias[
        s:s + chunk]
    mp = (m * p).sum(1) / cnt                                # [N, a, D]
    dp = m * (p - mp[:, None])
    cov = (dp * dy).sum(1) / cnt
    vp = (dp * dp).sum(1) / cnt
    out.append((2 * cov / (vp + vy + (mp - my) ** 2 + EPS)).sum(-1))
  return torch.cat(out, 1)


def bench_enroll(n, heads, k, repeats):
  rows = []
  for a in heads:
    z, y, mask, kernel, bias = (np.asarray(x, np.float32) for x in
                                enroll_bench.make_inputs(n, a, k, 2, 256))
    jargs = [jax.device_put(x) for x in (z, y, mask, kernel, bias)]
    targs = [torch.from_numpy(x).to(DEVICE)
             for x in (z, y, mask, kernel, bias)]
    # .cpu().numpy() waits for the GPU: each call is timed to its result.
    fns = {"annojax batched": lambda: np.asarray(enroll.score_heads(*jargs)),
           "torch per-candidate loop": lambda: torch_loop_scores(
               *targs).cpu().numpy(),
           "torch batched": lambda: torch_batched_scores(
               *targs).cpu().numpy()}
    first, best, scores = {}, {}, {}
    for name, fn in fns.items():
      t0 = time.perf_counter()
      scores[name] = fn()
      first[name] = time.perf_counter() - t0
      best[name] = float("inf")
    for _ in range(repeats):  # interleaved
      for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        best[name] = min(best[name], time.perf_counter() - t0)
    for name in fns:
      np.testing.assert_allclose(scores[name], scores["annojax batched"],
                                 atol=2e-3, rtol=2e-3)
    rows.append((a, best, first))
    print(f"  enroll N={n}, A={a}: " + ", ".join(
        f"{k_} {v:.3f} s" for k_, v in best.items()), flush=True)
  return rows


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--heads", default="100,2000,13000,20000")
  p.add_argument("--batch", default="32,256")
  p.add_argument("--features", type=int, default=1024)
  p.add_argument("--raters", type=int, default=10)
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--compile", type=int, default=1,
                 help="also time torch.compile (0: eager only)")
  p.add_argument("--new", type=int, default=1000)
  p.add_argument("--enroll-heads", default="2000,20000")
  p.add_argument("--k", type=int, default=30)
  p.add_argument("--repeats", type=int, default=3)
  args = p.parse_args()
  torch.manual_seed(0)
  dev = jax.devices()[0]
  where = (torch.cuda.get_device_name() if DEVICE.type == "cuda" else
           f"cpu, {torch.get_num_threads()} threads")
  print(f"jax {jax.__version__} on {dev.platform}:{dev.device_kind}; torch "
        f"{torch.__version__} on {where}")
  rows = bench_training([int(x) for x in args.heads.split(",")],
                        [int(x) for x in args.batch.split(",")],
                        args.features, args.raters, args.rounds, args.steps,
                        bool(args.compile))
  names = list(rows[0][6])
  print("\nTraining examples/s (first-step s); loss check: annojax vs "
        "torch on one batch, same weights\n")
  print("| batch | A heads | annojax step | " + " | ".join(names) +
        " | " + " | ".join(f"annojax / {n}" for n in names[1:]) +
        " | loss annojax / torch |")
  print("|---" * (4 + 2 * len(names) - 1) + "|")
  for b, a, layout, update, ours, theirs, eps, first in rows:
    cells = [f"{eps[n]:,.0f} ({first[n]:.1f})" for n in names]
    ratios = [f"{eps['annojax'] / eps[n]:.2f}x" for n in names[1:]]
    print(f"| {b} | {a:,} | {layout} layout, {update} update | "
          + " | ".join(cells) + " | " + " | ".join(ratios)
          + f" | {ours:.6f} / {theirs:.6f} |")
  erows = bench_enroll(args.new, [int(x) for x in
                                  args.enroll_heads.split(",")],
                       args.k, args.repeats)
  print(f"\nEnrollment search, N = {args.new} new annotators x <= {args.k} "
        "clips, seconds (best of interleaved repeats; first call s)\n")
  enames = list(erows[0][1])
  print("| A heads | " + " | ".join(enames) + " | " + " | ".join(
      f"{n} / annojax" for n in enames[1:]) + " |")
  print("|---" * (1 + 2 * len(enames) - 1) + "|")
  for a, best, first in erows:
    print(f"| {a:,} | " + " | ".join(
        f"{best[n]:.3f} ({first[n]:.1f})" for n in enames) + " | " +
          " | ".join(f"{best[n] / best['annojax batched']:.1f}x"
                     for n in enames[1:]) + " |")


if __name__ == "__main__":
  main()
