"""jobs.run(config, workdir): what `--config.mode` asks for, in order."""

from __future__ import annotations

import difflib
import os

from absl import logging
import jax

from annojax import export
from annojax import features
from annojax import label_stats
from annojax import predict
from annojax import train
from annojax import workdir_config
from annojax.data import prepare
from annojax.protocol import folds
from annojax.protocol import loop
from annojax.protocol import tables

# all = prepare -> train -> evaluate -> export. enroll and predict need only
# an exported bundle (config.predict.bundle), not the training data;
# features turns audio into the embedding file the readers join with; stats
# describes the configured corpora's labels (no embeddings needed).
MODES = {
    "all": "prepare, train, evaluate, export (the default)",
    "prepare": "read and validate the corpora, write the TFDS datasets",
    "train": "train the individual-annotator and aggregate models",
    "evaluate": "the cross-corpus protocol -> eval/results.{md,json}, plots",
    "export": "write the self-contained model bundle <workdir>/export",
    "enroll": "new annotators' ratings + a bundle -> enroll/mapping.{json,csv}"
              " (and suggested clips to rate next)",
    "predict": "a mapping + embeddings of new clips -> "
               "predict/predictions.csv",
    "features": "audio -> features.npz (librosa, openSMILE, or WavLM / "
                "wav2vec2 / HuBERT from a checkpoint directory), or import "
                "embeddings",
    "stats": "describe the corpora's labels alone -> stats/label_stats.md",
}


def check_mode(mode: str):
  if mode not in MODES:
    close = difflib.get_close_matches(str(mode), MODES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown config.mode {mode!r}{hint} (one of "
                     f"{', '.join(MODES)})")


def run(config, workdir: str) -> dict:
  check_mode(config.mode)
  os.makedirs(workdir, exist_ok=True)
  # The workdir's saved config: a run with other data / model settings is
  # refused, other differences logged; config.json is never written over.
  workdir_config.reconcile(config, workdir, write=jax.process_index() == 0)
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
  if config.mode == "all":
    loop.check_rows(config, prepared)
  if config.mode in ("train", "all"):
    # One pre-trained pair of models per evaluation seed: a seed is an
    # independent replicate (its own init and data order), replicate 0 is
    # the model that is exported.
    for r in range(folds.num_replicates(config)):
      for kind in config.train.models:
        result = train.train_and_evaluate(config, workdir, kind, prepared,
                                          replicate=r)
        logging.info("%s (seed %d): best validation loss %.4f at epoch %d",
                     kind, r, result["best_val"], result["best_epoch"])
        out[kind if r == 0 else f"{kind}_seed{r}"] = result
  if config.mode in ("evaluate", "all"):
    out["results"] = loop.run_protocol(config, workdir, prepared)
    if jax.process_index() == 0:  # a summary; the whole table in the file
      print(tables.headline(out["results"],
                            os.path.join(workdir, "eval", "results.md")))
  if config.mode in ("export", "all"):  # every process: Orbax syncs them
    out["export"] = export.export(config, workdir, prepared)
    logging.info("exported the individual model to %s", out["export"])
  return out
