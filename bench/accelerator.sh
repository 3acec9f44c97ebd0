#!/usr/bin/env bash
# The accelerator issue's figures in one short run, for a lent GPU (run it
# from the repository root on the device machine; ~5 min on an H200):
#
#   bash bench/accelerator.sh [OUT_DIR]
#
# 1. training examples/s at 1, 8 and 32 steps per dispatch
#    (config.train.steps_per_call), 2,000 and 20,000 heads, batch 32 / 256;
# 2. the enrollment search at float32 and bfloat16 (config.eval.
#    score_precision; chunks sized to the device, head_chunk = 0), N = 1,000
#    at A = 2,000 and 20,000: time, largest score difference, top-1 changes;
# 3. annojax beside batched PyTorch at every A of bench/torch_bench.py,
#    when torch is installed (bench/README.md: pip install torch first);
# 4. WavLM-base-plus features, clips/s (float32, bfloat16; beside
#    transformers when it is installed: bench/features_bench.py).
# Each writes OUT_DIR/<name>.txt (default: $OUT, else /tmp/annojax_accel).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-/tmp/annojax_accel}}"
mkdir -p "$out"
python bench/train_bench.py --heads=2000,20000 --batch=32,256 \
  --variants="row-sparse SGD (exact),sparse layout + optax update" \
  --per-call=1,8,32 --profile= | tee "$out/train_per_call.txt"
python bench/enroll_bench.py --only-precision \
  --precision=1000x2000,1000x20000 --repeats=5 | tee "$out/precision.txt"
if python -c "import torch, transformers" 2>/dev/null; then
  python bench/torch_bench.py | tee "$out/torch.txt"
  python bench/features_bench.py --clips=256 | tee "$out/features.txt"
else
  echo "torch not installed: batched PyTorch not compared" | tee "$out/torch.txt"
  python bench/features_bench.py --clips=256 --skip_torch \
    | tee "$out/features.txt"
fi
