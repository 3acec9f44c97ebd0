"""annojax entry point: one absl app for every job.

  annojax --config=configs/demo.py --workdir=/tmp/annojax_demo
  python -m annojax.main --config=configs/demo.py --workdir=/tmp/annojax_demo
    [--mode=MODE] [--config.a.b=value ...] [--print_config] [--verbose]

Kept tiny on purpose: all logic lives in importable libraries (jobs.py), so
tests and notebooks call the same functions. A user's mistake (a config
file that is not there, a mistyped key, an unknown mode, a file that does
not fit the model) ends in one line naming it and exit status 2 (flags) or
1 (the job); --verbose gives the traceback and the libraries' logs.
"""

from __future__ import annotations

import logging as py_logging
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import yaml

from annojax import distributed
from annojax import jobs
from annojax import workdir_config

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None,
                    "Directory for data, checkpoints and results.")
config_flags.DEFINE_config_file("config", None, "Config file (a path).",
                                lock_config=True)
flags.DEFINE_enum("mode", None, list(jobs.MODES),
                  "Shorthand for --config.mode.")
flags.DEFINE_bool("print_config", False,
                  "Print the resolved config (every key, with the overrides "
                  "applied) and exit.")
flags.DEFINE_bool("verbose", False,
                  "Full tracebacks on errors, and the libraries' logs.")

# The errors a user's input causes (files, config values, data): one line.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, NotADirectoryError,
               IsADirectoryError, flags.Error)


def usage() -> str:
  modes = "\n".join(f"  {m:9s} {what}" for m, what in jobs.MODES.items())
  return f"""annojax: models of individual annotators for speech emotion recognition.

usage: annojax --config=CONFIG.py --workdir=DIR [--mode=MODE]
               [--config.KEY=VALUE ...] [--print_config] [--verbose]
       (or python -m annojax.main with the same flags)

modes (--mode or --config.mode; default all):
{modes}

flags:
  --config=PATH         a config file, e.g. configs/demo.py (configs/ lists
                        them); --config=PATH:ARG passes ARG to its
                        get_config (configs/nsc.py:DATA_DIR)
  --config.KEY=VALUE    override any key, e.g. --config.eval.seeds=3
  --workdir=DIR         data, checkpoints, results (needed by every mode)
  --print_config        print every key of the resolved config and exit
  --verbose             tracebacks on errors, and the libraries' logs
  --help                this text; --helpfull lists absl's own flags too
"""


def _one_line(error: BaseException) -> str:
  """The error as one line: a KeyError's message (ml_collections' "did you
  mean" included) without its quoting, line breaks as '; '."""
  if isinstance(error, KeyError) and error.args:
    text = str(error.args[0])
  else:
    text = str(error) or type(error).__name__
  return "; ".join(s.strip() for s in text.strip().splitlines() if s.strip())


def _fail(error: BaseException, status: int, verbose: bool):
  if verbose:
    raise error
  sys.stderr.write(f"annojax: error: {_one_line(error)}\n"
                   "(run with --verbose for the traceback)\n")
  sys.exit(status)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with --help exiting 0 and flag / config errors
  (a missing config file, an unknown key, a bad value) as one line. No
  --config in a workdir with a saved config.json: that config
  (workdir_config.py), with the --config.a.b flags on top."""
  if any(a in ("-h", "--help", "-help", "--helpshort") for a in argv[1:]):
    sys.stdout.write(usage())
    sys.exit(0)
  verbose = any(a in ("--verbose", "--verbose=true", "--verbose=True")
                for a in argv[1:])
  _check_config_file(argv, verbose)
  argv = _config_of_workdir(argv)
  try:
    return FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except
    key_error = _unknown_key(e, argv)
    if key_error is not None:
      _fail(key_error, 2, verbose)
    cause = e.__cause__ if isinstance(e, flags.Error) and e.__cause__ else e
    _fail(cause if isinstance(cause, USER_ERRORS) else e, 2, verbose)


def _flag_value(argv: list[str], name: str) -> str | None:
  for i, a in enumerate(argv[1:], start=1):
    if a.startswith(f"--{name}="):
      return a[len(name) + 3:]
    if a == f"--{name}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _config_of_workdir(argv: list[str]) -> list[str]:
  """argv with --config=<the saved-config loader>:W/config.json added where
  no --config is given and the --workdir W has a saved config."""
  workdir = _flag_value(argv, "workdir")
  if _flag_value(argv, "config") is not None or not workdir:
    return argv
  saved = workdir_config.saved_path(workdir)
  if not os.path.isfile(saved):
    return argv
  sys.stderr.write(f"annojax: no --config given: starting from {saved}\n")
  loader = os.path.abspath(workdir_config.__file__)
  return [argv[0], f"--config={loader}:{os.path.abspath(saved)}", *argv[1:]]


def _unknown_key(error: BaseException, argv: list[str]) -> KeyError | None:
  """A mistyped --config.a.b (ml_collections' KeyError, wrapped by absl and
  config_flags) as one KeyError naming the whole key, the flag and the key
  it probably meant; None for other errors."""
  e, found = error, None
  while e is not None and found is None:
    if isinstance(e, KeyError):
      found = e
    elif e.args and isinstance(e.args[0], KeyError):
      found = e.args[0]
    e = e.__cause__ or e.__context__
  if found is None or not found.args:
    return None
  text = str(found.args[0])
  name = text.splitlines()[0].strip().strip("'\"")
  meant = re.search(r'Did you mean "([^"]+)"', text)
  for a in argv[1:]:
    if not a.startswith("--config."):
      continue
    path = a[len("--config."):].split("=", 1)[0]
    parts = path.split(".")
    if name not in parts:
      continue
    hint = ""
    if meant:
      fixed = parts[:]
      fixed[parts.index(name)] = meant.group(1)
      hint = f"; did you mean {'.'.join(fixed)!r}?"
    return KeyError(f"unknown config key {path!r} ({name!r} is not a key "
                    f"there) in {a}{hint} (--print_config lists every key)")
  return KeyError(f"unknown config key {name!r}"
                  + (f"; did you mean {meant.group(1)!r}?" if meant else ""))


def _check_config_file(argv, verbose):
  """A --config file that is not there: one line naming it (ml_collections
  would defer the error to the first use of the config)."""
  value = _flag_value(argv, "config")
  if value is None:
    return
  path = value.split(":", 1)[0]
  if not os.path.isfile(path):
    _fail(FileNotFoundError(
        f"config file {path!r} not found (from {os.getcwd()}); give the "
        "path of a config, e.g. configs/demo.py in the repository"), 2,
          verbose)


def _quiet_libraries():
  """Only the job's own log lines and real warnings: no "Unable to
  initialize backend 'tpu'" on a machine without one, no Orbax / TFDS file
  operations at INFO."""
  py_logging.getLogger("jax._src.xla_bridge").setLevel(py_logging.WARNING)

  def keep(r) -> bool:
    if not any(lib in r.pathname for lib in ("orbax", "tensorflow_datasets")):
      return True
    if r.levelno <= logging.converter.STANDARD_INFO:
      return False
    # Each dataset of ours is a TFDS builder config: not worth a warning.
    return not str(r.msg).startswith("Using custom data configuration")
  logging.get_absl_handler().addFilter(keep)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
  if FLAGS.config is None:
    _fail(ValueError("give a config file: --config=configs/demo.py (see "
                     "--help), or a --workdir whose config.json an earlier "
                     "run saved"), 2, FLAGS.verbose)
  config = FLAGS.config
  if FLAGS.mode:
    config.mode = FLAGS.mode
  if FLAGS.print_config:
    # Plain YAML: lists, no Python tags, no anchors for shared values.
    sys.stdout.write(yaml.safe_dump(workdir_config.plain(config),
                                    sort_keys=False, width=79))
    return
  if not FLAGS.workdir:
    _fail(ValueError("give a working directory: --workdir=DIR (data, "
                     "checkpoints and results go there)"), 2, FLAGS.verbose)
  if not FLAGS.verbose:
    _quiet_libraries()
  try:
    jobs.check_mode(config.mode)
    distributed.initialize(config.distributed)
    jobs.run(config, FLAGS.workdir)
  except USER_ERRORS as e:
    _fail(e, 1, FLAGS.verbose)


def run():
  """The `annojax` console command."""
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
