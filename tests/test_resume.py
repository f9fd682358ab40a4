"""Killed training resumes from its last complete checkpoint, as if it had never stopped.

One uninterrupted run is the reference. A second run of the same command is SIGKILLed in a real process
once its first checkpoint is on disk; a half-written newer checkpoint (what a kill during saving leaves)
is put beside it; the same command is run again. It must skip the half-written folder, resume from the
complete one, and log exactly the reference's learning rates and losses from there on: the step counter,
the optimizer's moments and the scheduler all came back.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from helpers.cli import main
from helpers.training import checkpoint_is_complete, last_checkpoint
from tests.support import ONE_THREAD, kill_after_first_checkpoint

MAX_STEPS = 6
def run_args(corpus: Path, out: Path) -> list[str]:
    return ["run", "--profile", "smoke", "--data", str(corpus), "--output-dir", str(out),
            "--max-steps", str(MAX_STEPS), "--save-steps", "2", "--eval-steps", "2", "--logging-steps", "1",
            "--warmup-steps", "2", "--batch-size", "2", "--max-train-samples", "4", "--max-test-samples", "2",
            "--eval-batch-size", "2", "--generation-max-length", "4", "--save-total-limit", "2", "--num-proc", "1"]


def checkpoints(out: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))


def train_logs(out: Path, step: int = MAX_STEPS) -> dict[int, dict]:
    """The per-step training log (loss, learning rate, grad norm) from ``checkpoint-<step>``'s trainer state."""
    state = json.loads((out / f"checkpoint-{step}" / "trainer_state.json").read_text())
    return {entry["step"]: entry for entry in state["log_history"] if "loss" in entry}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus, one_torch_thread):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert main(run_args(corpus, out)) == 0
    return out


@pytest.fixture(scope="module")
def killed(tmp_path_factory, corpus):
    """The same command in a real process, SIGKILLed as soon as a checkpoint is complete on disk."""
    out = tmp_path_factory.mktemp("killed") / "out"
    env = {**os.environ, "COURSE_PROFILE": "smoke", "HF_HUB_OFFLINE": "1", **ONE_THREAD}
    resume_from = kill_after_first_checkpoint(run_args(corpus, out), out, env)
    assert resume_from < MAX_STEPS and not (out / "results.json").exists()
    return out, resume_from


@pytest.fixture(scope="module")
def resumed(killed, corpus, one_torch_thread):
    """A half-written newer checkpoint is added, then the same command is run again."""
    out, resume_from = killed
    half = out / f"checkpoint-{resume_from + 2}"
    if not half.exists():  # what a kill after the weights but before trainer_state.json leaves
        half.mkdir()
        for name in ("config.json", "model.safetensors"):
            shutil.copy(out / f"checkpoint-{resume_from}" / name, half / name)
    assert not checkpoint_is_complete(half)
    import io
    from contextlib import redirect_stdout

    printed = io.StringIO()
    with redirect_stdout(printed):
        code = main(run_args(corpus, out))
    return out, resume_from, code, printed.getvalue()


def test_killed_run_resumes_from_its_checkpoint_to_max_steps(resumed):
    out, resume_from, code, printed = resumed
    assert code == 0
    assert f"Skipping {out / f'checkpoint-{resume_from + 2}'}" in printed
    assert f"Resuming from {out / f'checkpoint-{resume_from}'}" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["finetuned"]["n"] == 2 and results["max_steps"] == MAX_STEPS
    state = json.loads((out / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())
    assert state["global_step"] == MAX_STEPS
    # The second process logged only the steps after the checkpoint: it did not start over.
    assert printed.count("'loss'") == MAX_STEPS - resume_from


def test_resumed_run_continues_the_schedule_and_optimizer_exactly(resumed, reference):
    out, resume_from, _, _ = resumed
    got, want = train_logs(out), train_logs(reference)
    assert sorted(got) == sorted(want) == list(range(1, MAX_STEPS + 1))
    for step in range(resume_from + 1, MAX_STEPS + 1):
        # A restarted scheduler would warm up again from 0; a fresh optimizer would change every later loss.
        assert got[step]["learning_rate"] == want[step]["learning_rate"], step
        assert got[step]["loss"] == pytest.approx(want[step]["loss"], rel=1e-4), step
        assert got[step]["grad_norm"] == pytest.approx(want[step]["grad_norm"], rel=1e-3), step
    # The schedule being compared really moves: it rises through the warm-up, then decays linearly.
    learning_rates = [want[s]["learning_rate"] for s in range(1, MAX_STEPS + 1)]
    peak = learning_rates.index(max(learning_rates))
    assert learning_rates[0] < learning_rates[peak] and learning_rates[peak:] == sorted(learning_rates[peak:], reverse=True)
    assert len(set(learning_rates)) >= MAX_STEPS - 1


def test_old_checkpoints_are_rotated(reference):
    # Three saves (steps 2, 4, 6) with --save-total-limit 2: two are left, the newest among them.
    assert len(checkpoints(reference)) == 2 and checkpoints(reference)[-1] == MAX_STEPS
    assert (reference / "results.json").is_file() and (reference / "model" / "model.safetensors").is_file()


def _checkpoint(folder: Path, step: int, state: str | None = '{"global_step": 1}', weights: bool = True,
                optimizer: bool = True) -> Path:
    import torch
    from safetensors.torch import save_file

    path = folder / f"checkpoint-{step}"
    path.mkdir()
    if weights:
        save_file({"w": torch.zeros(4)}, str(path / "model.safetensors"))
    if optimizer:
        torch.save({"state": {}}, path / "optimizer.pt")
    else:
        (path / "optimizer.pt").write_bytes(b"")  # a file that never got its bytes
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    return path


def test_last_checkpoint_skips_every_kind_of_interrupted_save(tmp_path):
    from transformers.trainer_utils import get_last_checkpoint

    assert last_checkpoint(tmp_path / "missing") is None and last_checkpoint(tmp_path) is None
    complete = _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 4, state=None)                        # killed before trainer_state.json
    _checkpoint(tmp_path, 6, state='{"global_step": 6, "log_h')  # killed while writing it
    _checkpoint(tmp_path, 8, optimizer=False)                   # a file that never got its bytes (Drive sync)
    _checkpoint(tmp_path, 10, weights=False)                    # no weights at all
    (tmp_path / "checkpoint-12-tmp").mkdir()                    # not a checkpoint name
    assert last_checkpoint(tmp_path) == str(complete)
    assert get_last_checkpoint(str(tmp_path)).endswith("checkpoint-10")  # what transformers alone would pick
    assert checkpoint_is_complete(complete) and not checkpoint_is_complete(tmp_path / "checkpoint-6")


def test_checkpoint_files_cut_short_are_detected(reference, tmp_path):
    """A real checkpoint, then copies of it with one file cut in half, as an interrupted Drive sync leaves them."""
    source = reference / f"checkpoint-{MAX_STEPS}"
    assert checkpoint_is_complete(source)
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"):
        copy = tmp_path / name
        shutil.copytree(source, copy)
        data = (copy / name).read_bytes()
        (copy / name).write_bytes(data[: len(data) // 2])
        assert not checkpoint_is_complete(copy), name
        shutil.copytree(source, copy, dirs_exist_ok=True)
        assert checkpoint_is_complete(copy), name


def test_baseline_and_results_files_are_replaced_whole(tmp_path):
    from helpers.runtime.workspace import read_json, write_json

    write_json(tmp_path / "results.json", {"wer": 1.0})
    write_json(tmp_path / "results.json", {"wer": 2.0})
    assert read_json(tmp_path / "results.json") == {"wer": 2.0}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left behind
    (tmp_path / "baseline.json").write_text('{"wer": 1')  # half a file, as an old non-atomic write left it
    assert read_json(tmp_path / "baseline.json") is None  # recomputed rather than crashing the resume


def test_a_baseline_or_results_file_from_before_the_metrics_were_renamed_is_never_read_as_today_s(
        tmp_path, processor):
    # Until the course's names meant the course's metrics, "wer" held our whole-word WER and "wer_basic" the
    # course's: a file from then, read today, would put our number under the course's name.
    from datasets import Dataset

    from helpers.config import get_config
    from helpers.evaluation import (
        evaluation_key,
        read_results,
        results_record,
        reuse_or_evaluate,
    )
    from helpers.metrics import wer_scores
    from helpers.runtime.errors import CourseError
    from helpers.runtime.workspace import write_json

    config = get_config("smoke")
    test = Dataset.from_dict({"sentence": ["the cat sat on the mat", "ආයුබෝවන් ඔබට කොහොමද"]})
    key = evaluation_key(config, config.model, test, processor)
    predictions, references = ["the cat sat on a mat", "ආයුබෝවන් ඔබට කොහොමදා"], list(test["sentence"])
    today = {"scores": wer_scores(predictions, references), "predictions": predictions, "references": references}
    old_key = {name: value for name, value in key.items() if name != "metrics"}
    old_scores = {"wer_ortho": 40.0, "wer": 25.0, "wer_basic": 12.5, "cer": 5.0, "n": 2}
    write_json(tmp_path / "baseline.json", {"key": old_key, "scores": old_scores, "predictions": predictions,
                                            "references": references})
    result, reused = reuse_or_evaluate(tmp_path / "baseline.json", key, lambda: today)
    assert not reused and result["scores"] == today["scores"]  # computed again, under today's names
    assert reuse_or_evaluate(tmp_path / "baseline.json", key, lambda: pytest.fail("recomputed")) == (
        {"key": key, **today}, True)

    write_json(tmp_path / "results.json", {"baseline": old_scores, "finetuned": old_scores, "model": config.model})
    with pytest.raises(CourseError, match="run 05_evaluate.ipynb"):
        read_results(tmp_path / "results.json")
    write_json(tmp_path / "results.json", results_record(config, today["scores"], today["scores"]))
    assert read_results(tmp_path / "results.json")["finetuned"]["wer_words"] == today["scores"]["wer_words"]
