"""The config a workdir was made with: saved once, the start of later modes.

A workdir's first data job (prepare, train, evaluate, export, all) saves
its config as <workdir>/config.json. Later jobs there:
  - start from it when no --config is given (`annojax --workdir=W
    --mode=export`: main.py passes this file to config_flags as
    `--config=annojax/workdir_config.py:W/config.json`), with any
    --config.a.b flags applied on top;
  - are refused, in one line naming the keys, when their data or model
    settings differ from the saved ones (the datasets and models in the
    workdir were made with those: a mix would be silently wrong);
  - log every other difference (eval, train, predict ... settings).
config.json is never written over; each later run's config is saved as
config.<mode>.json beside it. Jobs that do not use the corpora or models
(features, stats, enroll, predict) save config.<mode>.json and never bind.
"""

from __future__ import annotations

import json
import os

from absl import logging
import ml_collections

from annojax.data import prepare

SAVED = "config.json"
# Modes whose outputs depend on the data and model settings.
DATA_MODES = ("all", "prepare", "train", "evaluate", "export")
# Keys of those sections that decide how data is read or where it lies,
# not what it holds (as prepare.fingerprint sees them).
_HOW_READ = ("data.layout", "data.cache", "data.shuffle_window",
             "data.data_dir")


def _tuples(x):
  """JSON's lists back to the tuples configs use."""
  if isinstance(x, dict):
    return {k: _tuples(v) for k, v in x.items()}
  if isinstance(x, list):
    return tuple(_tuples(v) for v in x)
  return x


def get_config(path: str) -> ml_collections.ConfigDict:
  """config_flags' entry: the config saved in `path` (a workdir's
  config.json)."""
  with open(path) as f:
    return ml_collections.ConfigDict(_tuples(json.load(f)))


def saved_path(workdir: str) -> str:
  return os.path.join(workdir, SAVED)


def plain(config) -> dict:
  """A config as JSON's plain values (what config.json holds)."""
  return json.loads(config.to_json_best_effort())


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict) and v:
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def differences(saved: dict, now: dict) -> dict:
  """{key: (saved value, value now)} of every key that differs (a key only
  one of them has: None on the other side); `mode` is not compared."""
  a, b = _flat(saved), _flat(now)
  return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
          if k != "mode" and a.get(k) != b.get(k)}


def _binding(key: str) -> bool:
  return key.startswith(("data.", "model.")) and not key.startswith(
      _HOW_READ)


def _show(diffs: dict) -> str:
  return "; ".join(f"{k}: {json.dumps(a)} -> {json.dumps(b)}"
                   for k, (a, b) in diffs.items())


def reconcile(config, workdir: str, write: bool = True) -> None:
  """Checks `config` against the workdir's saved config (see the module
  docstring), logs what differs, and saves it: config.json where none is
  saved yet (or only a non-data job's), else config.<mode>.json. Raises
  ValueError naming the data / model keys that differ."""
  path = saved_path(workdir)
  now = plain(config)
  saved = None
  if os.path.exists(path):
    with open(path) as f:
      try:
        saved = json.load(f)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a readable config ({e}); move it "
                         "away to start the workdir anew") from None
  binds = saved is not None and saved.get("mode") in DATA_MODES
  if saved is not None:
    diffs = differences(saved, now)
    bad = {k: v for k, v in diffs.items() if _binding(k)}
    if binds and config.mode in DATA_MODES and bad:
      raise ValueError(
          f"{path} (saved by this workdir's first run) has other data / "
          f"model settings than this run: {_show(bad)}. The workdir's "
          "datasets and models were made with the saved ones: use a new "
          f"--workdir, or leave --config out to start from {path}")
    if diffs:
      logging.info("config: %d setting(s) differ from %s: %s", len(diffs),
                   path, _show(diffs))
  if not write:
    return
  first = saved is None or (not binds and config.mode in DATA_MODES)
  out = path if first else os.path.join(workdir, f"config.{config.mode}.json")
  prepare.write_json(out, now, indent=2)
