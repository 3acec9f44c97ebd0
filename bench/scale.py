"""What a corpus will cost: time and peak memory of each job as it grows.

python bench/scale.py [--sizes=2000x10000,13000x100000,50000x300000]
                      [--paths=synthetic,csv] [--workdir=/tmp/annojax_scale]
                      [--optim=adam] [--stages=prepare,epoch,export,enroll]

For each size (pre-training annotators x clips, 6 raters per clip as in
MSP-Podcast) and input path, every stage is the product's own command in a
fresh process (`python -m annojax.main --mode=...`), timed wall-clock (with
~5 s of process start and imports), its peak resident memory read from the
kernel (the process's own VmHWM):

  prepare  read + validate the corpora, write the TFDS datasets. synthetic:
           the embedded generator (64-d embeddings); csv: the generic reader
           over a ratings CSV and a 768-d embeddings .npz (the files are
           written by this script first, not timed).
  epoch    --mode=train for one epoch of the individual model (batch 256,
           --optim: Adam (default; the dense head update) or SGD (the
           reference; row-sparse head updates from more heads than 2,560),
           sparse layout), with its validation pass and checkpoints.
  export   --mode=export: the model bundle.
  enroll   --mode=enroll from the bundle alone: 1,000 new annotators, ~30
           clips each (a CSV on 1-7 + their clips' embeddings).

train and export find prepare's datasets by fingerprint (the corpora are
not read again; the input files are hashed). Heads = annotators with >= 10
ratings (--min-ratings). Prints a markdown table (bench/README.md keeps the
one measured there).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from annojax.corpora import ratings as ratings_lib  # pylint: disable=g-import-not-at-top
from annojax.corpora import synthetic  # pylint: disable=g-import-not-at-top

STAGES = ("prepare", "epoch", "export", "enroll")
NEW_ANNOTATORS, TARGET_CLIPS, RATERS = 1000, 5000, 6
CSV_DIM = 768


def synthetic_config(annotators: int, clips: int, dim: int):
  cfg = synthetic.default_config()
  cfg.embedding_dim = dim
  cfg.source.num_annotators, cfg.source.num_clips = annotators, clips
  cfg.source.num_speakers = max(20, clips // 100)
  cfg.source.raters_per_clip = RATERS
  # 1,000 new annotators x ~30 clips each.
  cfg.target.num_annotators, cfg.target.num_clips = NEW_ANNOTATORS, TARGET_CLIPS
  cfg.target.num_speakers, cfg.target.raters_per_clip = 50, RATERS
  return cfg


def _overrides(prefix: str, cfg) -> list[str]:
  out = []
  for role in ("source", "target"):
    for key in ("num_annotators", "num_clips", "num_speakers",
                "raters_per_clip"):
      out.append(f"--config.{prefix}.{role}.{key}={cfg[role][key]}")
  return out + [f"--config.{prefix}.embedding_dim={cfg.embedding_dim}"]


def _write_ratings(path: str, table: ratings_lib.Ratings, speaker=True):
  """Long CSV on the 1-7 scale (the generic reader's and enroll's input)."""
  values = ratings_lib.unscale(table.values, 1.0, 7.0)
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["clip", "annotator", *(["speaker"] if speaker else []),
                *table.dims])
    cols = [table.clip, table.annotator, *([table.speaker] if speaker else [])]
    w.writerows(zip(*cols, *[np.char.mod("%.4g", values[:, d])
                             for d in range(values.shape[1])]))


def write_inputs(out: str, cfg, *, source_files: bool) -> None:
  """enroll.csv + target.npz (and, for the csv path, the corpora's files)."""
  src, tgt = synthetic.make_pair(cfg)
  os.makedirs(out, exist_ok=True)
  _write_ratings(os.path.join(out, "enroll.csv"), tgt.ratings, speaker=False)
  np.savez(os.path.join(out, "target.npz"), clip_ids=tgt.clips,
           embeddings=tgt.embeddings)
  if source_files:
    _write_ratings(os.path.join(out, "source.csv"), src.ratings)
    _write_ratings(os.path.join(out, "target.csv"), tgt.ratings)
    np.savez(os.path.join(out, "source.npz"), clip_ids=src.clips,
             embeddings=src.embeddings)


# Runs `python -m annojax.main ARGS` and, at exit, prints the process's own
# peak resident memory (VmHWM). Not getrusage's ru_maxrss of the child: on
# Linux that keeps the high-water mark of the process that forked it (this
# script, holding the generated corpora), which would floor every figure.
_PEAK = """
import atexit, runpy, sys
def _peak():
  with open("/proc/self/status") as f:
    kib = [l.split()[1] for l in f if l.startswith("VmHWM:")][0]
  sys.stderr.write(f"\\nPEAK_KIB {kib}\\n")
  sys.stderr.flush()
atexit.register(_peak)
sys.argv = ["annojax.main"] + sys.argv[1:]
runpy.run_module("annojax.main", run_name="__main__", alter_sys=True)
"""


def run_stage(args: list[str], log: str) -> tuple[float, float, str]:
  """(seconds, peak RSS MiB, log text) of one annojax.main command in a
  fresh process."""
  with open(log, "w") as f:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", _PEAK, *args], cwd=ROOT,
                       stdout=f, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - t
  with open(log) as f:
    text = f.read()
  if p.returncode:
    raise RuntimeError(f"annojax.main {' '.join(args)} failed "
                       f"({p.returncode}); log {log}:\n{text[-3000:]}")
  return seconds, int(re.findall(r"PEAK_KIB (\d+)", text)[-1]) / 1024.0, text


def measure(path: str, annotators: int, clips: int, workdir: str,
            min_ratings: int, optim: str = "adam",
            stages: tuple[str, ...] = STAGES) -> dict:
  run_dir = os.path.join(workdir, f"{path}_{annotators}x{clips}")
  shutil.rmtree(run_dir, ignore_errors=True)
  inputs = os.path.join(run_dir, "inputs")
  cfg = synthetic_config(annotators, clips,
                         CSV_DIM if path == "csv" else synthetic.default_config(
                         ).embedding_dim)
  write_inputs(inputs, cfg, source_files=path == "csv")
  base = ["--config=configs/default.py",
          f"--workdir={run_dir}", f"--config.data.min_ratings={min_ratings}",
          "--config.train.batch_size=256", f"--config.optim.name={optim}",
          "--config.train.models=('individual',)", "--config.eval.seeds=1",
          "--config.train.num_epochs=1", "--config.train.progress_bar=False",
          "--config.data.layout=sparse"]
  if path == "synthetic":
    base += _overrides("data.synthetic", cfg)
  else:
    base += ["--config.data.corpus=files"]
    for role in ("source", "target"):
      base += [f"--config.data.files.{role}.path={inputs}/{role}.csv",
               f"--config.data.files.{role}.embeddings={inputs}/{role}.npz",
               f"--config.data.files.{role}.scale=(1.0,7.0)"]
  enroll = [f"--config.predict.ratings={inputs}/enroll.csv",
            f"--config.predict.embeddings={inputs}/target.npz",
            "--config.predict.scale=(1.0,7.0)"]
  row = {"path": path, "annotators": annotators, "clips": clips,
         "dim": cfg.embedding_dim, "optim": optim}
  for stage, mode in zip(STAGES, ("prepare", "train", "export", "enroll")):
    if stage not in stages:
      row[stage] = (float("nan"), float("nan"))
      continue
    extra = enroll if stage == "enroll" else []
    secs, mib, text = run_stage(base + [f"--mode={mode}"] + extra,
                                os.path.join(run_dir, f"{stage}.log"))
    row[stage] = (secs, mib)
    if stage == "prepare":
      found = re.findall(r"(\d+) clips, (\d+) annotators, (\d+) ratings", text)
      row["heads"], row["ratings"] = int(found[0][1]), int(found[0][2])
    print(f"  {path} {annotators}x{clips} {stage}: {secs:.1f} s, "
          f"{mib:,.0f} MiB", flush=True)
  shutil.rmtree(run_dir, ignore_errors=True)
  return row


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--sizes", default="2000x10000,13000x100000,50000x300000",
                  help="annotators x clips, comma-separated")
  ap.add_argument("--paths", default="synthetic,csv")
  ap.add_argument("--workdir", default="/tmp/annojax_scale")
  ap.add_argument("--min-ratings", type=int, default=10)
  ap.add_argument("--optim", default="adam", help="adam or sgd")
  ap.add_argument("--stages", default=",".join(STAGES),
                  help="stages to run (prepare always runs)")
  a = ap.parse_args()
  stages = ("prepare",) + tuple(s for s in a.stages.split(",")
                                if s != "prepare")
  rows = []
  for size in a.sizes.split(","):
    annotators, clips = (int(v) for v in size.lower().split("x"))
    for path in a.paths.split(","):
      rows.append(measure(path, annotators, clips, a.workdir, a.min_ratings,
                          a.optim, stages))
  print("\n| path | annotators | clips | ratings | heads | " +
        " | ".join(f"{s} s | {s} MiB" for s in STAGES) + " |")
  print("|---" * (5 + 2 * len(STAGES)) + "|")
  for r in rows:
    cells = [f"{r['path']} ({r['dim']}-d, {r['optim']})",
             f"{r['annotators']:,}",
             f"{r['clips']:,}", f"{r['ratings']:,}", f"{r['heads']:,}"]
    for s in STAGES:
      cells += [f"{r[s][0]:.1f}", f"{r[s][1]:,.0f}"]
    print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
  main()
