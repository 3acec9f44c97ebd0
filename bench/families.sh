#!/usr/bin/env bash
# Heads or embeddings? In a workdir whose heads (individual) and aggregate
# models are trained, train the embedding families beside them (lowrank and
# embedding, every evaluation seed) and run the protocol on the rows that
# compare them (no adaptive rows); then bench/families_table.py.
#
#   bash bench/families.sh CONFIG WORKDIR [OUT.md] [UNIT] [--config.x=y ...]
#
# OUT.md empty: no table (nsc.sh combines partitions). UNIT: families_table's
# --unit (auto, pooled, seeds, runs). The evaluation replaces WORKDIR/eval.
set -euo pipefail
cd "$(dirname "$0")/.."
config="$1"; workdir="$2"; out="${3:-}"; unit="${4:-auto}"
shift $(( $# < 4 ? $# : 4 ))
rows='("aggregate","aggregate_rescaled","mean_heads","most_similar","mixture","eb","blended","oracle","oracle_chance","lowrank_copy","lowrank_fit","lowrank_mean_listener","lowrank_all_listeners","embedding_copy","embedding_fit","embedding_mean_listener","embedding_all_listeners")'
python -m annojax.main --config="$config" --workdir="$workdir" "$@" \
  --config.train.progress_bar=False --config.mode=train \
  --config.train.models='("embedding","lowrank")'
python -m annojax.main --config="$config" --workdir="$workdir" "$@" \
  --config.train.progress_bar=False --config.mode=evaluate \
  --config.train.models='("individual","aggregate","embedding","lowrank")' \
  --config.eval.rows="$rows" --config.eval.adaptive_sizes='()'
if [[ -n "$out" ]]; then
  python bench/families_table.py "$workdir/eval/results.json" --unit="$unit" \
    --title="Heads or embeddings? $(basename "$config" .py)" --out="$out"
fi
