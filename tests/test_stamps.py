"""Every workspace artifact carries the stamp of the run that made it; another run's files stop a stage."""

import json

import pytest
from datasets import Dataset, DatasetDict

from helpers.config import get_config
from helpers.evaluation import evaluate_once
from helpers.runtime import workspace
from helpers.runtime.workspace import (
    RunMismatch,
    read_stamp,
    run_stamp,
    tokenizer_fingerprint,
)


@pytest.fixture
def ws(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    return tmp_path


def test_saved_artifacts_are_stamped_and_checked(ws, processor):
    smoke = get_config("smoke")
    workspace.set_run(smoke)
    path = workspace.save_to_workspace(DatasetDict(train=Dataset.from_dict({"x": [1]})), "prepared", processor)
    stamp = read_stamp(path)
    assert stamp == run_stamp(smoke, processor) and stamp["tokenizer"] == tokenizer_fingerprint(processor.tokenizer)
    assert {"profile", "model", "data", "language", "task", "tokenizer", "helpers"} <= set(stamp)
    assert workspace.saved_path("prepared", processor=processor) == path  # the same run passes
    assert not (path / ".stamps").exists()  # beside the artifact, where from_pretrained and a push never look


def test_another_runs_data_stops_the_stage_with_what_differs(ws, processor):
    workspace.set_run(get_config("smoke"))
    workspace.save_to_workspace(DatasetDict(train=Dataset.from_dict({"x": [1]})), "prepared", processor)
    workspace.set_run(get_config("smoke", model="openai/whisper-small", language="tamil"))
    with pytest.raises(RunMismatch) as error:
        workspace.saved_path("prepared")
    message = str(error.value)
    assert "made by another run" in message and "'openai/whisper-small'" in message and "'tamil'" in message
    assert "02_preprocess.ipynb" in message  # and how to start over


def test_a_different_tokenizer_prefix_is_noticed(ws, processor):
    from helpers.model import load_processor

    workspace.set_run(get_config("smoke"))
    workspace.save_to_workspace(DatasetDict(train=Dataset.from_dict({"x": [1]})), "prepared", processor)
    english = load_processor(str(get_config("smoke").model), "english", "transcribe")
    with pytest.raises(RunMismatch, match="tokenizer"):
        workspace.saved_path("prepared", processor=english)


def test_resuming_checks_the_checkpoints_stamp(ws, processor):
    workspace.set_run(get_config("smoke"))
    (workspace.claim("training", processor) / "checkpoint-100").mkdir(parents=True)  # a first run's checkpoints
    workspace.claim("training", processor)  # resuming the same run passes
    workspace.set_run(get_config("smoke", data="/elsewhere/cv-corpus/dv"))
    with pytest.raises(RunMismatch, match="data '/work/main/data/cv-mini/si'|data '.*cv-mini/si'"):
        workspace.claim("training", processor)
    workspace.set_run(get_config("t4"))  # another profile works in its own folder: nothing to mix up
    assert workspace.claim("training", processor).parent.name == "t4"


def test_the_cli_refuses_to_resume_another_runs_checkpoints(tmp_path, corpus):
    from tests.test_cli import helpers_cli

    out = tmp_path / "out"
    first = helpers_cli("run", "--data", str(corpus), "--output-dir", str(out), "--max-steps", "1",
                        "--save-steps", "1", "--eval-steps", "1", "--batch-size", "2", "--max-train-samples", "2",
                        "--max-test-samples", "2", "--generation-max-length", "4", "--num-proc", "1")
    assert first.returncode == 0, first.stderr[-2000:]
    assert json.loads((out / ".stamps" / "checkpoints.stamp.json").read_text())["language"] == "sinhalese"
    again = helpers_cli("run", "--data", str(corpus), "--output-dir", str(out), "--language", "tamil",
                        "--max-steps", "2", "--num-proc", "1")
    assert again.returncode == 2
    assert "made by another run" in again.stderr and "'tamil'" in again.stderr and "--no-resume" in again.stderr


def test_the_savers_and_loaders_stamp_and_check_by_themselves(ws, processor):
    workspace.set_run(get_config("smoke"))
    report = {"train": {"kept": 3}}
    path = workspace.save_to_workspace(report, "report", processor)  # a dict: an atomic JSON file
    assert json.loads(path.read_text()) == report and read_stamp(path) == run_stamp(get_config("smoke"), processor)
    workspace.save_to_workspace(DatasetDict(test=Dataset.from_dict({"x": [4, 5]})), "prepared", processor)
    assert workspace.load_from_workspace("report", processor) == report
    assert workspace.load_from_workspace("prepared", processor)["test"]["x"][:] == [4, 5]
    with workspace.saving_to_workspace("model", "adapter", processor=processor) as (model_dir, adapter_dir):
        model_dir.mkdir()  # a full run writes no adapter: it stays unstamped
        (model_dir / "config.json").write_text("{}")
    assert read_stamp(model_dir) and read_stamp(adapter_dir) is None
    workspace.set_run(get_config("smoke", language="tamil"))
    for name in ("report", "prepared"):
        with pytest.raises(RunMismatch, match="'tamil'"):
            workspace.load_from_workspace(name)


def test_the_drive_copies_of_another_run_stop_training_before_it_starts(ws, processor):
    from helpers.runtime.mirror import CheckpointMirror

    workspace.set_run(get_config("smoke"))
    mirror = workspace.claim_checkpoint_copies(processor)
    assert isinstance(mirror, CheckpointMirror) and read_stamp(workspace.artifact_path("training"))
    (workspace.artifact_path("training") / "checkpoint-15").mkdir(parents=True)
    workspace.set_run(get_config("smoke", model="openai/whisper-small"))
    with pytest.raises(RunMismatch, match="whisper-small"):
        workspace.claim_checkpoint_copies(processor)


def test_a_zero_shot_score_is_computed_once_and_stamped(ws, processor):
    workspace.set_run(get_config("smoke"))
    first, reused = evaluate_once("baseline", {"model": "m"}, lambda: {"scores": {"wer": 120.0}}, processor)
    assert not reused and read_stamp(workspace.artifact_path("baseline"))
    again, reused = evaluate_once("baseline", {"model": "m"}, lambda: pytest.fail("recomputed"), processor)
    assert reused and again["scores"] == {"wer": 120.0}


def test_a_truncated_stamp_stops_the_stage_with_what_to_do(ws, processor):
    """A half-synced Drive file: the stamp is there but cut short. It must not pass as "no stamp"."""
    workspace.set_run(get_config("smoke"))
    path = workspace.save_to_workspace(DatasetDict(train=Dataset.from_dict({"x": [1]})), "prepared", processor)
    stamp_file = workspace.stamp_path(path)
    stamp_file.write_text(stamp_file.read_text()[:40])
    with pytest.raises(workspace.CourseError) as error:
        workspace.load_from_workspace("prepared", processor)
    message = str(error.value)
    assert f"The run stamp of prepared ({stamp_file}) cannot be read" in message
    assert "02_preprocess.ipynb" in message and "delete" in message


def test_the_cli_stops_at_a_truncated_checkpoints_stamp(tmp_path, processor):
    from helpers.cli import check_checkpoints

    out = tmp_path / "out"
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2}')
    (out / "checkpoint-2" / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    workspace.write_stamp(out / "checkpoints", run_stamp(get_config("smoke"), processor))
    workspace.stamp_path(out / "checkpoints").write_text('{"profile": "sm')
    with pytest.raises(workspace.CourseError, match="cannot be read.*--no-resume"):
        check_checkpoints(run_stamp(get_config("smoke"), processor), out, resume=True)


def test_resuming_with_another_seed_or_learning_rate_is_noticed(ws, processor):
    workspace.set_run(get_config("smoke"))
    (workspace.claim("training", processor) / "checkpoint-100").mkdir(parents=True)
    stamp = read_stamp(workspace.artifact_path("training"))
    assert stamp["seed"] == get_config("smoke").seed and stamp["learning_rate"] == get_config("smoke").learning_rate
    workspace.set_run(get_config("smoke", learning_rate=3e-5))
    with pytest.raises(RunMismatch, match="learning_rate"):
        workspace.claim("training", processor)
    workspace.set_run(get_config("smoke", seed=7))
    with pytest.raises(RunMismatch, match="seed 42 \\(this run: 7\\)"):
        workspace.claim("training", processor)
