#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one go: the gpu test tier, then the GPU benchmarks.
#   bash scripts/gpu_checks.sh unit            # the unit's GPU phases (the budget's): about 6 minutes on an H100
#   bash scripts/gpu_checks.sh                 # all of it: unit, tier, eval, lora (about 16 minutes on an H100/H200)
#   bash scripts/gpu_checks.sh eval lora       # only some steps: unit, tier, eval, lora, step (step: training step variants)
#   OUT=folder bash scripts/gpu_checks.sh      # where the logs and JSON go (default benchmarks/results/gpu-checks)
# Expected output and what each figure means: docs/evaluation-speed.md and docs/lora-and-8bit.md.
# The benchmarks run fewer clips and steps than their defaults and extrapolate (gpu_eval reports seconds for
# the course's 2,212 clips). Each step has its own time limit so that one slow step still leaves the others'
# results. Every step caps the process at a T4's 15 GiB (torch.cuda.set_per_process_memory_fraction).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu-checks}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
STEPS=${*:-unit tier eval lora}
wants() { [[ " $STEPS " == *" $1 "* ]]; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" - <<'EOF'
from importlib.metadata import version
for name in ["torch", "transformers", "datasets", "accelerate", "peft", "bitsandbytes", "triton", "huggingface_hub",
             "tokenizers", "numpy", "soundfile", "soxr", "jiwer"]:
    try:
        print(name, version(name))
    except Exception as error:  # a missing package is reported, and the steps below say what it broke
        print(name, "FAILED:", error)
EOF
} 2>&1 | tee "$OUT/versions.log"
if wants unit; then
  # The unit's GPU phases at the t4 profile's settings, each capped at 15 GiB (benchmarks/budget.py counts them):
  # 1. a training step, SDPA (what we train with) against eager (the course's), batch 16, fp16, checkpointing;
  timeout 150 "$PY" -m benchmarks.gpu_step --steps 10 --warmup 3 --variants course sdpa --memory-cap-gib 15 \
    --results-dir "$OUT" 2>&1 | tee "$OUT/unit_step.log"
  # 2. zero-shot at Dhivehi's lengths with loops: the course's pass (128 tokens, batch 32) against ours (capped at
  #    the longest reference, repeated tails stopped), eager and on the fast path;
  timeout 200 "$PY" -m benchmarks.gpu_unit --clips 128 --results-dir "$OUT" 2>&1 | tee "$OUT/unit_zero_shot.log"
  # 3. the fine-tuned model's passes at Dhivehi's lengths: the course's Trainer.evaluate, ours eager, the fast path
  #    (compiled decoder step, warm and cold), greedy ids compared.
  timeout 240 "$PY" -m benchmarks.gpu_eval --clips 64 --fast-batch-sizes 16 --results-dir "$OUT" 2>&1 \
    | tee "$OUT/unit_fine_tuned.log"
fi
if wants tier; then
  # Includes the fast path's compile-and-compare and LoRA through the CLI (8-bit skipped without bitsandbytes).
  timeout 300 "$PY" -m pytest -m gpu tests/test_gpu.py -o addopts="" -q -s -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tier.log"
  echo "== gpu tier exit ${PIPESTATUS[0]}" | tee -a "$OUT/gpu_tier.log"
fi
if wants eval; then
  # 64 clips with Thaana decode lengths: the course's Trainer.evaluate, ours eager, the fast path at batch 16,
  # 32 and 64 (each compiles once) and batch 16 again warm; seconds for 2,212 clips and a T4 estimate.
  timeout 420 "$PY" -m benchmarks.gpu_eval --clips 64 --results-dir "$OUT" 2>&1 | tee "$OUT/gpu_eval.log"
fi
if wants lora; then
  # whisper-small (full and LoRA) and LoRA on large-v3-turbo and large-v3 shapes, fp16 and 8-bit, batch 16 or
  # the largest that fits in 15 GiB; each LoRA case also checks merge_and_save's greedy ids.
  timeout 540 "$PY" -m benchmarks.lora_gpu --steps 5 --warmup 2 --results-dir "$OUT" 2>&1 | tee "$OUT/lora_gpu.log"
fi
if wants step; then
  timeout 100 "$PY" -m benchmarks.gpu_step --steps 10 --warmup 3 --variants course sdpa sdpa_no_ckpt frozen_encoder \
    --results-dir "$OUT" 2>&1 | tee "$OUT/gpu_step.log"
fi
rm -f "$OUT"/gpu-eval-2*.json "$OUT"/lora-gpu-2*.json "$OUT"/gpu-2*.json  # the *-latest.json copies hold the same
