"""Reference outputs of transformers' speech encoders, for checking the JAX
encoders (annojax/encoders) against them. Needs torch and transformers
(not the test suite: it reads what this script wrote).

  # the test fixtures: tiny random checkpoints + their outputs
  python bench/encoder_reference.py --tiny --out tests/fixtures/encoders
  # the real WavLM-base-plus configuration (and wav2vec2-base, hubert-base
  # with --base), random weights, and the check
  python bench/encoder_reference.py --base_plus --base --out /tmp/base
  python bench/encoder_reference.py --check /tmp/base/*/

Each model directory gets config.json, model.safetensors (random weights,
every parameter perturbed so no LayerNorm is the identity and no bias zero),
preprocessor_config.json and reference.npz: the audio, and for each clip
alone (no padding) every hidden state, the last hidden state and the
mean-pooled embeddings; and transformers' outputs for the clips as one
padded batch with an attention mask (for the record: for group-norm models
they differ from the single-clip outputs). --check runs annojax's encoder on
the same clips, alone and as one padded batch, and prints the largest
differences from the single-clip references.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37, conv_dim=(16, 24, 20),
            conv_kernel=(10, 3, 2), conv_stride=(5, 2, 2),
            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4,
            num_buckets=16, max_bucket_distance=40)
TINY_LENGTHS = (400, 1234, 3200, 5000)
# WavLM-base-plus (microsoft/wavlm-base-plus config.json), random weights.
BASE_PLUS = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, conv_dim=(512,) * 7,
                 conv_kernel=(10, 3, 3, 3, 3, 2, 2),
                 conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_bias=False,
                 feat_extract_norm="group", num_conv_pos_embeddings=128,
                 num_conv_pos_embedding_groups=16, do_stable_layer_norm=False,
                 num_buckets=320, max_bucket_distance=800)
BASE_LENGTHS = (16000, 43210, 84800)  # 1.0, 2.7, 5.3 s
# name: (model type, config overrides, how the weights are saved)
TINY_MODELS = {
    "wavlm": ("wavlm", {}, "parametrizations"),
    "wav2vec2": ("wav2vec2", {}, "parametrizations"),
    "wav2vec2_stable": ("wav2vec2", dict(feat_extract_norm="layer",
                                         conv_bias=True,
                                         do_stable_layer_norm=True),
                        "parametrizations"),
    "hubert": ("hubert", {}, "weight_g"),  # older weight_norm names,
    "wavlm_stable": ("wavlm", dict(feat_extract_norm="layer",
                                   do_stable_layer_norm=True),
                     "task_prefix"),  # saved inside a task model
}


def _audio(lengths, seed):
  rng = np.random.default_rng(seed)
  out = []
  for n in lengths:
    t = np.arange(n) / 16000
    y = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t)
    out.append((y + 0.05 * rng.normal(size=n)).astype(np.float32))
  return out


def make(name, kind, overrides, saving, out_dir, lengths, seed):
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from safetensors.torch import save_file  # pylint: disable=g-import-not-at-top
  classes = {"wavlm": (transformers.WavLMConfig, transformers.WavLMModel),
             "wav2vec2": (transformers.Wav2Vec2Config,
                          transformers.Wav2Vec2Model),
             "hubert": (transformers.HubertConfig, transformers.HubertModel)}
  config_cls, model_cls = classes[kind]
  torch.manual_seed(seed)
  config = config_cls(**overrides)
  model = model_cls(config).eval()
  gen = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.1 * torch.randn(p.shape, generator=gen))
  d = os.path.join(out_dir, name)
  os.makedirs(d, exist_ok=True)
  model.save_pretrained(d)  # config.json + model.safetensors
  sd = {k: v.contiguous() for k, v in model.state_dict().items()}
  if saving == "weight_g":
    sd = {k.replace("parametrizations.weight.original0", "weight_g")
          .replace("parametrizations.weight.original1", "weight_v"): v
          for k, v in sd.items()}
  elif saving == "task_prefix":
    sd = {f"{kind}.{k}": v for k, v in sd.items()}
    sd["classifier.weight"] = torch.zeros(4, config.hidden_size)
  sd.pop("masked_spec_embed", None)
  save_file(sd, os.path.join(d, "model.safetensors"))
  with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
    json.dump({"sampling_rate": 16000, "do_normalize": False,
               "feature_extractor_type": "Wav2Vec2FeatureExtractor"}, f)
  audio = _audio(lengths, seed + 2)
  ref = {"lengths": np.array(lengths)}
  for i, y in enumerate(audio):
    ref[f"audio_{i}"] = y
    with torch.no_grad():
      o = model(torch.from_numpy(y)[None], output_hidden_states=True)
    hs = np.stack([h[0].numpy() for h in o.hidden_states])  # [L + 1, T, H]
    ref[f"hidden_{i}"] = hs
    ref[f"last_{i}"] = o.last_hidden_state[0].numpy()
    ref[f"pooled_last_{i}"] = ref[f"last_{i}"].mean(0)
    ref[f"pooled_mean_{i}"] = hs.mean(0).mean(0)
  # the longest clip in two equal halves, each alone (long audio in pieces)
  y = audio[-1]
  for j, piece in enumerate((y[:len(y) // 2], y[len(y) // 2:])):
    with torch.no_grad():
      o = model(torch.from_numpy(np.ascontiguousarray(piece))[None])
    ref[f"piece_last_{j}"] = o.last_hidden_state[0].numpy()
  # transformers' own padded batch, with the attention mask
  n = max(lengths)
  batch = np.zeros((len(lengths), n), np.float32)
  mask = np.zeros((len(lengths), n), np.int64)
  for i, y in enumerate(audio):
    batch[i, :len(y)], mask[i, :len(y)] = y, 1
  with torch.no_grad():
    o = model(torch.from_numpy(batch), attention_mask=torch.from_numpy(mask))
  ref["batch_last"] = o.last_hidden_state.numpy()
  np.savez_compressed(os.path.join(d, "reference.npz"), **ref)
  print(f"{d}: {kind} {sum(p.numel() for p in model.parameters()):,} "
        f"parameters, clips {lengths}")
  return d


def check(d):
  """annojax's encoder vs the reference outputs in d/reference.npz."""
  from annojax.encoders import extract  # pylint: disable=g-import-not-at-top
  enc = extract.SpeechEncoder(d)
  with np.load(os.path.join(d, "reference.npz")) as z:
    ref = dict(z)
  n = len(ref["lengths"])
  audio = [ref[f"audio_{i}"] for i in range(n)]
  worst = {}
  for name, clips in (("alone", [[y] for y in audio]), ("batch", [audio])):
    outs = []
    for c in clips:
      outs += enc.hidden_states(c)
    for i, (hs, last) in enumerate(outs):
      for key, got, want in (("hidden", hs, ref[f"hidden_{i}"]),
                             ("last", last, ref[f"last_{i}"]),
                             ("pooled", last.mean(0),
                              ref[f"pooled_last_{i}"])):
        err = float(np.abs(got - want).max())
        worst[(name, key)] = max(worst.get((name, key), 0.0), err)
  emb = enc.embed(audio)  # the feature job's path: grid-padded batches
  worst[("embed", "pooled")] = max(float(np.abs(
      emb[i] - ref[f"pooled_last_{i}"]).max()) for i in range(n))
  hf_batch = 0.0
  for i in range(n):
    t = ref[f"last_{i}"].shape[0]
    hf_batch = max(hf_batch, float(np.abs(
        ref["batch_last"][i, :t] - ref[f"last_{i}"]).max()))
  scale = max(float(np.abs(ref[f"hidden_{i}"]).max()) for i in range(n))
  for (name, key), err in sorted(worst.items()):
    print(f"{d}: annojax {name:5s} {key:6s} max |diff| {err:.2e} (largest "
          f"|hidden state| {scale:.1f})")
  print(f"{d}: transformers' padded batch vs its single clips: max |diff| "
        f"{hf_batch:.2e}")
  return worst


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--out", default="")
  ap.add_argument("--tiny", action="store_true")
  ap.add_argument("--base_plus", action="store_true")
  ap.add_argument("--base", action="store_true")
  ap.add_argument("--check", nargs="*", default=[])
  args = ap.parse_args()
  if args.tiny:
    for name, (kind, over, saving) in TINY_MODELS.items():
      make(name, kind, {**TINY, **over}, saving, args.out, TINY_LENGTHS,
           seed=len(name))
  if args.base_plus:
    make("wavlm_base_plus", "wavlm", BASE_PLUS, "parametrizations", args.out,
         BASE_LENGTHS, seed=0)
  if args.base:  # wav2vec2-base and hubert-base-ls960: the same dimensions
    for kind in ("wav2vec2", "hubert"):
      make(f"{kind}_base", kind, {k: v for k, v in BASE_PLUS.items()
                                  if k not in ("num_buckets",
                                               "max_bucket_distance")},
           "parametrizations", args.out, BASE_LENGTHS, seed=0)
  for d in args.check:
    check(d)


if __name__ == "__main__":
  main()
