"""The command line: `python -m annojax.main` with config overrides."""

import os
import subprocess
import sys

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
