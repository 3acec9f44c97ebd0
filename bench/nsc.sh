#!/usr/bin/env bash
# Real listeners (../shared/data/nsc, openSMILE eGeMAPS features) through the
# protocol, with and without feature standardisation:
#
#   bash bench/nsc.sh [WORKDIR]
#
# bench/nsc_generic.py splits listeners and speakers 2/3 pre-training, 1/3
# target (nothing shared); configs/demo.py's training (Adam) on 0-100
# ratings of `aktiv` (activation) and `angenehm` (valence); 3 seeds x 5
# folds. Copies both tables to bench/results/nsc_{standardized,raw}.md.
# Skips (exit 0) when ../shared/data/nsc is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
nsc=../shared/data/nsc
if [[ ! -f "$nsc/SC_ratings.csv" ]]; then
  echo "NSC skipped: $nsc/SC_ratings.csv is absent"; exit 0
fi
work="${1:-/tmp/annojax_nsc}"
python bench/nsc_generic.py "$work/corpus"
mkdir -p bench/results
for std in True False; do
  name=$([[ $std == True ]] && echo standardized || echo raw)
  python -m annojax.main --config=configs/demo.py --workdir="$work/$name" \
    --config.data.corpus=files \
    --config.data.files.source.path="$work/corpus/source.csv" \
    --config.data.files.source.embeddings="$work/corpus/source.npz" \
    --config.data.files.source.scale='(0,100)' \
    --config.data.files.target.path="$work/corpus/target.csv" \
    --config.data.files.target.embeddings="$work/corpus/target.npz" \
    --config.data.files.target.scale='(0,100)' \
    --config.data.min_ratings=10 --config.data.val_fraction=0.15 \
    --config.train.batch_size=32 --config.eval.seeds=3 \
    --config.eval.enroll_sizes='(5,10,0)' \
    --config.data.standardize=$std --config.train.progress_bar=False
  cp "$work/$name/eval/results.md" "bench/results/nsc_$name.md"
done
