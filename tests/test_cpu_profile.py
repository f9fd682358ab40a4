"""The one story for a learner without a GPU, ``profile="cpu"``, runs with only what a Colab runtime has.

A Colab runtime has the course's release (``helpers/`` and ``data/``), what the set-up cell installs, and the
Hub; it has no ``tools/`` (the smoke model's factory), no openai-whisper (the smoke tokenizer's vocabulary), and
none of this machine's caches. The Hub is out of reach here, so its download cache stands in at the file-system
edge: ``openai/whisper-tiny``'s snapshot holds the nearest real multilingual checkpoint converted offline
(whisper-base, tools/pretrained_whisper.py), and ``HF_HUB_OFFLINE=1`` makes transformers read it as it would
read a finished download.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers.config import BUNDLED_CORPUS, PRETRAINED_DIR, REPO_ROOT, get_config
from helpers.notebook import session

HUB_MODEL = "openai/whisper-tiny"
# What a Colab runtime lacks, made unimportable: the smoke model's factory and openai-whisper.
WITHOUT = ("tools", "tools.smoke_model", "whisper")
RUN = ("import sys; [sys.modules.__setitem__(name, None) for name in {without!r}]; "
       "from helpers.cli import main; sys.exit(main(sys.argv[1:]))")


def hub_cache_with(folder, cache, repo_id: str) -> None:
    """``cache`` laid out as huggingface_hub's download cache holding ``folder``'s files as ``repo_id``'s main."""
    revision = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    for file in folder.iterdir():
        if file.suffix in (".json", ".safetensors"):
            (snapshot / file.name).symlink_to(file)


def test_setup_in_colab_without_a_gpu_takes_the_cpu_profile_and_needs_nothing_outside_the_release(
        monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path))
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(session, "in_colab", lambda: True)
    monkeypatch.setattr(session, "mount_drive", lambda: None)
    config = session.setup(needs_gpu=True, profile="cpu", data="bundled")  # 04's set-up cell, as the docs say
    assert (config.profile, config.model, config.data) == ("cpu", HUB_MODEL, str(BUNDLED_CORPUS))
    assert str(REPO_ROOT / "data") in config.data  # the bundled clips come with the release the cell checks out
    # Every value of the profile is a Hub id or a Common Voice source: nothing built by tools/ or cached here.
    plain = get_config("cpu")
    assert plain.model == HUB_MODEL and plain.data.startswith("common-voice:")


@pytest.mark.skipif(not (PRETRAINED_DIR / "whisper-base" / "config.json").is_file(),
                    reason="needs the converted whisper-base (scripts/setup.sh)")
def test_the_cpu_profile_trains_and_scores_with_only_what_colab_has(tmp_path):
    hub_cache = tmp_path / "hub"
    hub_cache_with(PRETRAINED_DIR / "whisper-base", hub_cache, HUB_MODEL)
    empty_cache = tmp_path / "course-cache"  # no smoke model, no converted weights
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COURSE_CACHE": str(empty_cache), "HF_HUB_CACHE": str(hub_cache),
           "HF_HUB_OFFLINE": "1", "COURSE_WORKSPACE": str(tmp_path / "workspace")}
    env.pop("COURSE_PROFILE", None)
    out = tmp_path / "out"
    # The cpu profile's own values, but for the run's length: a few clips, two steps, one evaluation.
    done = subprocess.run(
        [sys.executable, "-c", RUN.format(without=WITHOUT), "run", "--profile", "cpu", "--data", "bundled",
         "--output-dir", str(out), "--max-steps", "2", "--max-train-samples", "4", "--max-test-samples", "2",
         "--validation-size", "2", "--eval-steps", "2", "--save-steps", "2", "--batch-size", "2",
         "--eval-batch-size", "2", "--generation-max-length", "24", "--eval-num-beams", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Profile 'cpu'" in done.stdout and "encoder frozen" in done.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == HUB_MODEL and results["max_steps"] == 2
    assert results["baseline"]["n"] == results["finetuned"]["n"] == 2
    predictions = json.loads((out / "predictions.json").read_text())
    assert len(predictions["zero_shot"]) == len(predictions["fine_tuned"]) == 2
    assert (out / "model" / "model.safetensors").is_file()
    assert not empty_cache.exists() or not any(empty_cache.iterdir())  # nothing was built or needed there
