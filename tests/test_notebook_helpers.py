"""helpers.workspace and helpers.notebook: the hand-off between notebooks, stage-input checks, tables, login."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict, load_from_disk

from helpers import notebook, workspace as ws
from helpers.config import CourseError, get_config
from helpers.data import load_common_voice, read_cv_tsv
from helpers.features import prepare_dataset
from helpers.training import training_arguments


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    folder = tmp_path / "workspace" / "smoke"  # each profile has its own folder in the workspace
    folder.mkdir(parents=True)
    return folder


def test_colab_links_are_built_from_the_one_repository_url():
    url = notebook.colab_url("04_train.ipynb")
    assert url == ("https://colab.research.google.com/github/whisper-course/whisper-finetune-companion"
                   "/blob/main/notebooks/04_train.ipynb")
    assert notebook.colab_badge("04_train.ipynb").endswith(f"]({url})")


@pytest.mark.parametrize("artifact, maker", [("loaded", "01_load.ipynb"), ("prepared", "02_preprocess.ipynb"),
                                             ("model", "04_train.ipynb"), ("results", "05_evaluate.ipynb")])
def test_a_missing_stage_input_names_the_notebook_that_makes_it(workspace, artifact, maker):
    with pytest.raises(CourseError, match=f"run {maker} first") as raised:
        ws.require(artifact)
    assert str(workspace) in str(raised.value)
    (workspace / ws.ARTIFACTS[artifact][0]).mkdir(parents=True)  # an empty folder is still missing
    with pytest.raises(CourseError, match=maker):
        ws.require(artifact)


def test_require_returns_a_present_artifact(workspace):
    path = workspace / "results.json"
    path.write_text("{}")
    assert ws.require("results") == path
    with pytest.raises(CourseError, match="run 99_custom.ipynb first"):
        ws.require("custom.bin", made_by="99_custom.ipynb")


def test_a_rerun_stage_replaces_its_dataset_even_while_the_old_one_is_open(workspace):
    first = ws.save_dataset(DatasetDict(train=Dataset.from_dict({"x": [1, 2, 3]})), "prepared")
    opened = load_from_disk(str(first))  # memory-mapped, as in a notebook that loaded it before re-running
    ws.save_dataset(DatasetDict(train=Dataset.from_dict({"x": [7]})), "prepared")
    assert load_from_disk(str(ws.require("prepared")))["train"]["x"][:] == [7]
    assert opened["train"].num_rows == 3
    assert sorted(p.name for p in workspace.iterdir()) == ["prepared"]  # no .new/.old folders left behind


def test_embedded_clips_survive_the_originals_and_missing_ones_are_counted(tmp_path, workspace, corpus, processor):
    # A Common Voice-shaped copy of a few bundled clips, plus a row naming a clip that does not exist.
    folder = tmp_path / "cv"
    (folder / "clips").mkdir(parents=True)
    rows = read_cv_tsv(corpus / "train.tsv")[:3]
    for row in rows:
        shutil.copy(corpus / "clips" / row["path"], folder / "clips" / row["path"])
    header = "client_id\tpath\tsentence\n"
    body = "".join(f"c\t{r['path']}\t{r['sentence']}\n" for r in rows) + "c\tmissing.mp3\tනැති ගොනුව.\n"
    (folder / "train.tsv").write_text(header + body, encoding="utf-8")
    (folder / "test.tsv").write_text(header + f"c\t{rows[0]['path']}\t{rows[0]['sentence']}\n", encoding="utf-8")

    splits = load_common_voice(folder)
    saved = ws.save_dataset(ws.embed_audio(splits), "loaded")
    shutil.rmtree(folder)  # as a Colab disk after a disconnect: only the workspace copy is left

    loaded = load_from_disk(str(saved))
    audio = loaded["train"]["audio"][:]
    assert [len(a["bytes"] or b"") > 1000 for a in audio] == [True, True, True, False]
    assert audio[3]["path"].endswith("missing.mp3")
    prepared, report = prepare_dataset(loaded, processor)
    assert report["train"]["kept"] == 3 and report["train"]["dropped_by_reason"] == {"file_not_found": 1}
    assert prepared["train"]["sentence"][:] == [r["sentence"] for r in rows]


def test_subsample_keeps_the_first_clips_like_the_cli():
    splits = DatasetDict(train=Dataset.from_dict({"x": list(range(10))}), test=Dataset.from_dict({"x": [1, 2]}))
    config = get_config("smoke", max_train_samples=4, max_test_samples=5)
    from helpers.data import subsample

    smaller = subsample(splits, config.max_train_samples, config.max_test_samples)
    assert smaller["train"]["x"][:] == [0, 1, 2, 3] and smaller["test"].num_rows == 2


def test_training_arguments_table_explains_each_argument_with_this_runs_value():
    config = get_config("smoke")
    args = training_arguments(config, "/tmp/whisper-course-args")
    table = notebook.explain_training_arguments(args).data
    for name in ("per_device_train_batch_size", "learning_rate", "warmup_steps", "max_steps", "eval_steps",
                 "predict_with_generate", "generation_max_length", "load_best_model_at_end", "push_to_hub"):
        assert f"| `{name}` | {getattr(args, name)} |" in table
    assert "| `output_dir` | whisper-course-args |" in table
    assert "| `lr_scheduler_type` | linear |" in table or "| `lr_scheduler_type` | constant_with_warmup |" in table
    assert ("`activation_checkpointing`" in table) != ("`gradient_checkpointing`" in table)  # only the one in use


def test_best_evaluation_is_the_checkpoint_the_trainer_kept():
    history = [{"loss": 3.0, "step": 5}, {"eval_wer": 80.0, "step": 10}, {"eval_wer": 60.0, "step": 20},
               {"eval_wer": 70.0, "step": 30}, {"eval_wer": 60.0, "step": 40}]
    assert notebook.best_evaluation(history)["step"] == 20  # a tie is no improvement for the trainer
    assert notebook.best_evaluation(history, best_step=40)["step"] == 40
    with pytest.raises(CourseError, match="eval_steps"):
        notebook.best_evaluation([{"loss": 3.0, "step": 5}])


def test_model_card_labels_hide_local_paths_and_find_the_language():
    smoke = get_config("smoke")
    assert notebook.source_label(smoke.data) == "cv-mini/si"
    assert notebook.source_label("/home/someone/.cache/whisper-course/whisper-smoke", keep=1) == "whisper-smoke"
    assert notebook.source_label("mdc:common-voice-dv") == "common-voice-dv"
    assert notebook.source_label("openai/whisper-small") == "openai/whisper-small"
    assert notebook.card_language(smoke) == "si"
    assert notebook.card_language(get_config("t4", data="mdc:common-voice-dv")) == "dv"
    assert notebook.card_language(get_config("t4", data="someone/my-speech")) == "si"  # Whisper's 'sinhalese'


def test_export_writes_the_model_and_its_card(tmp_path):
    from huggingface_hub import ModelCard

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    card = ModelCard("---\nlanguage: si\n---\n# my model\n")
    out = notebook.export_model(model_dir, card, tmp_path / "export" / "whisper-smoke")
    assert (out / "config.json").is_file()
    assert ModelCard.load(out / "README.md").data.language == "si"


def test_scores_table_puts_models_side_by_side():
    table = notebook.scores_table({"zero-shot": {"wer": 470.5, "n": 24}, "fine-tuned": {"wer": 96.25, "n": 24}}).data
    assert "| metric (%) | zero-shot | fine-tuned |" in table
    assert "| wer | 470.50 | 96.25 |" in table and "| n | 24 | 24 |" in table


def test_login_without_a_token_goes_on_without_asking(monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv(notebook.NONINTERACTIVE_ENV, "1")
    monkeypatch.setattr("helpers.hub._cached_token", lambda: None)
    assert not notebook.interactive()
    notebook.login()
    assert "continuing without logging in" in capsys.readouterr().out


def test_login_with_a_token_never_shows_it(monkeypatch, capsys):
    fake = "hf_" + "Zx9" * 12
    monkeypatch.setenv("HF_TOKEN", fake)
    notebook.login()
    out = capsys.readouterr().out
    assert "token was found" in out and fake not in out and fake[:8] not in out


def test_setup_prints_the_profile_and_workspace_and_quiets_the_libraries(workspace, monkeypatch, capsys):
    import datasets
    import transformers

    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    monkeypatch.setenv(notebook.NONINTERACTIVE_ENV, "1")
    verbosity = transformers.logging.get_verbosity()
    try:
        config = notebook.setup(max_steps=7)
        out = capsys.readouterr().out
        assert config.profile == "smoke" and config.max_steps == 7
        assert "Profile 'smoke' (COURSE_PROFILE=smoke is set)" in out and f"Workspace: {workspace}" in out
        assert transformers.logging.get_verbosity() == transformers.logging.ERROR
        assert not datasets.is_progress_bar_enabled()  # a batch run: saved bars would show "0%"
    finally:
        transformers.logging.set_verbosity(verbosity)
        datasets.enable_progress_bars()
        transformers.utils.logging.enable_progress_bar()
