"""Speech-encoder features: annojax's JAX encoder against transformers'
PyTorch one, on the same model and clips, side by side in one run.

  pip install torch==2.13.0 transformers   # benchmark-only
  python bench/features_bench.py                        # WavLM-base-plus
  python bench/features_bench.py --checkpoint DIR       # a real checkpoint

Without --checkpoint the model is the real WavLM-base-plus configuration
with random weights (bench/encoder_reference.py; speed does not depend on
the weights); with --skip_torch (no torch installed, e.g. on a lent GPU)
only annojax runs, on random numpy weights of that configuration. Clips: --clips clips of uniformly --min_s..--max_s seconds
(MSP-Podcast's segments are 2.75-11 s). Rows:
- transformers, one clip per call: the reference outputs;
- transformers, padded batches of --batch with the attention mask, sorted
  by length (faster, but for group-norm models such as WavLM-base-plus not
  the single-clip outputs: bench/README.md);
- annojax float32 and bfloat16 (padded batches up to batch_seconds,
  equal to the single-clip outputs), timed after a first pass that
  compiles (its time is in the last column).
Each row's clips/s is the best of --repeats passes; the runs alternate.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))


def random_encoder(arch: dict, seed: int = 0):
  """An Encoder of `arch` (WavLM) with random weights, made without torch:
  every tensor the model asks for, drawn at its shape."""
  from annojax.encoders import checkpoint  # pylint: disable=g-import-not-at-top
  from annojax.encoders import wav2vec2  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)

  class RandomWeights:
    def __call__(self, name, shape):
      return (rng.normal(size=shape) / np.sqrt(shape[-1])).astype(np.float32)

    def has(self, name):
      return False  # weight norm folded in: a plain conv weight

  fields = {k: v for k, v in arch.items()
            if k in checkpoint.EncoderConfig.__dataclass_fields__}
  cfg = checkpoint.EncoderConfig(model_type="wavlm", layer_norm_eps=1e-5,
                                 **fields)
  return wav2vec2.Encoder(cfg, RandomWeights())


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--checkpoint", default="")
  ap.add_argument("--clips", type=int, default=32)
  ap.add_argument("--min_s", type=float, default=3.0)
  ap.add_argument("--max_s", type=float, default=8.0)
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--repeats", type=int, default=2)
  ap.add_argument("--threads", type=int, default=0,
                  help="torch threads (0 = torch's default)")
  ap.add_argument("--skip_torch", action="store_true")
  args = ap.parse_args()

  import jax  # pylint: disable=g-import-not-at-top
  from annojax.encoders import extract  # pylint: disable=g-import-not-at-top
  import encoder_reference  # pylint: disable=g-import-not-at-top
  d = args.checkpoint
  if not d and not args.skip_torch:
    d = encoder_reference.make("wavlm_base_plus", "wavlm",
                               encoder_reference.BASE_PLUS,
                               "parametrizations", tempfile.mkdtemp(),
                               (16000,), seed=0)
  # without torch: the base-plus architecture with random numpy weights
  model = d or random_encoder(encoder_reference.BASE_PLUS)
  rng = np.random.default_rng(0)
  lengths = (rng.uniform(args.min_s, args.max_s, args.clips) * 16000).astype(
      int)
  clips = [(0.1 * rng.normal(size=n)).astype(np.float32) for n in lengths]
  seconds = lengths.sum() / 16000
  runners = {}
  if not args.skip_torch:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
    if args.threads:
      torch.set_num_threads(args.threads)
    tmodel = transformers.AutoModel.from_pretrained(d).eval()
    order = np.argsort(lengths)

    def torch_single():
      with torch.no_grad():
        return [tmodel(torch.from_numpy(y)[None]).last_hidden_state[0].mean(0)
                for y in clips]

    def torch_batched():
      out = []
      with torch.no_grad():
        for s in range(0, len(clips), args.batch):
          idx = order[s:s + args.batch]
          n = lengths[idx].max()
          x = np.zeros((len(idx), n), np.float32)
          m = np.zeros((len(idx), n), np.int64)
          for r, i in enumerate(idx):
            x[r, :lengths[i]], m[r, :lengths[i]] = clips[i], 1
          out.append(tmodel(torch.from_numpy(x),
                            attention_mask=torch.from_numpy(m)
                            ).last_hidden_state)
      return out

    runners["transformers, one clip per call"] = torch_single
    runners[f"transformers, padded batches of {args.batch}"] = torch_batched
  for dtype in ("float32", "bfloat16"):
    enc = extract.SpeechEncoder(model, dtype=dtype)
    runners[f"annojax {dtype}"] = (lambda enc=enc: enc.embed(clips))
  first, best = {}, {}
  for name, run in runners.items():  # first pass: compiles (annojax)
    t = time.perf_counter()
    run()
    first[name] = time.perf_counter() - t
  for _ in range(args.repeats):
    for name, run in runners.items():
      t = time.perf_counter()
      run()
      best[name] = min(best.get(name, np.inf), time.perf_counter() - t)
  ref = next(iter(best))
  print(f"{args.clips} clips, {args.min_s:g}-{args.max_s:g} s "
        f"({seconds:.0f} s of audio), "
        f"{os.path.basename(d.rstrip('/')) if d else 'base-plus, random'}, "
        f"{jax.devices()[0].platform}, {os.cpu_count()} CPUs\n")
  print(f"| implementation | clips/s | audio s/s | vs {ref} | first pass "
        "(s, with compilation) |")
  print("|---|---|---|---|---|")
  for name, t in best.items():
    print(f"| {name} | {args.clips / t:.2f} | {seconds / t:.1f} | "
          f"{best[ref] / t:.2f}x | {first[name]:.1f} |")


if __name__ == "__main__":
  main()
