"""A pretrained Whisper comes out of fine-tuning better, not destroyed (issue: the real path).

These run the CLI as a learner would, with real OpenAI weights converted offline (``tools/pretrained_whisper``)
and nothing but ``--model``, ``--data`` and the run's length given: the training recipe is the one the CLI
picks for a pretrained checkpoint. The smoke model's recipe (learning rate 5e-3) drives tiny.en from 52 % to
over 100 % WER in a few steps, so these fail if a pretrained model ever gets it again. Whisper pads every
clip to 30 s, so a CPU step costs seconds even for tiny: few steps, batch 4, six test clips. The multilingual
test runs the ``offline`` profile's own values (``scripts/run_notebooks.py``'s default run) and asserts what
learning looks like: Sinhala script where zero-shot wrote Latin letters, and a CER at least halved, well
under the 100 % that empty transcripts score.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers.config import REPO_ROOT
from tests.support import pretrained_model
from tools.make_corpus import language_subset

SHORT_RUN = ["--max-steps", "6", "--eval-steps", "6", "--save-steps", "6", "--batch-size", "4",
             "--generation-max-length", "96", "--max-test-samples", "6", "--num-proc", "1"]


def run_cli(*args: str, short_run: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "COURSE_PROFILE": "smoke", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}  # a step is seconds: use both cores
    command = [sys.executable, "-m", "helpers", "run", *(SHORT_RUN if short_run else []), *args]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def english_run(tmp_path_factory, corpus):
    data = language_subset(corpus, tmp_path_factory.mktemp("cv-en") / "en", keep="en")
    out = tmp_path_factory.mktemp("run-en") / "out"
    result = run_cli("--model", str(pretrained_model("tiny.en")), "--data", str(data), "--language", "none",
                     "--task", "none", "--output-dir", str(out))
    return data, out, result


def test_fine_tuning_pretrained_tiny_en_lowers_its_wer(english_run):
    _, out, result = english_run
    assert "Recipe 'course' (a pretrained checkpoint): learning rate 1e-05" in result.stdout
    results = json.loads((out / "results.json").read_text())
    before, after = results["baseline"], results["finetuned"]
    assert before["n"] == after["n"] == 6
    assert 20 < before["wer_words"] < 80  # a real model that already transcribes espeak's English, imperfectly
    assert after["wer_words"] <= before["wer_words"] - 15 and after["cer_words"] < before["cer_words"]  # measured: 52.4 -> 14.3


def test_results_json_equals_what_pipeline_measures_on_the_saved_model(english_run):
    """What a user does with the result: ``pipeline(...)`` on OUTPUT/model, scored on the same test clips."""
    from transformers import pipeline

    from helpers.audio import SAMPLING_RATE, load_audio
    from helpers.data import read_cv_tsv
    from helpers.metrics import wer_scores

    data, out, _ = english_run
    rows = read_cv_tsv(data / "test.tsv")[:6]
    asr = pipeline("automatic-speech-recognition", model=str(out / "model"))
    predictions = [asr({"raw": load_audio(str(data / "clips" / row["path"])), "sampling_rate": SAMPLING_RATE},
                       generate_kwargs={"max_length": 96})["text"].strip() for row in rows]
    references = [row["sentence"].strip() for row in rows]
    assert wer_scores(predictions, references) == json.loads((out / "results.json").read_text())["finetuned"]
