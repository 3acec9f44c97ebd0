"""Pre-train on MSP-Podcast's annotator population; new annotators from
another corpus (default IEMOCAP), the METHOD.md cross-corpus setting.

python -m annojax.main --config=configs/msp_podcast.py --workdir=/tmp/podcast \
  --config.data.files.source.path=/data/MSP-Podcast \
  --config.data.files.source.embeddings=/feats/podcast.npz \
  --config.data.files.target.path=/data/IEMOCAP \
  --config.data.files.target.embeddings=/feats/iemocap.npz

source.path is the release root or its label folder (releases 1.6 to 2.0);
pre-training uses the Split_Set Train clips (options.splits; "all" for every
clip). The target corpus is chosen after the config file's name, which also
declares that reader's options so they can be set on the command line:

  configs/msp_podcast.py:iemocap     (default) options self_reports,
                                     per_session_ids; one fold per session
  configs/msp_podcast.py:msp_improv
  configs/msp_podcast.py:muse        options.annotators = the per-clip
                                     annotator list (MuSE's public file has no
                                     worker ids), self_reports
  configs/msp_podcast.py:whiser      WHiSER (MSP-Podcast label format; its
                                     audio is distributed on request)

Both corpora keep activation and valence (MuSE has no dominance); the
embeddings of both must come from the same extractor (e.g. --mode=features
on each corpus's audio, or imported WavLM features).
"""

from configs import default

TARGETS = {
    "iemocap": ("iemocap", dict(self_reports=False, per_session_ids=False)),
    "msp_improv": ("msp_improv", {}),
    "muse": ("muse", dict(annotators="", self_reports=False)),
    "whiser": ("msp_podcast", dict(splits="all",
                                   unknown_speaker=r"^([^.]+)")),
}


def get_config(target: str = "iemocap"):
  target = target or "iemocap"
  if target not in TARGETS:
    raise ValueError(f"unknown target corpus {target!r}; one of "
                     f"{sorted(TARGETS)}")
  config = default.get_config()
  config.data.corpus = "files"
  src, tgt = config.data.files.source, config.data.files.target
  src.name, src.reader = "msp_podcast", "msp_podcast"
  src.options = dict(splits=("Train",), unknown_speaker="")
  tgt.name = target
  tgt.reader, tgt.options = TARGETS[target]
  src.dims = tgt.dims = ("activation", "valence")
  # IEMOCAP: one fold per session (speakers are Ses01_F, Ses01_M, ...), the
  # same in every seed; the other targets get random speaker folds per seed.
  config.eval.fold_by = r"^(Ses\d+)" if target == "iemocap" else ""
  return config
