"""Orbax checkpoints: `latest` (resume) and `best` (by validation loss).

A checkpoint holds the train state pytree ({step, params, opt_state}) and a
JSON `meta` dict (epoch, plateau/early-stopping counters, history), so a
resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


def _manager(directory: str, best: bool) -> ocp.CheckpointManager:
  # Both managers save the same step numbers: in a multi-process run their
  # commit barriers need distinct names, or the second save of a step finds
  # the first's barrier "already ongoing" and the processes deadlock.
  options = ocp.CheckpointManagerOptions(
      max_to_keep=1, create=True,
      best_fn=(lambda m: m["val_loss"]) if best else None,
      best_mode="min",
      multiprocessing_options=ocp.options.MultiprocessingOptions(
          barrier_sync_key_prefix="best" if best else "latest"))
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


class Checkpoints:
  """The latest and the best checkpoint of one training run."""

  def __init__(self, directory: str):
    self.directory = os.path.abspath(directory)
    self.latest = _manager(os.path.join(self.directory, "latest"), best=False)
    self.best = _manager(os.path.join(self.directory, "best"), best=True)

  def save(self, step: int, state, meta: dict, val_loss: float,
           is_best: bool):
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              meta=ocp.args.JsonSave(meta))
    self.latest.save(step, args=args)
    if is_best:
      self.best.save(step, args=args, metrics={"val_loss": float(val_loss)})

  def restore(self, target, which: str = "latest"):
    """Restores (state, meta) into the structure/shardings of `target`."""
    mngr = self.latest if which == "latest" else self.best
    step = mngr.latest_step() if which == "latest" else mngr.best_step()
    if step is None:
      raise FileNotFoundError(f"no {which} checkpoint in {self.directory}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    out = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return out.state, out.meta

  def has_latest(self) -> bool:
    return self.latest.latest_step() is not None

  def wait(self):
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self):
    self.latest.close()
    self.best.close()
