"""A Hugging Face speech-encoder directory, read with numpy alone.

DIR/config.json (the architecture) and DIR/model.safetensors (the weights;
safetensors is a JSON header and raw little-endian arrays, read here without
torch). DIR/preprocessor_config.json, when present, says whether the model
expects per-clip normalised audio (do_normalize) and its sample rate.

A checkpoint that only has pytorch_model.bin (a torch pickle) is converted
once, where torch is installed:

  python -c "import torch, safetensors.torch as st; \
sd = torch.load('DIR/pytorch_model.bin', map_location='cpu'); \
st.save_file({k: v.contiguous() for k, v in sd.items()}, \
'DIR/model.safetensors')"
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct

import numpy as np

MODEL_TYPES = ("wavlm", "wav2vec2", "hubert")
CONVERT = (
    "convert it once where torch is installed: python -c \"import torch, "
    "safetensors.torch as st; sd = torch.load('{d}/pytorch_model.bin', "
    "map_location='cpu'); st.save_file({{k: v.contiguous() for k, v in "
    "sd.items()}}, '{d}/model.safetensors')\"")
# Prefixes under which a task model (ForCTC, ForSequenceClassification, ...)
# saves the encoder; the encoder's own keys follow.
PREFIXES = ("wavlm.", "wav2vec2.", "hubert.")


class CheckpointError(ValueError):
  """A checkpoint directory that cannot be read as a supported encoder."""


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """The fields of config.json the encoder is built from."""
  model_type: str
  hidden_size: int
  num_hidden_layers: int
  num_attention_heads: int
  intermediate_size: int
  conv_dim: tuple[int, ...]
  conv_kernel: tuple[int, ...]
  conv_stride: tuple[int, ...]
  conv_bias: bool
  feat_extract_norm: str  # "group" (first conv layer) or "layer" (each)
  num_conv_pos_embeddings: int
  num_conv_pos_embedding_groups: int
  do_stable_layer_norm: bool  # pre-LN layers and a final LayerNorm
  layer_norm_eps: float
  feat_proj_layer_norm: bool = True
  num_buckets: int = 320  # WavLM's relative position buckets
  max_bucket_distance: int = 800
  sample_rate: int = 16000
  do_normalize: bool = False

  @property
  def gated_relative_bias(self) -> bool:
    return self.model_type == "wavlm"

  @property
  def receptive_field(self) -> int:
    """Samples the first frame sees (the shortest clip that has a frame)."""
    n = 1
    for k, s in reversed(list(zip(self.conv_kernel, self.conv_stride))):
      n = (n - 1) * s + k
    return n


def _json(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{path}: not JSON ({e})") from e


def read_config(directory: str) -> EncoderConfig:
  """config.json (+ preprocessor_config.json) -> EncoderConfig; anything the
  JAX encoder does not implement is an error naming the file and field."""
  path = os.path.join(directory, "config.json")
  if not os.path.isdir(directory):
    raise CheckpointError(f"features.checkpoint {directory!r} is not a "
                          "directory (expected a Hugging Face model "
                          "directory with config.json and model.safetensors)")
  if not os.path.exists(path):
    raise CheckpointError(f"{path} is missing: features.checkpoint must be a "
                          "Hugging Face model directory (config.json + "
                          "model.safetensors)")
  c = _json(path)
  kind = c.get("model_type")
  if kind not in MODEL_TYPES:
    raise CheckpointError(
        f"{path}: model_type {kind!r} is not supported; expected one of "
        f"{MODEL_TYPES} (WavLM, wav2vec 2.0, HuBERT)")

  def unsupported(field, want):
    if field in c and c[field] != want:
      raise CheckpointError(f"{path}: {field} = {c[field]!r} is not "
                            f"supported by the JAX encoder (expected "
                            f"{want!r})")
  unsupported("hidden_act", "gelu")
  unsupported("feat_extract_activation", "gelu")
  unsupported("add_adapter", False)
  unsupported("conv_pos_batch_norm", False)
  unsupported("position_embeddings_type", None)
  unsupported("adapter_attn_dim", None)
  if c.get("feat_extract_norm", "group") not in ("group", "layer"):
    raise CheckpointError(f"{path}: feat_extract_norm "
                          f"{c['feat_extract_norm']!r}; expected group or "
                          "layer")
  missing = [k for k in ("hidden_size", "num_hidden_layers",
                         "num_attention_heads", "intermediate_size",
                         "conv_dim", "conv_kernel", "conv_stride")
             if k not in c]
  if missing:
    raise CheckpointError(f"{path}: missing {missing}")
  pre = os.path.join(directory, "preprocessor_config.json")
  p = _json(pre) if os.path.exists(pre) else {}
  cfg = EncoderConfig(
      model_type=kind, hidden_size=c["hidden_size"],
      num_hidden_layers=c["num_hidden_layers"],
      num_attention_heads=c["num_attention_heads"],
      intermediate_size=c["intermediate_size"],
      conv_dim=tuple(c["conv_dim"]), conv_kernel=tuple(c["conv_kernel"]),
      conv_stride=tuple(c["conv_stride"]),
      conv_bias=bool(c.get("conv_bias", False)),
      feat_extract_norm=c.get("feat_extract_norm", "group"),
      num_conv_pos_embeddings=c.get("num_conv_pos_embeddings", 128),
      num_conv_pos_embedding_groups=c.get("num_conv_pos_embedding_groups", 16),
      do_stable_layer_norm=bool(c.get("do_stable_layer_norm", False)),
      layer_norm_eps=float(c.get("layer_norm_eps", 1e-5)),
      feat_proj_layer_norm=bool(c.get("feat_proj_layer_norm", True)),
      num_buckets=c.get("num_buckets", 320),
      max_bucket_distance=c.get("max_bucket_distance", 800),
      sample_rate=int(p.get("sampling_rate", 16000)),
      do_normalize=bool(p.get("do_normalize", False)))
  if not (len(cfg.conv_dim) == len(cfg.conv_kernel) == len(cfg.conv_stride)):
    raise CheckpointError(f"{path}: conv_dim, conv_kernel and conv_stride "
                          "differ in length")
  if cfg.hidden_size % cfg.num_attention_heads:
    raise CheckpointError(f"{path}: hidden_size {cfg.hidden_size} is not a "
                          f"multiple of num_attention_heads "
                          f"{cfg.num_attention_heads}")
  return cfg


_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64,
           "BF16": "bf16", "I64": np.int64, "I32": np.int32}


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """Every tensor of a .safetensors file as a float32 numpy array (bfloat16
  and float16 widened; float32 read as stored)."""
  with open(path, "rb") as f:
    raw = f.read(8)
    if len(raw) < 8:
      raise CheckpointError(f"{path}: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", raw)
    try:
      header = json.loads(f.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise CheckpointError(f"{path}: not a safetensors file ({e})") from e
    data = f.read()
  out = {}
  for name, t in header.items():
    if name == "__metadata__":
      continue
    kind = _DTYPES.get(t["dtype"])
    if kind is None:
      raise CheckpointError(f"{path}: tensor {name} has dtype {t['dtype']}; "
                            f"expected one of {sorted(_DTYPES)}")
    start, end = t["data_offsets"]
    if end > len(data):
      raise CheckpointError(f"{path}: tensor {name} runs past the end of the "
                            "file (truncated download?)")
    itemsize = 2 if kind == "bf16" else np.dtype(kind).itemsize
    if end - start != itemsize * int(np.prod(t["shape"], dtype=np.int64)):
      raise CheckpointError(f"{path}: tensor {name} has {end - start} "
                            f"bytes, expected {t['shape']} x {itemsize}")
    buf = data[start:end]
    if kind == "bf16":
      bits = np.frombuffer(buf, "<u2").astype(np.uint32) << 16
      a = bits.view(np.float32)
    else:
      a = np.frombuffer(buf, np.dtype(kind).newbyteorder("<"))
    out[name] = a.reshape(t["shape"]).astype(np.float32)
  return out


def read_weights(directory: str) -> dict[str, np.ndarray]:
  """model.safetensors -> {encoder key: float32 array}, task-model prefixes
  (wavlm., wav2vec2., hubert.) removed."""
  path = os.path.join(directory, "model.safetensors")
  if not os.path.exists(path):
    if os.path.exists(os.path.join(directory, "pytorch_model.bin")):
      raise CheckpointError(
          f"{path} is missing; {directory} has pytorch_model.bin (a torch "
          "pickle, not read here): " + CONVERT.format(d=directory))
    sharded = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(sharded):
      raise CheckpointError(f"{path} is missing; sharded checkpoints "
                            f"({sharded}) are not supported")
    raise CheckpointError(f"{path} is missing: features.checkpoint needs the "
                          "model's weights as model.safetensors")
  tensors = read_safetensors(path)
  out = {}
  for k, v in tensors.items():
    for p in PREFIXES:
      if k.startswith(p):
        k = k[len(p):]
        break
    out[k] = v
  return out


class Weights:
  """The tensors of a checkpoint, taken by name; a missing or misshapen one
  is an error naming the file, the tensor and the shape expected."""

  def __init__(self, tensors: dict[str, np.ndarray], path: str):
    self.tensors, self.path = tensors, path

  def __call__(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in self.tensors:
      raise CheckpointError(f"{self.path}: tensor {name!r} (shape {shape}) "
                            "is missing; is this checkpoint the architecture "
                            "config.json says?")
    a = self.tensors[name]
    if tuple(a.shape) != tuple(shape):
      raise CheckpointError(f"{self.path}: tensor {name!r} has shape "
                            f"{tuple(a.shape)}, expected {tuple(shape)} "
                            "from config.json")
    return a

  def has(self, name: str) -> bool:
    return name in self.tensors
