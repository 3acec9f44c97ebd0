"""The command line: `python -m annojax.main` with config overrides."""

import os
import subprocess
import sys

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
  meta = pipeline.read_meta(str(root / names[0] / "1.0.0"))
  assert meta.num_annotators <= 50  # the override reached the generator


def test_bad_mode_is_a_clear_error(tmp_path):
  r = _main(f"--workdir={tmp_path}", "--config.mode=trian")
  assert r.returncode != 0
  assert "unknown config.mode 'trian'" in r.stderr
