#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one go: the gpu test tier, then the GPU benchmarks.
#   bash scripts/gpu_checks.sh            # your own CUDA machine, after scripts/setup.sh (or any env with the deps)
#   OUT=folder bash scripts/gpu_checks.sh # where the logs and JSON go (default benchmarks/results/gpu-checks)
# Sized to finish in about 6 minutes on a datacentre GPU: the benchmarks run fewer clips and steps than
# their defaults and extrapolate (gpu_eval reports seconds for the course's 2,212 clips). Each step has its
# own time limit so that one slow step still leaves the others' results.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu-checks}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" - <<'EOF'
from importlib.metadata import version
for name in ["torch", "transformers", "datasets", "accelerate", "peft", "huggingface_hub", "tokenizers",
             "pyarrow", "fsspec", "numpy", "soundfile", "soxr", "jiwer"]:
    try:
        print(name, version(name))
    except Exception as error:  # a missing package is reported, and the steps below say what it broke
        print(name, "FAILED:", error)
EOF
  echo "== gpu tier"
  timeout 200 "$PY" -m pytest -m gpu tests/test_gpu.py -o addopts="" -q -s -p no:cacheprovider
  echo "== gpu tier exit $?"
} 2>&1 | tee "$OUT/gpu_tier.log"
# Whole-split evaluation, extrapolated from 64 clips (4 batches of 16): random weights decode all 225 tokens,
# about 10 s a batch on an H100 or H200 (launch-bound), so more clips cost minutes and change little.
timeout 220 "$PY" -m benchmarks.gpu_eval --clips 64 --paths course ours --results-dir "$OUT" 2>&1 | tee "$OUT/gpu_eval.log"
timeout 100 "$PY" -m benchmarks.gpu_step --steps 10 --warmup 3 --variants course sdpa sdpa_no_ckpt frozen_encoder \
  --results-dir "$OUT" 2>&1 | tee "$OUT/gpu_step.log"
rm -f "$OUT"/gpu-eval-2*.json "$OUT"/gpu-2*.json  # the *-latest.json copies hold the same
