"""jax.distributed set-up from SLURM, an explicit coordinator, or not at all.

Behind one function (maxtext style) so main.py stays tiny: call
`initialize(config.distributed)` before any other JAX call.
"""

from __future__ import annotations

import os

from absl import logging
import jax


def initialize(cfg) -> None:
  """mode: "none" (one process), "slurm", "explicit", or "auto"."""
  mode = cfg.mode
  if mode == "auto":
    mode = "slurm" if int(os.environ.get("SLURM_NTASKS", "1")) > 1 else "none"
  if mode == "slurm":
    jax.distributed.initialize()  # JAX reads SLURM_* itself
  elif mode == "explicit":
    jax.distributed.initialize(coordinator_address=cfg.coordinator_address,
                               num_processes=cfg.num_processes,
                               process_id=cfg.process_id)
  elif mode != "none":
    raise ValueError(f"unknown config.distributed.mode {cfg.mode!r}; one of "
                     "none, auto, slurm, explicit")
  logging.info("process %d/%d; %d local / %d global devices: %s",
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count(), jax.devices())
