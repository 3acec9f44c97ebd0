#!/usr/bin/env bash
# Real listeners (../shared/data/nsc) through the protocol, configs/nsc.py:
#
#   bash bench/nsc.sh [WORKDIR]
#
# Three listener x speaker partitions (data.partition_seed 0, 1, 2: each a
# new draw of which listeners and speakers are pre-training and which are
# new), each with 3 evaluation seeds x 5 folds (new models and folds), with
# standardised eGeMAPS features; partition 0 once more with raw features;
# the three partitions again with head_shrinkage=100
# (bench/results/nsc_shrinkage.md); heads on the aggregate's trunk
# (bench/results/nsc_consensus_heads.md); shrunk per-listener calibration
# (bench/results/nsc_calibration.md); the blended rule's table
# (bench/results/blend_nsc.md); the annotator families beside the heads
# (bench/results/families_nsc.md, bench/families.sh); the rating
# distributions (bench/results/distributions_nsc.md,
# bench/distributions.sh).
# bench/nsc_table.py combines the runs into bench/results/nsc.md (per-fold
# and pooled CCC_ind, every row, both dimensions; adaptive vs random
# enrollment clips, with bench/results/nsc_adaptive.png); each run's own table is
# copied to bench/results/nsc_p<seed>.md. ~5 min on 2 cores. Skips (exit 0)
# when ../shared/data/nsc is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
nsc=../shared/data/nsc
if [[ ! -f "$nsc/SC_ratings.csv" ]]; then
  echo "NSC skipped: $nsc/SC_ratings.csv is absent"; exit 0
fi
work="${1:-/tmp/annojax_nsc}"
mkdir -p bench/results
runs=()
for p in 0 1 2; do
  python -m annojax.main --config=configs/nsc.py --workdir="$work/p$p" \
    --config.data.partition_seed=$p --config.train.progress_bar=False
  cp "$work/p$p/eval/results.md" "bench/results/nsc_p$p.md"
  runs+=("$work/p$p/eval/results.json")
done
python -m annojax.main --config=configs/nsc.py --workdir="$work/raw" \
  --config.data.standardize=False --config.train.progress_bar=False
cp "$work/raw/eval/results.md" bench/results/nsc_raw.md
python bench/nsc_table.py "${runs[@]}" --raw="$work/raw/eval/results.json" \
  --out=bench/results/nsc.md --plot=bench/results/nsc_adaptive.png
# The blended rule against the consensus and the best individual rule.
python bench/blend_table.py "${runs[@]}" --unit=pooled \
  --title="The blended rule on NSC (bench/nsc.sh: 3 listener x speaker partitions x 3 seeds, pooled CCC_ind)" \
  --out=bench/results/blend_nsc.md
# Heads or embeddings? The embedding families beside the same heads, each
# partition (replaces its eval/; its table is copied above).
fam=()
for p in 0 1 2; do
  bash bench/families.sh configs/nsc.py "$work/p$p" "" pooled \
    --config.data.partition_seed=$p
  fam+=("$work/p$p/eval/results.json")
done
python bench/families_table.py "${fam[@]}" --unit=pooled \
  --title="Heads or embeddings? NSC (bench/nsc.sh: 3 listener x speaker partitions x 3 seeds, pooled CCC_ind)" \
  --out=bench/results/families_nsc.md
# Rating distributions: the distribution rows on each partition (replaces
# its eval/ again), one table over the 9 replicates.
dist=()
for p in 0 1 2; do
  bash bench/distributions.sh configs/nsc.py "$work/p$p" "" \
    --config.data.partition_seed=$p
  dist+=("$work/p$p/eval/results.json")
done
python bench/distributions_table.py "${dist[@]}" \
  --title="Rating distributions: NSC (bench/nsc.sh: 3 listener x speaker partitions x 3 seeds)" \
  --out=bench/results/distributions_nsc.md
# Heads that share strength (config.model.head_shrinkage), same partitions.
shrunk=()
for p in 0 1 2; do
  python -m annojax.main --config=configs/nsc.py --workdir="$work/shrink_p$p" \
    --config.data.partition_seed=$p --config.model.head_shrinkage=100 \
    --config.train.progress_bar=False
  shrunk+=("$work/shrink_p$p/eval/results.json")
done
python bench/nsc_table.py "${shrunk[@]}" --out=bench/results/nsc_shrinkage.md
# Heads on the aggregate model's trunk, pulled toward its head (no
# retraining): bench/results/nsc_consensus_heads.md.
python bench/nsc_consensus_heads.py "$work/p0" "$work/p1" "$work/p2" \
  --out=bench/results/nsc_consensus_heads.md
# The aggregate calibrated per listener, shrunk toward the identity or the
# source raters' typical calibration: bench/results/nsc_calibration.md.
python bench/nsc_calibration.py "$work/p0" "$work/p1" "$work/p2" \
  --out=bench/results/nsc_calibration.md
