"""jobs.run(config, workdir): what `--config.mode` asks for, in order."""

from __future__ import annotations

import os

from absl import logging
import jax

from annojax import evaluate
from annojax import export
from annojax import features
from annojax import label_stats
from annojax import predict
from annojax import train
from annojax.data import prepare

# all = prepare -> train -> evaluate -> export. enroll and predict need only
# an exported bundle (config.predict.bundle), not the training data;
# features turns audio into the embedding file the readers join with; stats
# describes the configured corpora's labels (no embeddings needed).
MODES = ("prepare", "train", "evaluate", "export", "all", "enroll", "predict",
         "features", "stats")


def run(config, workdir: str) -> dict:
  if config.mode not in MODES:
    raise ValueError(f"unknown config.mode {config.mode!r}; one of {MODES}")
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  if config.mode == "features":
    return {"features": features.run(config, workdir)}
  if config.mode == "stats":
    return {"stats": label_stats.run(config, workdir)}
  if config.mode == "enroll":
    return {"mapping": predict.run_enroll(config, workdir)}
  if config.mode == "predict":
    return {"predictions": predict.run_predict(config, workdir)}
  prepared = prepare.prepare(config, workdir)
  out = {"prepared": prepared}
  if config.mode in ("train", "all"):
    # One pre-trained pair of models per evaluation seed: a seed is an
    # independent replicate (its own init and data order), replicate 0 is
    # the model that is exported.
    for r in range(evaluate.num_replicates(config)):
      for kind in config.train.models:
        result = train.train_and_evaluate(config, workdir, kind, prepared,
                                          replicate=r)
        logging.info("%s (seed %d): best validation loss %.4f at epoch %d",
                     kind, r, result["best_val"], result["best_epoch"])
        out[kind if r == 0 else f"{kind}_seed{r}"] = result
  if config.mode in ("evaluate", "all"):
    out["results"] = evaluate.run_protocol(config, workdir, prepared)
    if jax.process_index() == 0:
      with open(os.path.join(workdir, "eval", "results.md")) as f:
        print(f.read())
  if config.mode in ("export", "all"):  # every process: Orbax syncs them
    out["export"] = export.export(config, workdir, prepared)
    logging.info("exported the individual model to %s", out["export"])
  return out
