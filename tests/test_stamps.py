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
    assert stamp["tokenizer"] == tokenizer_fingerprint(processor.tokenizer) and stamp["language"] == "<|si|>"
    assert set(stamp) == {"profile", "data", "language", "task", "tokenizer", "helpers"}  # what shaped the data
    assert stamp.items() <= run_stamp(smoke, processor).items()
    assert workspace.saved_path("prepared", processor=processor) == path  # the same run passes
    assert not (path / ".stamps").exists()  # beside the artifact, where from_pretrained and a push never look


def test_another_runs_data_stops_the_stage_with_what_differs(ws, processor):
    workspace.set_run(get_config("smoke"))
    workspace.save_to_workspace(DatasetDict(train=Dataset.from_dict({"x": [1]})), "prepared", processor)
    workspace.set_run(get_config("smoke", model="openai/whisper-small", language="tamil"))
    with pytest.raises(RunMismatch) as error:
        workspace.saved_path("prepared")
    message = str(error.value)
    assert "made by another run" in message and "'<|ta|>'" in message
    assert "02_preprocess.ipynb" in message  # and how to start over


def test_a_different_tokenizer_prefix_is_noticed(ws, processor):
    from helpers.model import load_processor

    workspace.set_run(get_config("smoke"))
    workspace.save_to_workspace(DatasetDict(train=Dataset.from_dict({"x": [1]})), "prepared", processor)
    english = load_processor(str(get_config("smoke").model), "english", "transcribe")
    with pytest.raises(RunMismatch, match="tokenizer"):
        workspace.saved_path("prepared", processor=english)


def test_data_holds_what_shaped_it_and_not_how_a_model_is_then_trained(ws, processor):
    """01's and 02's files do not depend on the training method or the learning rate: a LoRA run, or another
    learning rate, in 04 reads them; 02 in another language reads 01's clips (they hold no language)."""
    workspace.set_run(get_config("smoke"))
    workspace.save_to_workspace(DatasetDict(train=Dataset.from_dict({"x": [1]})), "loaded")
    workspace.save_to_workspace(DatasetDict(train=Dataset.from_dict({"x": [1]})), "prepared", processor)
    for name in ("loaded", "prepared"):
        assert not {"method", "learning_rate", "seed"} & set(read_stamp(workspace.artifact_path(name)))
    workspace.set_run(get_config("smoke", peft="lora", learning_rate=3e-5))
    assert workspace.load_from_workspace("prepared", processor)["train"]["x"][:] == [1]
    workspace.set_run(get_config("smoke", language="tamil"))
    assert workspace.load_from_workspace("loaded")["train"]["x"][:] == [1]  # the clips hold no language
    with pytest.raises(RunMismatch, match="<\\|ta\\|>"):  # the labels do
        workspace.load_from_workspace("prepared")


@pytest.mark.parametrize("spelling", ["sinhala", "Sinhalese", "si"])
def test_one_language_under_any_of_its_spellings_is_one_run(ws, processor, spelling):
    from helpers.model import load_processor

    workspace.set_run(get_config("smoke"))  # "sinhalese"
    workspace.save_to_workspace(DatasetDict(train=Dataset.from_dict({"x": [1]})), "prepared", processor)
    assert read_stamp(workspace.artifact_path("prepared"))["language"] == "<|si|>"  # Whisper's token
    config = get_config("smoke", language=spelling)
    workspace.set_run(config)
    spelled = load_processor(str(config.model), config.language, config.task)
    assert workspace.load_from_workspace("prepared", spelled)["train"]["x"][:] == [1]


def test_later_stages_read_the_model_whatever_method_trained_it(ws, processor):
    workspace.set_run(get_config("smoke", peft="lora", learning_rate=3e-4))
    with workspace.saving_to_workspace("model", processor=processor) as model_dir:
        model_dir.mkdir()
        (model_dir / "config.json").write_text("{}")
    assert read_stamp(model_dir)["method"].startswith("lora")  # the model's stamp says how it was trained
    workspace.set_run(get_config("smoke"))  # 05 and 06, their set-up untouched
    assert workspace.saved_path("model", processor=processor) == model_dir
    workspace.set_run(get_config("smoke", model="openai/whisper-small"))  # another base model: not this run's
    with pytest.raises(RunMismatch, match="whisper-small"):
        workspace.saved_path("model")


def test_saving_replaces_what_an_earlier_run_left(ws, processor):
    """A full run after a LoRA run writes no adapter: the LoRA run's is removed, not stamped as this run's."""
    workspace.set_run(get_config("smoke", peft="lora"))
    with workspace.saving_to_workspace("model", "adapter", processor=processor) as (model_dir, adapter_dir):
        for folder in (model_dir, adapter_dir):
            folder.mkdir()
            (folder / "weights").write_text("lora")
    workspace.set_run(get_config("smoke"))
    with workspace.saving_to_workspace("model", "adapter", processor=processor) as (model_dir, adapter_dir):
        assert not model_dir.exists() and not adapter_dir.exists()
        model_dir.mkdir()
        (model_dir / "config.json").write_text("{}")
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.json"] and not adapter_dir.exists()
    assert read_stamp(model_dir)["method"] == "full" and read_stamp(adapter_dir) is None


def test_the_cli_refuses_to_resume_another_runs_checkpoints(tmp_path, corpus):
    from tests.test_cli import helpers_cli

    out = tmp_path / "out"
    first = helpers_cli("run", "--data", str(corpus), "--output-dir", str(out), "--max-steps", "1",
                        "--save-steps", "1", "--eval-steps", "1", "--batch-size", "2", "--max-train-samples", "2",
                        "--max-test-samples", "2", "--generation-max-length", "4", "--num-proc", "1")
    assert first.returncode == 0, first.stderr[-2000:]
    assert json.loads((out / ".stamps" / "checkpoints.stamp.json").read_text())["language"] == "<|si|>"
    again = helpers_cli("run", "--data", str(corpus), "--output-dir", str(out), "--language", "tamil",
                        "--max-steps", "2", "--num-proc", "1")
    assert again.returncode == 2
    assert "made by another run" in again.stderr and "'<|ta|>'" in again.stderr and "--no-resume" in again.stderr


def test_the_savers_and_loaders_stamp_and_check_by_themselves(ws, processor):
    workspace.set_run(get_config("smoke"))
    report = {"train": {"kept": 3}}
    path = workspace.save_to_workspace(report, "report", processor)  # a dict: an atomic JSON file
    assert json.loads(path.read_text()) == report and read_stamp(path) == read_stamp(workspace.artifact_path("report"))
    assert read_stamp(path).items() <= run_stamp(get_config("smoke"), processor).items()
    workspace.save_to_workspace(DatasetDict(test=Dataset.from_dict({"x": [4, 5]})), "prepared", processor)
    assert workspace.load_from_workspace("report", processor) == report
    assert workspace.load_from_workspace("prepared", processor)["test"]["x"][:] == [4, 5]
    with workspace.saving_to_workspace("model", "adapter", processor=processor) as (model_dir, adapter_dir):
        model_dir.mkdir()  # a full run writes no adapter: it stays unstamped
        (model_dir / "config.json").write_text("{}")
    assert read_stamp(model_dir) and read_stamp(adapter_dir) is None
    workspace.set_run(get_config("smoke", language="tamil"))
    for name in ("report", "prepared"):
        with pytest.raises(RunMismatch, match="'<\\|ta\\|>'"):
            workspace.load_from_workspace(name)


def small_trainer(prepared, output, mirror):
    from helpers.model import load_model_and_processor
    from helpers.training import build_trainer

    _, data, _ = prepared
    small = {"train": data["train"].select(range(2)), "validation": data["validation"].select(range(2)),
             "test": data["test"].select(range(2))}
    config = get_config("smoke", max_steps=1, eval_steps=1, save_steps=1, train_batch_size=2, eval_batch_size=2,
                        generation_max_length=4)
    model, processor = load_model_and_processor(config.model, config.language, config.task)
    return build_trainer(model, processor, small, config, output, callbacks=[mirror], disable_tqdm=True, report_to=[])


def test_another_runs_checkpoints_are_checked_where_resume_is_known(ws, processor, prepared, capsys):
    """04's trainer cell builds the Drive copies' callback for any run; ``train(trainer, resume=RESUME)`` decides.

    Resuming another run's checkpoints (a LoRA run after a full one) stops with what differs and how to start
    over; starting over deletes them, here and on Drive, and stamps the copies as this run's.
    """
    from helpers.runtime.mirror import CheckpointMirror
    from helpers.training import train

    workspace.set_run(get_config("smoke"))
    copies = workspace.artifact_path("training")
    workspace.checkpoint_copies_on_drive(processor).claim(resume=True, output_dir=ws / "runtime")  # a full run's
    (copies / "checkpoint-15").mkdir(parents=True)
    workspace.set_run(get_config("smoke", peft="lora"))
    mirror = workspace.checkpoint_copies_on_drive(processor)  # the trainer cell: no refusal here any more
    assert isinstance(mirror, CheckpointMirror) and mirror.folder == copies
    trainer = small_trainer(prepared, ws / "runtime", mirror)
    with pytest.raises(RunMismatch, match="method 'full'.*RESUME = False"):
        train(trainer, resume=True)
    assert (copies / "checkpoint-15").is_dir()  # nothing was touched
    train(trainer, resume=False)
    assert sorted(p.name for p in copies.glob("checkpoint-*")) == ["checkpoint-1"]  # not mixed with the old run's
    assert read_stamp(copies)["method"].startswith("lora")
    assert "Starting over: deleted 1 checkpoint(s)" in capsys.readouterr().out
    assert train(trainer, resume=True) is None  # this run's own copies resume (here: already finished)
    workspace.set_run(get_config("t4"))  # another profile works in its own folder: nothing to mix up
    assert workspace.checkpoint_copies_on_drive(processor).folder.parent.name == "t4"


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
    def resume():  # what train(trainer, resume=True) does first with the trainer cell's Drive copies
        workspace.checkpoint_copies_on_drive(processor).claim(resume=True, output_dir=ws / "runtime")

    workspace.set_run(get_config("smoke"))
    resume()
    (workspace.artifact_path("training") / "checkpoint-100").mkdir(parents=True)
    stamp = read_stamp(workspace.artifact_path("training"))
    assert stamp["seed"] == get_config("smoke").seed and stamp["learning_rate"] == get_config("smoke").learning_rate
    workspace.set_run(get_config("smoke", learning_rate=3e-5))
    with pytest.raises(RunMismatch, match="learning_rate"):
        resume()
    workspace.set_run(get_config("smoke", seed=7))
    with pytest.raises(RunMismatch, match="seed 42 \\(this run: 7\\)"):
        resume()
