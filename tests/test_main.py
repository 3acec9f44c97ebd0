"""The command line: `python -m annojax.main` with config overrides."""

import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from annojax.data import builder
from annojax.data import pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args):
  return subprocess.run(
      [sys.executable, "-m", "annojax.main", "--config=configs/tiny.py",
       *args], cwd=ROOT, capture_output=True, text=True)


def test_prepare_mode_with_override(tmp_path):
  r = _main(f"--workdir={tmp_path}", "--config.mode=prepare",
            "--config.data.synthetic.source.num_annotators=50")
  assert r.returncode == 0, r.stderr[-2000:]
  root = tmp_path / "data" / "annojax_ratings"
  names = sorted(os.listdir(root))
  assert len(names) == 2
  meta = pipeline.read_meta(str(root / names[0] / builder.VERSION))
  assert meta.num_annotators <= 50  # the override reached the generator


def test_bad_mode_is_a_clear_error(tmp_path):
  r = _main(f"--workdir={tmp_path}", "--config.mode=trian")
  assert r.returncode != 0
  assert "unknown config.mode 'trian'" in r.stderr


def test_local_launcher_runs_the_chosen_interpreter(tmp_path):
  """launch/local.sh runs $PYTHON (else python3 on PATH), not whatever
  `python` is first on PATH."""
  fake = tmp_path / "bin"
  fake.mkdir()
  marker = tmp_path / "wrong_python_ran"
  for name in ("python", "python3"):
    (fake / name).write_text(f"#!/bin/sh\ntouch {marker}\nexit 3\n")
    (fake / name).chmod(0o755)
  env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}",
             PYTHON=sys.executable, JAX_PLATFORMS="cpu", ANNOJAX_PORT="1")
  work = tmp_path / "w"
  r = subprocess.run(["bash", "launch/local.sh", "1", "--config=configs/tiny.py",
                      f"--workdir={work}", "--config.mode=trian"], cwd=ROOT,
                     env=env, capture_output=True, text=True, timeout=300)
  assert r.returncode != 0  # the bad mode, reported by annojax itself
  assert not marker.exists()
  log = (work / "logs" / "process_0.log").read_text()
  assert "unknown config.mode 'trian'" in log


def console_command() -> str:
  """The installed `annojax` command (README: pip install ... -e .): in
  this interpreter's scripts folder (where pip puts it), else on PATH."""
  exe = os.path.join(sysconfig.get_path("scripts"), "annojax")
  exe = exe if os.path.isfile(exe) else shutil.which("annojax")
  assert exe, "no `annojax` command: install as the README says (-e .)"
  return exe


def _console(*args, cwd):
  return subprocess.run([console_command(), *args], cwd=cwd,
                        capture_output=True, text=True, timeout=300)


def test_console_command_help_and_config_from_another_directory(tmp_path):
  r = _console("--help", cwd=tmp_path)
  assert r.returncode == 0, r.stderr[-2000:]
  for mode in ("all", "prepare", "train", "evaluate", "export", "enroll",
               "predict", "features", "stats"):
    assert f"\n  {mode} " in r.stdout, mode
  r = _console(f"--config={ROOT}/configs/tiny.py", "--config.eval.seeds=3",
               "--print_config", cwd=tmp_path)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "  seeds: 3\n" in r.stdout and "  enroll_sizes:" in r.stdout


@pytest.mark.parametrize("args, says, status", [
    (["--config=no_such_config.py"], "config file 'no_such_config.py' not "
     "found", 2),
    (["--config=CONFIG", "--config.trian.lr=3"], "unknown config key "
     "'trian.lr' ('trian' is not a key there) in --config.trian.lr=3; did "
     "you mean 'train.lr'?", 2),
    pytest.param(
        ["--config=CONFIG", "--config.data.files.source.embedings=x.npz"],
        "unknown config key 'data.files.source.embedings' ('embedings' is "
        "not a key there) in --config.data.files.source.embedings=x.npz; "
        "did you mean 'data.files.source.embeddings'?", 2,
        marks=pytest.mark.slow),
    (["--config=CONFIG", "--config.mode=enrol"], "unknown config.mode "
     "'enrol'; did you mean 'enroll'?", 1),
    (["--config=CONFIG", "--mode=enrol"], "flag --mode=enrol: value should "
     "be one of", 2),
])
def test_user_mistakes_are_one_line(tmp_path, args, says, status):
  args = [a.replace("CONFIG", f"{ROOT}/configs/tiny.py") for a in args]
  r = _console(*args, f"--workdir={tmp_path / 'w'}", cwd=tmp_path)
  assert r.returncode == status, r.stderr[-2000:]
  lines = r.stderr.strip().splitlines()
  assert lines[-2] == f"annojax: error: {lines[-2][16:]}"
  assert says in lines[-2], lines[-2]
  assert lines[-1] == "(run with --verbose for the traceback)"
  assert "Traceback" not in r.stderr and len(lines) <= 3


def test_verbose_gives_the_traceback(tmp_path):
  r = _console(f"--config={ROOT}/configs/tiny.py", "--config.trian.lr=3",
               f"--workdir={tmp_path}", "--verbose", cwd=tmp_path)
  assert r.returncode != 0 and "Traceback" in r.stderr
  assert "Did you mean" in r.stderr
