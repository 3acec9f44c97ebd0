"""NSC (../shared/data/nsc) as two generic-CSV corpora, for benchmarks only.

  python bench/nsc_generic.py OUT_DIR [--seed=0]

Writes OUT_DIR/{source,target}.csv (clip, annotator, speaker, activation =
`aktiv`, valence = `angenehm`, on 0-100) and OUT_DIR/{source,target}.npz (the
corpus authors' eGeMAPSv01a functionals, 88 per clip, unscaled). Listeners
and speakers are split at random (seeded) into pre-training (2/3 of each) and
target (1/3): a source rating is a pre-training listener on a pre-training
speaker, a target rating a target listener on a target speaker; the ratings
across the groups are left out. So no listener, speaker or clip is shared.

An interim bridge until annojax has its own reader for this listening-test
layout; it writes nothing into the repository (the data is not ours).
"""

import argparse
import csv
import os

import numpy as np

NSC = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                   "nsc")
ITEMS = {"activation": "aktiv", "valence": "angenehm"}


def _clip(name: str) -> str:
  # One stimulus is named `_d5` in the ratings, `_stimulus` in the features.
  return os.path.splitext(name)[0].replace("_d5", "_stimulus")


def main():
  p = argparse.ArgumentParser()
  p.add_argument("out")
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args()
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(NSC, "SC_ratings.csv"), newline="") as f:
    ratings = list(csv.DictReader(f))
  feats = {}
  for name in ("eGeMAPSv01a_88_malespk.csv", "eGeMAPSv01a_88_femalespk.csv"):
    with open(os.path.join(NSC, name), newline="") as f:
      rows = list(csv.reader(f))
    for row in rows[1:]:
      feats[_clip(row[0])] = np.asarray(row[1:], np.float32)
  rng = np.random.default_rng(args.seed)

  def split(ids):
    ids = rng.permutation(sorted(set(ids)))
    return set(ids[: 2 * len(ids) // 3])
  src_listeners = split(r["listener_pseudonym"] for r in ratings)
  src_speakers = split(r["speaker_ID"] for r in ratings)
  out = {"source": [], "target": []}
  for r in ratings:
    a_src = r["listener_pseudonym"] in src_listeners
    s_src = r["speaker_ID"] in src_speakers
    if a_src != s_src:
      continue
    out["source" if a_src else "target"].append(
        [_clip(r["sample_heard"]), r["listener_pseudonym"],
         r["speaker_ID"], *[r[i] for i in ITEMS.values()]])
  for role, rows in out.items():
    with open(os.path.join(args.out, f"{role}.csv"), "w", newline="") as f:
      w = csv.writer(f)
      w.writerow(["clip", "annotator", "speaker", *ITEMS])
      w.writerows(rows)
    clips = sorted({r[0] for r in rows})
    np.savez(os.path.join(args.out, f"{role}.npz"), clip_ids=np.array(clips),
             embeddings=np.stack([feats[c] for c in clips]))
    print(f"{role}: {len(rows)} ratings, {len({r[1] for r in rows})} "
          f"listeners, {len(clips)} clips")


if __name__ == "__main__":
  main()
