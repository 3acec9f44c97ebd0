"""Self-supervised speech encoders in JAX (annojax/encoders) against
transformers' PyTorch outputs, without torch: tests/fixtures/encoders holds
tiny random checkpoints (WavLM, wav2vec 2.0, HuBERT; group- and layer-norm
front ends, post- and pre-LN Transformers; weight norm saved both ways; one
inside a task model's prefix) and what transformers computed for them,
written by bench/encoder_reference.py."""

import json
import os
import shutil
import struct

import numpy as np
import pytest
import soundfile as sf

from annojax import features
from annojax.encoders import checkpoint
from annojax.encoders import extract

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "encoders")
MODELS = ("wavlm", "wav2vec2", "wav2vec2_stable", "hubert", "wavlm_stable")
TOL = 1e-4  # the bound (measured: < 4e-6 on these, bench/README.md)


def _reference(name):
  with np.load(os.path.join(FIXTURES, name, "reference.npz")) as z:
    ref = dict(z)
  audio = [ref[f"audio_{i}"] for i in range(len(ref["lengths"]))]
  return ref, audio


@pytest.mark.parametrize("name", MODELS)
def test_hidden_states_of_a_padded_batch_equal_transformers(name):
  """Every hidden state and the last one of four clips (400-5,000 samples)
  run as one zero-padded batch, within 1e-4 of transformers on each clip
  alone."""
  ref, audio = _reference(name)
  enc = extract.SpeechEncoder(os.path.join(FIXTURES, name))
  for i, (hs, last) in enumerate(enc.hidden_states(audio)):
    assert hs.shape == ref[f"hidden_{i}"].shape  # [layers + 1, T, H]
    np.testing.assert_allclose(hs, ref[f"hidden_{i}"], atol=TOL, rtol=0)
    np.testing.assert_allclose(last, ref[f"last_{i}"], atol=TOL, rtol=0)


def test_embeddings_equal_the_reference_states_pooled():
  """embed(): the last hidden state averaged over each clip's frames, each
  clip batched with the padding of its length's grid; the layer and pooling
  choices select and pool the states as numpy does on the references."""
  ref, audio = _reference("wavlm")
  enc = extract.SpeechEncoder(os.path.join(FIXTURES, "wavlm"))
  np.testing.assert_allclose(  # 3,200 and 5,000 samples: two batches
      enc.embed(audio[2:]), np.stack([ref[f"last_{i}"].mean(0)
                                      for i in (2, 3)]), atol=TOL, rtol=0)
  one = extract.SpeechEncoder(os.path.join(FIXTURES, "wavlm"),
                              pooling="mean_std").embed(audio[1:2])[0]
  last = ref["last_1"]
  np.testing.assert_allclose(one, np.concatenate([last.mean(0),
                                                  last.std(0)]),
                             atol=TOL, rtol=0)
  # pool_sums (what the compiled call returns) on the references, padded
  t = max(ref[f"hidden_{i}"].shape[1] for i in range(4))
  pad = lambda a: np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, t - a.shape[-2]),
                                                        (0, 0)])
  states = [np.stack([pad(ref[f"hidden_{i}"])[j] for i in range(4)])
            for j in range(3)]
  last = np.stack([pad(ref[f"last_{i}"]) for i in range(4)])
  frames = np.array([ref[f"last_{i}"].shape[0] for i in range(4)])
  for layer, want in (
      ("last", [ref[f"last_{i}"] for i in range(4)]),
      ("mean", [ref[f"hidden_{i}"].mean(0) for i in range(4)]),
      (1, [ref[f"hidden_{i}"][1] for i in range(4)]),
      (extract.parse_layer("0", 2), [ref[f"hidden_{i}"][0]
                                     for i in range(4)])):
    s, sq, n = extract.pool_sums(states, last, frames, layer, "mean_std")
    np.testing.assert_array_equal(n, frames)
    np.testing.assert_allclose(np.asarray(s) / frames[:, None],
                               [w.mean(0) for w in want], atol=1e-5)
    np.testing.assert_allclose(np.asarray(sq) / frames[:, None],
                               [np.square(w).mean(0) for w in want],
                               atol=1e-5)


def test_transformers_padded_group_norm_batches_are_not_the_reference():
  """Why padding is masked in the front end's GroupNorm: transformers' own
  padded batch of a group-norm model differs from its single-clip outputs
  (its layer-norm models agree); annojax's batch equals the single clips
  (test above)."""
  for name, differs in (("wavlm", True), ("wav2vec2_stable", False)):
    ref, audio = _reference(name)
    err = max(np.abs(ref["batch_last"][i, :len(ref[f"last_{i}"])] -
                     ref[f"last_{i}"]).max() for i in range(len(audio)))
    assert (err > 0.1) == differs, (name, err)


def test_long_audio_is_pooled_over_its_pieces():
  """A clip longer than chunk_seconds is encoded in equal pieces: its mean
  embedding is the frame-weighted mean of transformers' outputs for the two
  halves, each alone (not the whole clip's)."""
  ref, audio = _reference("wavlm")
  y = audio[-1]  # 5,000 samples
  enc = extract.SpeechEncoder(os.path.join(FIXTURES, "wavlm"),
                              chunk_seconds=2600 / 16000)
  assert enc.pieces(len(y)) == [(0, 2500), (2500, 5000)]
  halves = [ref["piece_last_0"], ref["piece_last_1"]]
  want = np.concatenate(halves).mean(0)
  np.testing.assert_allclose(enc.embed([y])[0], want, atol=TOL, rtol=0)
  assert np.abs(want - ref["last_3"].mean(0)).max() > 10 * TOL


def test_do_normalize_normalises_each_clip(tmp_path):
  """preprocessor_config.json's do_normalize (wav2vec2-base): each clip is
  scaled to zero mean and unit variance (transformers' formula, eps 1e-7)
  before the encoder (a model with conv biases: not scale-invariant)."""
  _, audio = _reference("wav2vec2_stable")
  d = _copy("wav2vec2_stable", tmp_path)
  (d / "preprocessor_config.json").write_text(json.dumps(
      {"sampling_rate": 16000, "do_normalize": True}))
  y = 3.0 * audio[2] + 0.5
  got = extract.SpeechEncoder(str(d)).hidden_states([y])[0][1]
  plain = extract.SpeechEncoder(os.path.join(FIXTURES, "wav2vec2_stable"))
  normed = (y - y.mean()) / np.sqrt(y.var() + 1e-7)
  np.testing.assert_allclose(got, plain.hidden_states([normed])[0][1],
                             atol=1e-5)
  assert np.abs(got - plain.hidden_states([y])[0][1]).max() > 0.05


def test_bfloat16_is_close_to_the_float32_reference():
  ref, audio = _reference("wavlm")
  enc = extract.SpeechEncoder(os.path.join(FIXTURES, "wavlm"),
                              dtype="bfloat16")
  got = np.stack([last.mean(0) for _, last in enc.hidden_states(audio)])
  want = np.stack([ref[f"last_{i}"].mean(0) for i in range(4)])
  scale = np.abs(want).max()
  assert np.abs(got - want).max() < 0.05 * scale
  cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(
      want, axis=1)
  assert cos.min() > 0.999


def _write_safetensors(path, tensors):
  """A .safetensors file written by hand: {name: (dtype, shape, bytes)}."""
  header, blobs, offset = {}, [], 0
  for name, (dtype, shape, raw) in tensors.items():
    header[name] = {"dtype": dtype, "shape": list(shape),
                    "data_offsets": [offset, offset + len(raw)]}
    blobs.append(raw)
    offset += len(raw)
  h = json.dumps(header).encode()
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def test_safetensors_reader_widens_bfloat16_and_float16(tmp_path):
  p = str(tmp_path / "m.safetensors")
  _write_safetensors(p, {
      # bfloat16 1.5, -2.0, 0.15625: the top 16 bits of the float32s
      "a": ("BF16", (3,), struct.pack("<3H", 0x3FC0, 0xC000, 0x3E20)),
      "b": ("F16", (2, 1), struct.pack("<2H", 0x3C00, 0xC500)),  # 1, -5
      "c": ("F32", (2,), struct.pack("<2f", 0.1, -3.25))})
  t = checkpoint.read_safetensors(p)
  assert t["a"].dtype == np.float32
  np.testing.assert_array_equal(t["a"], [1.5, -2.0, 0.15625])
  np.testing.assert_array_equal(t["b"], [[1.0], [-5.0]])
  np.testing.assert_array_equal(t["c"], np.array([0.1, -3.25], np.float32))
  _write_safetensors(p, {"a": ("F32", (4,), b"\0" * 8)})
  with pytest.raises(checkpoint.CheckpointError,
                     match=r"tensor a has 8 bytes, expected \[4\] x 4"):
    checkpoint.read_safetensors(p)
  with open(p, "r+b") as f:
    f.truncate(os.path.getsize(p) - 4)
  with pytest.raises(checkpoint.CheckpointError, match="runs past the end"):
    checkpoint.read_safetensors(p)


def _copy(name, tmp_path):
  d = tmp_path / name
  shutil.copytree(os.path.join(FIXTURES, name), d)
  return d


def test_bad_checkpoints_are_errors_naming_the_file(tmp_path):
  with pytest.raises(checkpoint.CheckpointError, match="not a directory"):
    extract.SpeechEncoder(str(tmp_path / "nowhere"))
  d = _copy("wavlm", tmp_path)
  c = json.loads((d / "config.json").read_text())
  (d / "config.json").write_text(json.dumps({**c, "model_type": "whisper"}))
  with pytest.raises(checkpoint.CheckpointError,
                     match=r"config.json: model_type 'whisper' is not "
                           r"supported; expected one of"):
    extract.SpeechEncoder(str(d))
  (d / "config.json").write_text(json.dumps(
      {**c, "feat_extract_activation": "relu"}))
  with pytest.raises(checkpoint.CheckpointError,
                     match="feat_extract_activation = 'relu'"):
    extract.SpeechEncoder(str(d))
  (d / "config.json").write_text(json.dumps({**c, "num_hidden_layers": 3}))
  with pytest.raises(checkpoint.CheckpointError,
                     match=r"model.safetensors: tensor 'encoder.layers.2."
                           r"attention.q_proj.weight' \(shape \(32, 32\)\) "
                           r"is missing"):
    extract.SpeechEncoder(str(d))
  (d / "config.json").write_text(json.dumps({**c, "hidden_size": 40,
                                             "num_attention_heads": 4}))
  with pytest.raises(checkpoint.CheckpointError,
                     match=r"has shape \(32, 20\), expected \(40, 20\)"):
    extract.SpeechEncoder(str(d))
  (d / "config.json").write_text(json.dumps(c))
  os.rename(d / "model.safetensors", d / "pytorch_model.bin")
  with pytest.raises(checkpoint.CheckpointError,
                     match=r"model.safetensors is missing; .* has "
                           r"pytorch_model.bin .*st.save_file"):
    extract.SpeechEncoder(str(d))
  os.remove(d / "config.json")
  with pytest.raises(checkpoint.CheckpointError,
                     match=r"config.json is missing"):
    extract.SpeechEncoder(str(d))
  with pytest.raises(ValueError, match="features.layer 3: this model has "
                                       "hidden states 0..2"):
    extract.SpeechEncoder(os.path.join(FIXTURES, "wavlm"), layer=3)
  with pytest.raises(ValueError, match="features.layer 'first'"):
    extract.SpeechEncoder(os.path.join(FIXTURES, "wavlm"), layer="first")


def test_features_job_resamples_and_names_bad_files(tmp_path):
  """--mode=features with extractor=wavlm: one embedding per file (a
  fixture clip's equals transformers' pooled output); a 22.05 kHz file is
  resampled to 16 kHz (close to the same tone written at 16 kHz); a file
  shorter than the first frame is named; a checkpoint of another kind is
  refused."""
  from configs import default  # pylint: disable=g-import-not-at-top
  audio = tmp_path / "audio"
  audio.mkdir()
  tone = lambda sr: 0.3 * np.sin(2 * np.pi * 220 * np.arange(int(
      .25 * sr)) / sr)
  sf.write(audio / "a16.wav", tone(16000), 16000)
  sf.write(audio / "a22.wav", tone(22050), 22050)
  ref, ref_audio = _reference("wavlm")  # transformers' output known
  sf.write(audio / "noise.wav", ref_audio[2], 16000, subtype="FLOAT")
  sf.write(audio / "short.wav", np.zeros(20), 16000)  # the tiny model's
  # first frame needs 30 samples (WavLM-base's: 400, 25 ms)
  config = default.get_config()
  config.features.audio_dir = str(audio)
  config.features.extractor = "wavlm"
  config.features.checkpoint = os.path.join(FIXTURES, "wavlm")
  config.features.workers = 1
  config.train.progress_bar = False
  with pytest.raises(features.FeatureError,
                     match=r"short.wav \(ValueError: 20 samples: shorter "
                           r"than the encoder's first frame"):
    features.run(config, str(tmp_path / "w"))
  config.features.skip_bad = True
  with np.load(features.run(config, str(tmp_path / "w"))) as z:
    ids, emb = z["clip_ids"].tolist(), z["embeddings"]
  assert ids == ["a16", "a22", "noise"] and emb.shape == (3, 32)
  np.testing.assert_allclose(emb[2], ref["last_2"].mean(0), atol=TOL, rtol=0)
  between = np.abs(emb[0] - emb[1]).max()
  assert between < 0.05 * np.abs(emb[0] - emb[2]).max()
  config.features.extractor = "hubert"
  with pytest.raises(checkpoint.CheckpointError,
                     match=r"wavlm/config.json is model_type 'wavlm'; set "
                           r"--config.features.extractor=wavlm"):
    features.run(config, str(tmp_path / "w2"))
  config.features.extractor = "wavlm"
  config.features.layer = "mean"  # a resumed run must keep its settings
  with pytest.raises(features.FeatureError, match="extracted with"):
    features.run(config, str(tmp_path / "w"))


def _write_corpus(root, rng, name, n_speakers, clips_per_speaker, raters,
                  per_clip, scale):
  """Tones whose brightness drives everyone's activation and whose pitch
  drives valence, up for raters of type 0 and down for type 1."""
  rows = ["clip,annotator,speaker,activation,valence"]
  sr, n = 16000, 1920  # 0.12 s
  t = np.arange(n) / sr
  for s in range(n_speakers):
    for c in range(clips_per_speaker):
      clip = f"{name}_s{s:02d}_c{c:02d}"
      f0, bright = rng.uniform(100, 400), rng.uniform(0, 1)
      y = rng.uniform(0.2, 0.6) * (np.sin(2 * np.pi * f0 * t) + bright *
                                   np.sin(2 * np.pi * 3 * f0 * t))
      sf.write(root / "audio" / f"{clip}.wav", y.astype(np.float32), sr,
               subtype="FLOAT")
      pitch = (np.log(f0) - np.log(200)) / 0.7  # ~[-1, 1]
      for r in rng.choice(len(raters), per_clip, replace=False):
        act = (2 * bright - 1) + 0.2 * rng.normal()
        val = (pitch if raters[r][1] == 0 else -pitch) + 0.2 * rng.normal()
        lo, hi = scale
        to = lambda v: np.clip(np.round((v + 1) / 2 * (hi - lo) + lo), lo,
                               hi)
        rows.append(f"{clip},{raters[r][0]},{name}_s{s:02d},{to(act):g},"
                    f"{to(val):g}")
  (root / f"{name}.csv").write_text("\n".join(rows) + "\n")


def test_audio_to_protocol_end_to_end(tiny_config, tmp_path):
  """Generated audio -> features (the tiny WavLM) -> prepare -> train ->
  protocol. Valence is pitch read up by half the raters and down by the
  other half: the consensus cannot predict a new rater's valence, the head
  of a pre-trained rater of the same kind can, through the encoder's
  features."""
  from annojax import jobs  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  (tmp_path / "audio").mkdir()
  source = [(f"src{i:02d}", i % 2) for i in range(40)]
  target = [(f"new{i:02d}", i % 2) for i in range(10)]
  _write_corpus(tmp_path, rng, "pre", 20, 20, source, 6, (1, 7))
  _write_corpus(tmp_path, rng, "new", 8, 20, target, 6, (1, 5))
  c = tiny_config
  c.features.audio_dir = str(tmp_path / "audio")
  c.features.extractor = "wavlm"
  c.features.checkpoint = os.path.join(FIXTURES, "wavlm")
  c.features.workers = 1
  emb = features.run(c, str(tmp_path / "work"))
  with np.load(emb) as z:
    assert z["embeddings"].shape == (560, 32)
  c.mode = "all"
  c.data.corpus = "files"
  src, tgt = c.data.files.source, c.data.files.target
  src.path, src.embeddings = str(tmp_path / "pre.csv"), emb
  tgt.path, tgt.embeddings = str(tmp_path / "new.csv"), emb
  c.eval.folds = 3
  c.eval.enroll_sizes = (20, 0)
  c.eval.adaptive_sizes = ()
  c.eval.rows = ("most_similar", "random_head")
  c.eval.seeds = 1  # one replicate: the planted effect is large
  c.train.num_epochs = 8
  out = jobs.run(c, str(tmp_path / "work"))
  assert out["prepared"].overlap["clips"] == 0
  rows = out["results"]["rows"]
  ccc = {k: {d: v["ccc_ind"][d]["mean"] for d in ("activation", "valence")}
         for k, v in rows.items()}
  assert ccc["aggregate"]["activation"] > 0.5, ccc["aggregate"]
  assert abs(ccc["aggregate"]["valence"]) < 0.2, ccc["aggregate"]
  assert ccc["most_similar@all"]["valence"] > 0.5, ccc["most_similar@all"]
