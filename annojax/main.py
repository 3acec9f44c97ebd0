"""annojax entry point: one absl app for every job.

python -m annojax.main --config=configs/demo.py --workdir=/tmp/annojax_demo
  [--mode=features|prepare|train|evaluate|export|all|enroll|predict|stats]
  [--config.a.b=value ...]

Kept tiny on purpose: all logic lives in importable libraries (jobs.py), so
tests and notebooks call the same functions.
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from annojax import distributed
from annojax import jobs

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None,
                    "Directory for data, checkpoints and results.")
config_flags.DEFINE_config_file("config", None, "Config file.",
                                lock_config=True)
flags.DEFINE_enum("mode", None, list(jobs.MODES),
                  "Shorthand for --config.mode.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
  # Orbax and TFDS log every file operation at INFO; keep the job's own.
  logging.get_absl_handler().addFilter(
      lambda r: r.levelno > logging.converter.STANDARD_INFO or not any(
          lib in r.pathname for lib in ("orbax", "tensorflow_datasets")))
  config = FLAGS.config
  if FLAGS.mode:
    config.mode = FLAGS.mode
  distributed.initialize(config.distributed)
  jobs.run(config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
