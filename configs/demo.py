"""The embedded synthetic default, end to end in ~6.5 minutes on 2 CPU cores.

python -m annojax.main --config=configs/demo.py --workdir=/tmp/annojax_demo
"""

from configs import default


def get_config():
  config = default.get_config()
  config.optim.name = "adam"
  config.optim.learning_rate = 1e-3
  config.optim.plateau_patience = 2
  config.optim.early_stop_patience = 4
  config.train.batch_size = 64
  config.train.num_epochs = 30
  config.eval.seeds = 2
  return config
