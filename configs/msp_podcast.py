"""Pre-train on MSP-Podcast's annotator population; new annotators from
another corpus (default IEMOCAP), the METHOD.md cross-corpus setting.

python -m annojax.main --config=configs/msp_podcast.py --workdir=/tmp/podcast \
  --config.data.files.source.path=/data/MSP-Podcast/Labels \
  --config.data.files.source.embeddings=/feats/podcast.npz \
  --config.data.files.target.path=/data/IEMOCAP \
  --config.data.files.target.embeddings=/feats/iemocap.npz

Target readers: iemocap (default), msp_improv, muse (--config.data.files.
target.reader=..., and --config.eval.fold_by='' for the last two). Both corpora keep activation and valence (MuSE has no
dominance); the embeddings of both must come from the same extractor (e.g.
--mode=features on each corpus's audio, or imported WavLM features).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.corpus = "files"
  src, tgt = config.data.files.source, config.data.files.target
  src.name, src.reader = "msp_podcast", "msp_podcast"
  tgt.name, tgt.reader = "target", "iemocap"
  src.dims = tgt.dims = ("activation", "valence")
  # IEMOCAP: one fold per session (speakers are Ses01_F, Ses01_M, ...), the
  # same in every seed. Set to "" for MSP-IMPROV / MuSE (random speaker
  # folds per seed).
  config.eval.fold_by = r"^(Ses\d+)"
  return config
