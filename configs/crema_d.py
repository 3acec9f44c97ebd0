"""CREMA-D, categorical: per-rater softmax heads over six emotions.

python -m annojax.main --config=configs/crema_d.py --workdir=/tmp/cremad \
  --config.data.files.source.path=/data/CREMA-D \
  --config.data.files.source.embeddings=/tmp/cremad_feat/features.npz

Needs the per-rater finishedResponses.csv and embeddings of the clips
(--mode=features on AudioWAV/). One corpus serves both roles, split so that
nothing of the test material is seen in pre-training: 80% of raters and 80%
of actors (stable hashes of their ids) pre-train the heads; the other 20% of
raters, rating the other 20% of actors' clips, are the new annotators of the
evaluation protocol (their actors form the speaker folds). The target's path
and embeddings follow the source's (config references), and prepare's
leakage check confirms that no rater, actor or clip is shared.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.corpus = "files"
  src, tgt = config.data.files.source, config.data.files.target
  src.name, src.reader = "crema_d_pretrain", "crema_d"
  src.options = {"stimulus": "voice", "raters": "pretrain",
                 "actors": "pretrain"}
  tgt.name, tgt.reader = "crema_d_new", "crema_d"
  tgt.options = {"stimulus": "voice", "raters": "new", "actors": "new"}
  # One corpus in both roles, explicitly: overriding the source's path or
  # embeddings on the command line moves the target's with them.
  tgt.path = src.get_ref("path")
  tgt.embeddings = src.get_ref("embeddings")
  config.data.min_ratings = 20
  config.train.loss = "xent"  # per-rater softmax, masked cross-entropy
  config.eval.score = "loglik"  # or "agreement"
  config.predict.score = "loglik"  # --mode=enroll: CSV clip,annotator,label
  config.optim.name = "adam"
  config.optim.learning_rate = 1e-3
  return config
