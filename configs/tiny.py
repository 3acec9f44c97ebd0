"""Seconds-long runs for tests and debugging: a small population, tiny model.

python -m annojax.main --config=configs/tiny.py --workdir=/tmp/annojax_tiny
"""

from configs import default


def get_config():
  config = default.get_config()
  s = config.data.synthetic
  s.num_types = 4
  # Clean, well-separated perception types (the simulator before its
  # calibration to real raters): tests check that enrollment finds a
  # planted same-type annotator, which needs types that differ.
  s.type_spread, s.type_bias, s.scale_range = 0.8, 0.4, (0.7, 1.5)
  s.annotator_jitter, s.bias_spread, s.scale_spread = 0.1, 0.1, 0.0
  s.noise_range = (0.1, 0.3)
  s.source.num_clips = 1600
  s.source.num_speakers = 20
  s.source.num_annotators = 120
  s.source.raters_per_clip = 6
  s.target.num_clips = 400
  s.target.num_speakers = 10
  s.target.num_annotators = 16
  config.data.min_ratings = 20
  config.model.hidden = 32
  config.model.dropout = 0.0
  config.optim.name = "adam"
  config.optim.learning_rate = 3e-3
  config.optim.plateau_patience = 3
  config.optim.early_stop_patience = 6
  config.train.batch_size = 32
  config.train.num_epochs = 12
  config.train.progress_bar = False
  config.eval.folds = 5
  config.eval.seeds = 2  # independent replicates: two pre-trained pairs
  config.eval.enroll_sizes = (5, 20, 0)
  config.eval.adaptive_sizes = (5, 20)
  config.eval.finetune_steps = 10
  config.eval.head_chunk = 64
  # Rating distributions: fewer kernel widths and shrinks to choose from.
  config.eval.distribution.widths = (0.05, 0.1, 0.2, 0.3, 0.5)
  config.eval.distribution.shrinks = (0.5, 1.0)
  return config
