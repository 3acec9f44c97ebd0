"""Utterance embeddings from audio (librosa, openSMILE, or a
self-supervised speech encoder: WavLM, wav2vec 2.0, HuBERT), and importing
external ones.

  python -m annojax.main --config=configs/default.py --workdir=W \
      --mode=features --config.features.audio_dir=/data/IEMOCAP

writes W/features.npz (clip_ids [C], embeddings [C, F]), the format every
corpus reader joins with. A clip's embedding is the mean and standard
deviation over frames of its log-mel spectrogram and MFCCs (F = 2 * (n_mels +
n_mfcc)); with extractor="opensmile", openSMILE's 88 eGeMAPS functionals
(annojax/egemaps.py; the npz then also holds `feature_names`); with
extractor="wavlm" (or "wav2vec2", "hubert") and checkpoint=DIR, a Hugging
Face model directory (config.json + model.safetensors), the encoder's
hidden states pooled over the clip's frames (annojax/encoders: the layer,
the pooling, float32 / bfloat16, long audio in pieces). Audio is decoded
with librosa, mixed to mono and resampled (soxr, librosa's default) to
sample_rate, or to the encoder's rate (16 kHz). Clip id =
ratings.clip_id of the path (file name without media extensions), the rule
every corpus reader uses.

Extraction runs in `workers` processes, in chunks; each finished chunk is
written to <out>.parts/ at once, so an interrupted run resumes where it
stopped (clips already in a part are not recomputed). Audio that cannot be
decoded is never skipped silently: every failing path and its error go to
<out>.errors.tsv, and the job fails naming them, unless skip_bad=True (then
they are logged and left out).

`import_dir` turns a directory of per-clip .npy files (e.g. WavLM outputs,
[F] or frame-level [T, F], mean-pooled) into the same .npz; `opensmile_csv`
imports openSMILE's CSV output (corpora/embeddings.py).
"""

from __future__ import annotations

import concurrent.futures
import glob
import json
import multiprocessing
import os
import sys

from absl import logging
import numpy as np
import tqdm

from annojax import audio
from annojax import egemaps
from annojax.corpora import embeddings
from annojax.corpora import ratings as ratings_lib

ENCODERS = ("wavlm", "wav2vec2", "hubert")  # from features.checkpoint
EXTRACTORS = ("librosa", "opensmile") + ENCODERS


class FeatureError(RuntimeError):
  """Audio that could not be turned into features; names the paths."""


def clip_embedding(path: str, sample_rate: int = 16000, n_mels: int = 64,
                   n_mfcc: int = 20) -> np.ndarray:
  """Log-mel + MFCC mean/std statistics of one audio file -> [F]."""
  import librosa  # pylint: disable=g-import-not-at-top  (slow import)
  y, sr = audio.load_audio(path, sample_rate)
  mel = librosa.power_to_db(librosa.feature.melspectrogram(
      y=y, sr=sr, n_mels=n_mels, n_fft=512, hop_length=160))
  mfcc = librosa.feature.mfcc(S=mel, n_mfcc=n_mfcc)
  frames = np.concatenate([mel, mfcc], 0)  # [n_mels + n_mfcc, T]
  return np.concatenate([frames.mean(1), frames.std(1)]).astype(np.float32)


def embed(path: str, extractor: str = "librosa", sample_rate: int = 16000,
          n_mels: int = 64, n_mfcc: int = 20,
          opensmile_set: str = "eGeMAPSv01a") -> np.ndarray:
  """One clip's embedding with the configured extractor."""
  if extractor == "librosa":
    return clip_embedding(path, sample_rate, n_mels, n_mfcc)
  if extractor == "opensmile":
    return egemaps.functionals(*audio.load_audio(path, sample_rate),
                               opensmile_set)
  raise ValueError(f"unknown features.extractor {extractor!r}; one of "
                   f"{EXTRACTORS}")


def _chunk(paths, kw):
  """Worker: (ids, embeddings, errors) for one chunk of files."""
  ids, embs, errors = [], [], []
  for p in paths:
    try:
      embs.append(embed(p, **kw))
      ids.append(_clip_id(p))
    except Exception as e:  # pylint: disable=broad-except  (reported below)
      errors.append((p, f"{type(e).__name__}: {e}".replace("\n", " ")))
  return ids, embs, errors


def _encoder_chunk(encoder, paths: list[str], workers: int):
  """(ids, embeddings, errors) of one chunk through a speech encoder: the
  audio decoded (resampled to the encoder's rate) in `workers` threads,
  then embedded in batches."""
  rate = encoder.cfg.sample_rate

  def load(p):
    try:
      return p, encoder.prepare(audio.load_audio(p, rate)[0]), None
    except Exception as e:  # pylint: disable=broad-except  (reported)
      return p, None, f"{type(e).__name__}: {e}".replace("\n", " ")

  with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
    loaded = list(pool.map(load, paths))
  good = [(p, y) for p, y, e in loaded if e is None]
  errors = [(p, e) for p, _, e in loaded if e is not None]
  embs = list(encoder.embed_prepared([y for _, y in good])) if good else []
  return [_clip_id(p) for p, _ in good], embs, errors


def _clip_id(path: str) -> str:
  return ratings_lib.clip_id(path)  # the rule every reader uses


def find_audio(audio_dir: str, pattern: str) -> list[str]:
  paths = sorted(glob.glob(os.path.join(audio_dir, pattern), recursive=True))
  if not paths:
    raise FileNotFoundError(f"no audio matching {pattern!r} under "
                            f"{audio_dir}")
  ids = [_clip_id(p) for p in paths]
  if len(set(ids)) != len(ids):
    dup = sorted({i for i in ids if ids.count(i) > 1})[:3]
    raise ValueError(f"{audio_dir}: several files share the clip id(s) {dup}"
                     " (clip id = ratings.clip_id: the file name without media extensions)")
  return paths


def _read_parts(parts_dir: str) -> tuple[list[str], list[np.ndarray]]:
  ids, embs = [], []
  for p in sorted(glob.glob(os.path.join(parts_dir, "part_*.npz"))):
    with np.load(p) as z:
      ids += z["clip_ids"].astype(str).tolist()
      embs += list(z["embeddings"])
  return ids, embs


def extract(paths: list[str], out_path: str, *, workers: int = 1,
            chunk: int = 64, skip_bad: bool = False, progress: bool = True,
            encoder=None, **kw) -> str:
  """Embeds every audio file in `paths` into out_path (.npz); resumable.

  With `encoder` (an encoders.extract.SpeechEncoder), chunks run in this
  process through it (`workers` threads decode the audio); otherwise each
  chunk runs embed() on every file, in `workers` processes. `kw` are the
  settings a resumed run must share."""
  parts_dir = out_path + ".parts"
  os.makedirs(parts_dir, exist_ok=True)
  _check_settings(parts_dir, kw)
  done_ids, _ = _read_parts(parts_dir)
  done = set(done_ids)
  todo = [p for p in paths if _clip_id(p) not in done]
  if done:
    logging.info("features: %d clips already extracted in %s, %d to go",
                 len(done), parts_dir, len(todo))
  n_parts = len(glob.glob(os.path.join(parts_dir, "part_*.npz")))
  chunks = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
  errors = []
  bar = tqdm.tqdm(total=len(todo), desc="features", unit="clip",
                  disable=not (progress and sys.stderr.isatty()))

  def save(result):
    nonlocal n_parts
    ids, embs, errs = result
    errors.extend(errs)
    if ids:
      np.savez(os.path.join(parts_dir, f"part_{n_parts:05d}.npz"),
               clip_ids=np.array(ids), embeddings=np.stack(embs))
      n_parts += 1
    bar.update(len(ids) + len(errs))

  if encoder is not None:
    for c in chunks:
      save(_encoder_chunk(encoder, c, workers))
  elif workers > 1 and len(chunks) > 1:
    # spawn, not fork: forking a process that has started JAX can deadlock.
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers,
                                                mp_context=ctx) as pool:
      for result in pool.map(_chunk, chunks, [kw] * len(chunks)):
        save(result)
  else:
    for c in chunks:
      save(_chunk(c, kw))
  bar.close()

  if errors:
    err_path = out_path + ".errors.tsv"
    with open(err_path, "w") as f:
      f.writelines(f"{p}\t{e}\n" for p, e in errors)
    listing = "; ".join(f"{p} ({e})" for p, e in errors[:5])
    if not skip_bad:
      raise FeatureError(
          f"{len(errors)} audio file(s) could not be decoded, all listed in "
          f"{err_path}: {listing}. Fix or remove them, or set "
          "config.features.skip_bad=True to leave them out; the extracted "
          "clips are kept and a rerun resumes.")
    logging.warning("features: left out %d undecodable file(s), listed in "
                    "%s: %s", len(errors), err_path, listing)
  ids, embs = _read_parts(parts_dir)
  keep = set(_clip_id(p) for p in paths)
  rows = [i for i, c in enumerate(ids) if c in keep]
  if not rows:
    raise FeatureError(f"no clip could be embedded ({len(errors)} failed, "
                       f"listed in {out_path}.errors.tsv)")
  names = (egemaps.feature_names(kw.get("opensmile_set", "eGeMAPSv01a"))
           if kw.get("extractor") == "opensmile" else [])
  np.savez(out_path, clip_ids=np.array([ids[i] for i in rows]),
           embeddings=np.stack([embs[i] for i in rows]),
           **({"feature_names": np.array(names)} if names else {}))
  logging.info("features: %d clips x %d -> %s", len(rows), len(embs[0]),
               out_path)
  return out_path


def _check_settings(parts_dir: str, kw: dict):
  """A resumed extraction must use the settings of the parts it resumes."""
  path = os.path.join(parts_dir, "settings.json")
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    if old != kw:
      raise FeatureError(
          f"{parts_dir} holds clips extracted with {old}, this run asks for "
          f"{kw}; delete {parts_dir} (or set another features.out) to start "
          "over")
  else:
    with open(path, "w") as f:
      json.dump(kw, f)


def import_opensmile_csv(paths, out_path: str) -> str:
  """openSMILE CSV output (one row per clip) -> the embeddings .npz."""
  ids, emb, names = embeddings.read_opensmile_csv(paths)
  np.savez(out_path, clip_ids=ids, embeddings=emb,
           feature_names=np.array(names))
  logging.info("features: imported %d clips x %d openSMILE functionals -> "
               "%s", len(ids), emb.shape[1], out_path)
  return out_path


def import_dir(directory: str, out_path: str) -> str:
  """Per-clip .npy files ([F] or [T, F], mean-pooled over T) -> one .npz."""
  paths = sorted(glob.glob(os.path.join(directory, "**", "*.npy"),
                           recursive=True))
  if not paths:
    raise FileNotFoundError(f"no .npy files under {directory}")
  ids, embs = [], []
  for p in paths:
    x = np.load(p)
    if x.ndim == 2:
      x = x.mean(0)
    if x.ndim != 1 or not np.isfinite(x).all():
      raise ValueError(f"{p}: expected a finite [F] or [T, F] array, got "
                       f"shape {x.shape}")
    if embs and x.shape != embs[0].shape:
      raise ValueError(f"{p}: {x.shape[0]} features, but {paths[0]} has "
                       f"{embs[0].shape[0]}")
    ids.append(_clip_id(p))
    embs.append(x.astype(np.float32))
  np.savez(out_path, clip_ids=np.array(ids), embeddings=np.stack(embs))
  return out_path


def run(config, workdir: str) -> str:
  """--mode=features: audio_dir (librosa / openSMILE), embeddings_dir or
  opensmile_csv (import)."""
  f = config.features
  out = f.out or os.path.join(workdir, "features.npz")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  if f.embeddings_dir:
    return import_dir(f.embeddings_dir, out)
  if f.opensmile_csv:
    return import_opensmile_csv(f.opensmile_csv, out)
  if not f.audio_dir:
    raise ValueError("set --config.features.audio_dir (audio to embed), "
                     "--config.features.embeddings_dir (.npy to import) or "
                     "--config.features.opensmile_csv (CSV to import)")
  if f.extractor not in EXTRACTORS:
    raise ValueError(f"unknown features.extractor {f.extractor!r}; one of "
                     f"{EXTRACTORS}")
  encoder = None
  kw = dict(extractor=f.extractor, sample_rate=f.sample_rate)
  if f.extractor == "librosa":
    kw.update(n_mels=f.n_mels, n_mfcc=f.n_mfcc)
  elif f.extractor == "opensmile":
    kw.update(opensmile_set=f.opensmile_set)
  else:
    encoder = speech_encoder(f)
    kw.update(sample_rate=encoder.cfg.sample_rate,
              checkpoint=os.path.abspath(f.checkpoint),
              layer=encoder.layer, pooling=f.pooling, dtype=f.dtype,
              chunk_seconds=f.chunk_seconds)
  paths = find_audio(f.audio_dir, f.pattern)
  return extract(paths, out, workers=f.workers, chunk=f.chunk,
                 skip_bad=f.skip_bad, encoder=encoder,
                 progress=bool(config.train.progress_bar), **kw)


def speech_encoder(f):
  """The SpeechEncoder of config.features (extractor wavlm / wav2vec2 /
  hubert, checkpoint DIR); the checkpoint must be of the extractor's
  kind."""
  from annojax.encoders import checkpoint  # pylint: disable=g-import-not-at-top
  from annojax.encoders import extract as encoders  # pylint: disable=g-import-not-at-top
  if not f.checkpoint:
    raise ValueError(
        f"features.extractor={f.extractor} needs --config.features."
        "checkpoint=DIR: a Hugging Face model directory (config.json + "
        "model.safetensors), e.g. a local copy of microsoft/wavlm-base-plus")
  cfg = checkpoint.read_config(f.checkpoint)
  kind = cfg.model_type
  if kind != f.extractor:
    raise checkpoint.CheckpointError(
        f"features.extractor={f.extractor}, but "
        f"{os.path.join(f.checkpoint, 'config.json')} is model_type "
        f"{kind!r}; set --config.features.extractor={kind}")
  if f.sample_rate != cfg.sample_rate:
    logging.warning("features.sample_rate=%d is not used by %s: audio is "
                    "resampled to the checkpoint's %d Hz", f.sample_rate,
                    f.extractor, cfg.sample_rate)
  return encoders.SpeechEncoder(
      f.checkpoint, layer=f.layer, pooling=f.pooling, dtype=f.dtype,
      chunk_seconds=f.chunk_seconds, batch_seconds=f.batch_seconds)
