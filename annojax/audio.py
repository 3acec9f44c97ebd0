"""Audio files as samples, for the feature extractors."""

from __future__ import annotations

import numpy as np


def load_audio(path: str, sample_rate: int = 16000
               ) -> tuple[np.ndarray, int]:
  """(mono samples, rate) resampled to sample_rate; empty or non-finite
  audio is an error (the feature job lists it by path)."""
  import librosa  # pylint: disable=g-import-not-at-top  (slow import)
  y, sr = librosa.load(path, sr=sample_rate, mono=True)
  if y.size == 0:
    raise ValueError("no audio samples")
  if not np.isfinite(y).all():
    raise ValueError("non-finite audio samples")
  return y, sr
