"""librosa feature extraction: values, parallel == serial, resume, bad audio."""

import glob
import os

import numpy as np
import pytest
import soundfile as sf

from annojax import egemaps
from annojax import features
from annojax.corpora import embeddings


def _write_tones(d, freqs, sr=16000, seconds=0.5):
  d.mkdir(parents=True, exist_ok=True)
  t = np.arange(int(sr * seconds)) / sr
  for i, f in enumerate(freqs):
    sf.write(d / f"clip_{i:02d}.wav", 0.3 * np.sin(2 * np.pi * f * t), sr)
  return sorted(str(p) for p in d.glob("*.wav"))


def test_embedding_separates_low_and_high_tones(tmp_path):
  low, high = _write_tones(tmp_path / "a", [200, 3000])
  e_low, e_high = features.clip_embedding(low), features.clip_embedding(high)
  assert e_low.shape == (2 * (64 + 20),)
  mel_low, mel_high = e_low[:64], e_high[:64]  # mean log-mel per band
  # The energy peak sits in a lower mel band for the lower tone.
  assert mel_low.argmax() < mel_high.argmax()


def test_parallel_matches_serial_and_resumes(tmp_path):
  paths = _write_tones(tmp_path / "audio", [220, 330, 440, 550, 660])
  serial = features.extract(paths, str(tmp_path / "s.npz"), chunk=2,
                            progress=False)
  par = features.extract(paths, str(tmp_path / "p.npz"), chunk=2, workers=2,
                         progress=False)
  ids_s, emb_s = embeddings.read_embeddings(serial)
  ids_p, emb_p = embeddings.read_embeddings(par)
  assert list(ids_s) == [f"clip_{i:02d}" for i in range(5)]
  assert sorted(ids_p) == sorted(ids_s)
  order = np.argsort(ids_p)
  np.testing.assert_allclose(emb_p[order], emb_s, rtol=1e-5, atol=1e-5)

  # Resume: a part already on disk is not recomputed. Overwrite one part's
  # values with a marker; a rerun with one more clip keeps the marker.
  parts = sorted(glob.glob(str(tmp_path / "s.npz.parts" / "part_*.npz")))
  assert len(parts) == 3  # chunks of 2, 2, 1
  first = tmp_path / "s.npz.parts" / parts[0]
  with np.load(first) as z:
    ids = z["clip_ids"]
  np.savez(first, clip_ids=ids, embeddings=np.full((len(ids), 168), 7.0,
                                                    np.float32))
  more = _write_tones(tmp_path / "audio", [220, 330, 440, 550, 660, 770])
  out = features.extract(more, str(tmp_path / "s.npz"), chunk=2,
                         progress=False)
  ids2, emb2 = embeddings.read_embeddings(out)
  assert len(ids2) == 6
  assert (emb2[list(ids2).index(str(ids[0]))] == 7.0).all()
  assert len(glob.glob(str(tmp_path / "s.npz.parts" / "part_*.npz"))) == 4


def test_bad_audio_is_reported_by_path(tmp_path):
  paths = _write_tones(tmp_path / "audio", [220, 440])
  bad = tmp_path / "audio" / "broken.wav"
  bad.write_bytes(b"RIFF\x00\x00not really a wav file")
  paths.append(str(bad))
  out = str(tmp_path / "f.npz")
  with pytest.raises(features.FeatureError, match="broken.wav"):
    features.extract(paths, out, progress=False)
  with open(out + ".errors.tsv") as f:
    assert f.read().startswith(str(bad) + "\t")
  # skip_bad: the good clips are kept, the bad one listed and left out.
  features.extract(paths, out, progress=False, skip_bad=True)
  ids, _ = embeddings.read_embeddings(out)
  assert sorted(ids) == ["clip_00", "clip_01"]


def test_import_dir_mean_pools_frames(tmp_path):
  d = tmp_path / "wavlm"
  d.mkdir()
  np.save(d / "a.npy", np.array([[1.0, 2.0], [3.0, 4.0]]))
  np.save(d / "b.npy", np.array([5.0, 6.0]))
  ids, emb = embeddings.read_embeddings(
      features.import_dir(str(d), str(tmp_path / "e.npz")))
  assert list(ids) == ["a", "b"]
  np.testing.assert_allclose(emb, [[2.0, 3.0], [5.0, 6.0]])
  np.save(d / "c.npy", np.zeros(3))
  with pytest.raises(ValueError, match="c.npy: 3 features"):
    features.import_dir(str(d), str(tmp_path / "e.npz"))


def test_features_of_a_release_layout_join_its_reader(tmp_path):
  """Audio in MSP-IMPROV's release layout (Audio/session<k>/...) -> the
  feature job's clip ids are the reader's: every rated clip joins."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from annojax.corpora import readers  # pylint: disable=g-import-not-at-top
  fixture = os.path.join(os.path.dirname(__file__), "fixtures", "formats",
                         "msp_improv")
  sr, t = 16000, np.arange(4000) / 16000
  for sub, name in (("session2/S03A/T", "MSP-IMPROV-S03A-M01-T-FM02"),
                    ("session4/S07N/P", "MSP-IMPROV-S07N-F03-P-MF11")):
    d = tmp_path / "Audio" / sub
    d.mkdir(parents=True)
    sf.write(d / f"{name}.wav", 0.3 * np.sin(2 * np.pi * 440 * t), sr)
  paths = features.find_audio(str(tmp_path / "Audio"), "**/*.wav")
  out = features.extract(paths, str(tmp_path / "f.npz"), progress=False)
  corpus = readers.load(ml_collections.ConfigDict(dict(
      name="improv", reader="msp_improv", path=fixture, embeddings=out,
      dims=("activation", "valence"), options={})))
  assert sorted(corpus.clips) == ["MSP-IMPROV-S03A-M01-T-FM02",
                                  "MSP-IMPROV-S07N-F03-P-MF11"]
  assert corpus.embeddings.shape == (2, 2 * (64 + 20))


def _write_voices(d, specs, sr=16000, seconds=1.0):
  """Harmonic tones (7 partials, 1/h) at (f0, amplitude): voiced enough for
  openSMILE's pitch tracker."""
  d.mkdir(parents=True, exist_ok=True)
  t = np.arange(int(sr * seconds)) / sr
  for i, (f0, amp) in enumerate(specs):
    y = amp * sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 8))
    sf.write(d / f"voice_{i}.wav", y, sr)
  return sorted(str(p) for p in d.glob("*.wav"))


def test_opensmile_egemaps_functionals_measure_pitch_and_loudness(tmp_path):
  """88 named eGeMAPS functionals; F0 in semitones above 27.5 Hz is
  12 log2(f0 / 27.5) (36 at 220 Hz, 24 at 110 Hz); 4x the amplitude is
  louder."""
  paths = _write_voices(tmp_path, [(220, .1), (110, .1), (220, .4)])
  names = egemaps.feature_names("eGeMAPSv01a")
  assert len(names) == 88 and len(set(names)) == 88
  x = np.stack([egemaps.clip_functionals(p) for p in paths])
  assert x.shape == (3, 88) and np.isfinite(x).all()
  f0 = x[:, names.index("F0semitoneFrom27.5Hz_sma3nz_amean")]
  np.testing.assert_allclose(f0, [36, 24, 36], atol=0.1)
  loud = x[:, names.index("loudness_sma3_amean")]
  assert loud[2] > 2 * loud[0]
  assert len(egemaps.feature_names("eGeMAPSv02")) == 88
  with pytest.raises(ValueError, match="feature set 'GeMAPS'"):
    egemaps.smile("GeMAPS")


def test_features_job_with_opensmile_and_csv_import(tmp_path):
  """--mode=features: extractor=opensmile writes the 88 functionals with
  their names; opensmile_csv imports the same values from a CSV; a resumed
  run with another extractor is refused."""
  from configs import default  # pylint: disable=g-import-not-at-top
  paths = _write_voices(tmp_path / "audio", [(220, .1), (150, .2)])
  config = default.get_config()
  config.features.audio_dir = str(tmp_path / "audio")
  config.features.extractor = "opensmile"
  config.features.workers = 1
  config.train.progress_bar = False
  out = features.run(config, str(tmp_path / "w"))
  with np.load(out) as z:
    ids, emb, names = z["clip_ids"], z["embeddings"], z["feature_names"]
  assert ids.tolist() == ["voice_0", "voice_1"] and emb.shape == (2, 88)
  assert names.tolist() == egemaps.feature_names()
  csv_path = tmp_path / "smile.csv"
  csv_path.write_text(
      "name;frameTime;" + ";".join(names) + "\n" + "".join(
          f"'{os.path.basename(p)}';0.0;" + ";".join(f"{v:.9g}" for v in e)
          + "\n" for p, e in zip(paths, emb)))
  config.features.opensmile_csv = str(csv_path)
  config.features.out = str(tmp_path / "imported.npz")
  ids2, emb2 = embeddings.read_embeddings(features.run(config, "unused"))
  assert ids2.tolist() == ids.tolist()
  np.testing.assert_allclose(emb2, emb, rtol=1e-6)
  config.features.opensmile_csv = ""
  config.features.out = out
  config.features.extractor = "librosa"
  with pytest.raises(features.FeatureError, match="extracted with"):
    features.run(config, str(tmp_path / "w"))
