"""Real listeners end to end: the NSC listening test (../shared/data/nsc).

  python -m annojax.main --config=configs/nsc.py --workdir=/tmp/nsc
  python -m annojax.main --config=configs/nsc.py:/data/nsc --workdir=...

114 listeners rated 300 speakers' stimuli (one each) on 34 items, 0-100
sliders (SC_ratings.csv); activation = `aktiv` (passive..active), valence =
`angenehm` (unpleasant..pleasant). Embeddings: the corpus authors' openSMILE
eGeMAPSv01a functionals (88 per clip, the two CSVs read as they are;
standardised with the pre-training statistics).

One test is split into pre-training and target material with nothing shared
(listening_test partition): listeners and speakers are each permuted with
`data.partition_seed`, 2/3 of each go to pre-training; pre-training keeps
the ratings of pre-training listeners on pre-training speakers, the target
those of the other listeners on the other speakers; the ratings crossing
the groups are left out (~45%). So a target listener is new, and so is every
clip they are tested on. A target listener has ~13 ratings (2-3 test clips
per fold): read the pooled table beside the per-fold one. For replicates
over the listener sample as well, run several partition seeds
(bench/nsc.sh).
"""

import os

import ml_collections

from configs import default

NSC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                   "shared", "data", "nsc")
COLUMNS = {"activation": "aktiv", "valence": "angenehm"}


def get_config(nsc_dir: str = ""):
  nsc_dir = nsc_dir or NSC
  config = default.get_config()
  config.data.corpus = "files"
  seed = ml_collections.FieldReference(0)
  fraction = ml_collections.FieldReference(2 / 3)
  config.data.partition_seed = seed
  config.data.partition_fraction = fraction
  feats = ",".join(os.path.join(nsc_dir, f"eGeMAPSv01a_88_{g}spk.csv")
                   for g in ("male", "female"))
  for part in ("source", "target"):
    spec = config.data.files[part]
    spec.name, spec.reader = f"nsc_{part}", "listening_test"
    spec.path = os.path.join(nsc_dir, "SC_ratings.csv")
    spec.embeddings = feats
    spec.dims, spec.scale = tuple(COLUMNS), (0.0, 100.0)
    spec.options = ml_collections.ConfigDict(dict(
        columns=COLUMNS, scale=(0.0, 100.0),
        partition=dict(part=part, fraction=fraction, seed=seed)))
  # ~20 ratings per pre-training listener: keep those with 10 or more.
  config.data.min_ratings = 10
  config.data.val_fraction = 0.15
  # Adam, as configs/demo.py: SGD at lr 1e-3 barely moves in the ~60 steps
  # an epoch of ~2,000 ratings gives.
  config.optim.name = "adam"
  config.optim.plateau_patience = 2
  config.optim.early_stop_patience = 4
  config.train.num_epochs = 30
  config.eval.seeds = 3
  config.eval.enroll_sizes = (2, 5, 10, 0)
  config.eval.adaptive_sizes = (2, 5, 10)
  return config
