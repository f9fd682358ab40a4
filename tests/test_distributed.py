"""A distributed run (2 CPU processes under torchrun, gloo): one scorer, one writer, every clip scored once."""

import json
import os
import subprocess
import sys

import pytest

from helpers.config import REPO_ROOT

TEST_CLIPS = 7  # odd, and not a multiple of 2 processes x EVAL_BATCH: the sampler must repeat clips to even out
VALIDATION_CLIPS = 5  # the same for the in-training evaluation
EVAL_BATCH = 3


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, corpus):
    out = tmp_path_factory.mktemp("distributed") / "out"
    env = {**os.environ, "COURSE_PROFILE": "smoke", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "helpers", "run", "--data", str(corpus), "--output-dir", str(out),
               "--max-steps", "2", "--eval-steps", "1", "--save-steps", "2", "--batch-size", "2",
               "--max-train-samples", "8", "--max-test-samples", str(TEST_CLIPS),
               "--validation-size", str(VALIDATION_CLIPS),
               "--eval-batch-size", str(EVAL_BATCH), "--generation-max-length", "24", "--num-proc", "1"]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
                            check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return out, result.stdout + result.stderr


def test_only_the_main_process_scores_and_prints(two_process_run):
    _, output = two_process_run
    lines = output.splitlines()
    # the scores, then what the pass covered (describe_zero_shot): each once, from the main process
    assert sum(line.startswith("Zero-shot: {") for line in lines) == 1, output[-3000:]
    assert sum(line.startswith("Zero-shot: ") and not line.startswith("Zero-shot: {") for line in lines) == 1
    assert sum(line.startswith("Fine-tuned:") for line in lines) == 1
    assert sum(line.startswith("test: kept") for line in lines) == 1  # the preparation report, once


def test_results_score_the_whole_test_split_once(two_process_run):
    out, _ = two_process_run
    report = json.loads((out / "report.json").read_text())
    assert report["test"]["kept"] == TEST_CLIPS
    results = json.loads((out / "results.json").read_text())
    assert results["baseline"]["n"] == results["finetuned"]["n"] == TEST_CLIPS
    assert json.loads((out / "baseline.json").read_text())["scores"]["n"] == TEST_CLIPS
    assert not list(out.glob(".*.tmp")), "no half-written file left by a second writer"


def test_evaluation_during_training_scores_each_clip_once(two_process_run):
    """2 processes x batch 3 make 6 slots for 5 validation clips: the repeat must not be scored."""
    out, _ = two_process_run
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    evaluations = [entry for entry in state["log_history"] if "eval_wer_words" in entry]
    assert [entry["step"] for entry in evaluations] == [1, 2]
    assert [entry["eval_n"] for entry in evaluations] == [VALIDATION_CLIPS, VALIDATION_CLIPS]
