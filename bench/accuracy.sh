#!/usr/bin/env bash
# The evaluation protocol's accuracy table, reproducibly, in one command:
#
#   bash bench/accuracy.sh [CONFIG] [WORKDIR]
#
# CONFIG defaults to configs/default.py (the reference settings on the
# embedded synthetic default; configs/demo.py is a few-minute version).
# Writes WORKDIR/eval/results.{md,json} and ccc_ind_vs_k.png and copies the
# table to bench/results/accuracy_<config>.md (and the blended rule's table
# to bench/results/blend_<config>.md, and the annotator families' to
# bench/results/families_<config>.md, bench/families.sh, and the rating
# distributions' to bench/results/distributions_<config>.md,
# bench/distributions.sh). Then, when ../shared/data holds
# CREMA-D with per-rater responses and audio, runs configs/crema_d.py on it
# (features -> all); otherwise says why it is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-configs/default.py}"
workdir="${2:-/tmp/annojax_accuracy_$(basename "$config" .py)}"
mkdir -p bench/results
python -m annojax.main --config="$config" --workdir="$workdir"
cp "$workdir/eval/results.md" "bench/results/accuracy_$(basename "$config" .py).md"
python bench/blend_table.py "$workdir/eval/results.json" \
  --title="The blended rule, $(basename "$config" .py)" \
  --out="bench/results/blend_$(basename "$config" .py).md"
# Heads or embeddings? The embedding families trained beside the same heads
# (each seed), then the protocol again on the rows that compare them (this
# evaluation replaces WORKDIR/eval; the tables above are copied already).
bash bench/families.sh "$config" "$workdir" \
  "bench/results/families_$(basename "$config" .py).md" auto
# Rating distributions (the protocol's distribution rows alone; replaces
# WORKDIR/eval again, with its distribution plots).
bash bench/distributions.sh "$config" "$workdir" \
  "bench/results/distributions_$(basename "$config" .py).md"

crema=../shared/data/crema_d
if [[ -f "$crema/finishedResponses.csv" && -d "$crema/AudioWAV" ]]; then
  python -m annojax.main --config=configs/crema_d.py --workdir=/tmp/annojax_cremad \
    --mode=features --config.features.audio_dir="$crema/AudioWAV"
  python -m annojax.main --config=configs/crema_d.py --workdir=/tmp/annojax_cremad \
    --config.data.files.source.path="$crema" \
    --config.data.files.source.embeddings=/tmp/annojax_cremad/features.npz
  cp /tmp/annojax_cremad/eval/results.md bench/results/accuracy_crema_d.md
else
  echo "CREMA-D accuracy skipped: $crema lacks finishedResponses.csv and/or AudioWAV/ (per-rater responses and audio are needed; see $crema/FORMAT.md)"
fi
