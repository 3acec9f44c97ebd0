"""openSMILE eGeMAPS functionals, extracted from audio.

Extraction uses the `opensmile` package (audEERING; its wheel ships the
native library and the configs and runs offline; free for research and
personal use, commercial use needs audEERING's licence). eGeMAPSv01a gives
the 88 functionals of Eyben et al. (2016) per clip, the features the NSC
corpus authors published; eGeMAPSv02 is the revised set (also 88).

  --mode=features --config.features.extractor=opensmile \
      --config.features.audio_dir=/data/wav

Users who already have openSMILE's CSV output import it instead
(annojax/corpora/embeddings.py reads it):

  --mode=features --config.features.opensmile_csv=a.csv,b.csv
"""

from __future__ import annotations

import numpy as np

from annojax import audio

FEATURE_SETS = ("eGeMAPSv01a", "eGeMAPSv02")
_smile = {}


def smile(feature_set: str = "eGeMAPSv01a"):
  """The (per-process, cached) opensmile.Smile for `feature_set`."""
  if feature_set not in FEATURE_SETS:
    raise ValueError(f"openSMILE feature set {feature_set!r}; one of "
                     f"{FEATURE_SETS}")
  if feature_set not in _smile:
    import opensmile  # pylint: disable=g-import-not-at-top  (optional, slow)
    import warnings  # pylint: disable=g-import-not-at-top
    with warnings.catch_warnings():  # v01a is "deprecated" in favour of v02
      warnings.simplefilter("ignore")
      _smile[feature_set] = opensmile.Smile(
          feature_set=getattr(opensmile.FeatureSet, feature_set),
          feature_level=opensmile.FeatureLevel.Functionals)
  return _smile[feature_set]


def feature_names(feature_set: str = "eGeMAPSv01a") -> list[str]:
  return list(smile(feature_set).feature_names)


def functionals(y: np.ndarray, sr: int, feature_set: str = "eGeMAPSv01a"
                ) -> np.ndarray:
  """The functionals of one mono signal -> [88] float32."""
  x = np.asarray(smile(feature_set).process_signal(y, sr), np.float32)[0]
  if not np.isfinite(x).all():
    raise ValueError("openSMILE returned non-finite functionals")
  return x


def clip_functionals(path: str, feature_set: str = "eGeMAPSv01a",
                     sample_rate: int = 16000) -> np.ndarray:
  """The functionals of one audio file (audio.load_audio) -> [88]."""
  return functionals(*audio.load_audio(path, sample_rate), feature_set)
