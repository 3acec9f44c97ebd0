"""WHiSER's labels (the MSP lab's in-the-wild set, MSP-Podcast label format):
what a user gets before any model.

  python -m annojax.main --config=configs/whiser.py --workdir=/tmp/whiser \
    --config.data.files.source.path=/data/WHiSER/Labels

`--mode=stats` (this config's default) reads only the labels, since WHiSER's
audio is distributed on request, and writes /tmp/whiser/stats/
label_stats.{md,json} and scale_use.png: ratings per worker, raters per
clip, how each 1-7 scale is used, and how each worker agrees with the
leave-one-out consensus. bench/README.md shows the output on the public
labels (27,156 ratings by 33 workers of 5,427 clips).

With embeddings of the audio (--mode=features on it, then
--config.data.files.source.embeddings=...), WHiSER can be the corpus of new
annotators: set it as the target of configs/msp_podcast.py, with
options.splits="all" (its Split_Set is NA). Every WHiSER clip has speaker
"Unknown"; unknown_speaker groups clips by the source recording in the clip
id ("001-105.1-2_14" -> "001-105"), a proxy for the speaker, so folds do not
split a recording.
"""

from configs import default
from configs import msp_podcast


def get_config():
  config = default.get_config()
  config.mode = "stats"
  config.data.corpus = "files"
  src = config.data.files.source
  src.name, src.path = "whiser", ""
  src.reader, src.options = msp_podcast.TARGETS["whiser"]
  src.dims = ("activation", "valence", "dominance")
  return config
