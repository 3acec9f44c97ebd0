#!/usr/bin/env bash
# Rating distributions: in a workdir whose individual and aggregate models
# are trained, run the protocol on the rating-distribution rows alone
# (protocol/rating_distributions.py; the aggregate, every CCC test's
# reference, comes along) and write bench/distributions_table.py's table.
#
#   bash bench/distributions.sh CONFIG WORKDIR [OUT.md] [--config.x=y ...]
#
# OUT.md empty: no table (nsc.sh combines partitions). The evaluation
# replaces WORKDIR/eval (its results.md has the distribution table and
# WORKDIR/eval/distribution_examples.png, sd_predicted_vs_actual.png).
set -euo pipefail
cd "$(dirname "$0")/.."
config="$1"; workdir="$2"; out="${3:-}"
shift $(( $# < 3 ? $# : 3 ))
rows='("aggregate_sd","aggregate_spread","source_distribution","heads_kde")'
python -m annojax.main --config="$config" --workdir="$workdir" "$@" \
  --config.train.progress_bar=False --config.mode=evaluate \
  --config.eval.rows="$rows" --config.eval.adaptive_sizes='()' \
  --config.eval.enroll_sizes='(0,)'
if [[ -n "$out" ]]; then
  python bench/distributions_table.py "$workdir/eval/results.json" \
    --title="Rating distributions: $(basename "$config" .py)" --out="$out"
fi
