"""Two CPU processes on loopback (jax.distributed + gloo) vs one process.

Both runs train the tiny individual model on the same global batches; the
two-process run shards each batch over 2 processes x 1 device, so the only
difference is the order of floating-point reductions.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from annojax import checkpointing
from annojax import train
from annojax.data import builder
from annojax.data import pipeline
from configs import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["--config=configs/tiny.py", "--mode=train",
         "--config.train.models=('individual',)",
         "--config.train.num_epochs=4"]


def _history(workdir):
  with open(os.path.join(workdir, "individual", "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _best_params(workdir):
  config = tiny.get_config()
  data = os.path.join(workdir, "data", "annojax_ratings")
  source = [d for d in os.listdir(data) if d.startswith("synthetic_source")]
  meta = pipeline.read_meta(os.path.join(data, source[0], builder.VERSION))
  _, _, state = train._initial_state(config, meta, "individual")  # pylint: disable=protected-access
  ckpts = checkpointing.Checkpoints(
      os.path.join(workdir, "individual", "checkpoints"))
  best, _ = ckpts.restore(state, "best")
  ckpts.close()
  return jax.device_get(best["params"])


@pytest.mark.skipif(sys.platform != "linux", reason="loopback gloo on Linux")
def test_two_processes_match_one(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="",
             PYTHON=sys.executable)
  single, multi = str(tmp_path / "single"), str(tmp_path / "multi")
  r1 = subprocess.run([sys.executable, "-m", "annojax.main", *FLAGS,
                       f"--workdir={single}"], cwd=ROOT, env=env,
                      capture_output=True, text=True, timeout=600)
  assert r1.returncode == 0, r1.stderr[-3000:]
  r2 = subprocess.run(["bash", "launch/local.sh", "2", *FLAGS,
                       f"--workdir={multi}"], cwd=ROOT, env=env,
                      capture_output=True, text=True, timeout=600)
  assert r2.returncode == 0, r2.stderr[-3000:]
  with open(os.path.join(multi, "logs", "process_1.log")) as f:
    assert "process 1/2; 1 local / 2 global devices" in f.read()

  h1, h2 = _history(single), _history(multi)
  assert [r["epoch"] for r in h1] == [r["epoch"] for r in h2] == [1, 2, 3, 4]
  for a, b in zip(h1, h2):
    assert a["step"] == b["step"]
    np.testing.assert_allclose(a["train_loss"], b["train_loss"], atol=2e-3)
    np.testing.assert_allclose(a["val_loss"], b["val_loss"], atol=2e-3)
  # Training moved the params far more than the two runs differ.
  p1, p2 = _best_params(single), _best_params(multi)
  for x, y in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
    np.testing.assert_allclose(x, y, atol=2e-3, rtol=1e-2)
