"""What the notebooks call: helpers.runtime.workspace (the hand-off), helpers.notebook.session (set-up, login), helpers.notebook.display
(tables, the helpers' own source, named metrics), helpers.extras.sharing (card labels, export, a long recording)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset, DatasetDict, load_from_disk

from helpers.config import get_config
from helpers.data import load_common_voice, read_cv_tsv, subsample
from helpers.extras import sharing
from helpers.notebook import display, session
from helpers.notebook.course import COURSE_FIGURES, colab_badge, colab_url
from helpers.preparation import prepare_dataset, prepare_splits
from helpers.runtime import colab
from helpers.runtime import workspace as ws
from helpers.runtime.errors import CourseError
from helpers.training import training_arguments


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    folder = tmp_path / "workspace" / "smoke"  # each profile has its own folder in the workspace
    folder.mkdir(parents=True)
    ws.set_run(get_config("smoke"))  # as a notebook's set-up cell does
    return folder


@pytest.fixture
def restore_libraries():
    """setup() quiets transformers and datasets and swaps tqdm.auto's bar: undo it for the other tests."""
    import datasets
    import tqdm.auto
    import transformers

    verbosity, bar = transformers.logging.get_verbosity(), (tqdm.auto.tqdm, tqdm.auto.trange)
    yield
    transformers.logging.set_verbosity(verbosity)
    datasets.enable_progress_bars()
    tqdm.auto.tqdm, tqdm.auto.trange = bar


def test_colab_links_open_the_pinned_release_of_the_one_repository():
    url = colab_url("04_train.ipynb")
    assert url == ("https://colab.research.google.com/github/whisper-course/whisper-finetune-companion"
                   "/blob/v0.1.0/notebooks/04_train.ipynb")
    assert colab_badge("04_train.ipynb").endswith(f"]({url})")


@pytest.mark.parametrize("artifact, maker", [("loaded", "01_load.ipynb"), ("prepared", "02_preprocess.ipynb"),
                                             ("model", "04_train.ipynb"), ("results", "05_evaluate.ipynb")])
def test_a_missing_stage_input_names_the_notebook_that_makes_it(workspace, artifact, maker):
    with pytest.raises(CourseError, match=f"run {maker} first") as raised:
        ws.saved_path(artifact)
    assert str(workspace) in str(raised.value)
    (workspace / ws.ARTIFACTS[artifact][0]).mkdir(parents=True)  # an empty folder is still missing
    with pytest.raises(CourseError, match=maker):
        ws.saved_path(artifact)


def test_the_workspace_needs_the_set_up_cell_first(workspace):
    ws.set_run(None)  # a kernel where the set-up cell did not run
    with pytest.raises(CourseError, match=r"set-up cell \(setup\(\)\) first"):
        ws.saved_path("results")


def test_saved_path_returns_a_present_artifact(workspace):
    path = workspace / "results.json"
    path.write_text("{}")
    assert ws.saved_path("results") == path
    with pytest.raises(CourseError, match="run 99_custom.ipynb first"):
        ws.saved_path("custom.bin", made_by="99_custom.ipynb")


def test_a_rerun_stage_replaces_its_dataset_even_while_the_old_one_is_open(workspace):
    first = ws.save_to_workspace(DatasetDict(train=Dataset.from_dict({"x": [1, 2, 3]})), "prepared")
    opened = load_from_disk(str(first))  # memory-mapped, as in a notebook that loaded it before re-running
    ws.save_to_workspace(DatasetDict(train=Dataset.from_dict({"x": [7]})), "prepared")
    assert load_from_disk(str(ws.saved_path("prepared")))["train"]["x"][:] == [7]
    assert opened["train"].num_rows == 3
    assert sorted(p.name for p in workspace.iterdir()) == [".stamps", "prepared"]  # no .new/.old folders left behind


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
    # a dev split, so the validation slice comes from it and train keeps all four rows
    (folder / "dev.tsv").write_text(header + f"c\t{rows[0]['path']}\t{rows[0]['sentence']}\n", encoding="utf-8")
    (folder / "test.tsv").write_text(header + f"c\t{rows[0]['path']}\t{rows[0]['sentence']}\n", encoding="utf-8")

    splits = load_common_voice(folder)
    saved = ws.save_to_workspace(ws.embed_audio(splits), "loaded")
    shutil.rmtree(folder)  # as a Colab disk after a disconnect: only the workspace copy is left

    loaded = load_from_disk(str(saved))
    audio = loaded["train"]["audio"][:]
    assert [len(a["bytes"] or b"") > 1000 for a in audio] == [True, True, True, False]
    assert audio[3]["path"].endswith("missing.mp3")
    prepared, report = prepare_splits(loaded, processor)
    assert report["train"]["kept"] == 3 and report["train"]["dropped_by_reason"] == {"file_not_found": 1}
    assert prepared["train"]["sentence"][:] == [r["sentence"] for r in rows]


def test_the_preparation_function_02_shows_keeps_and_drops_one_clip_at_a_time(corpus, processor):
    row = read_cv_tsv(corpus / "train.tsv")[0]
    audio, sentence = str(corpus / "clips" / row["path"]), row["sentence"]
    ids = processor.tokenizer(sentence).input_ids
    example = {"audio": audio, "sentence": sentence, "labels": ids}  # one row, as the course's prepare_dataset takes
    kept = prepare_dataset(example)
    assert kept["drop_reason"] == "" and kept["labels"] == ids and 1.0 < kept["duration"] < 30.0
    assert kept["audio_16k"][:4] == b"fLaC"
    too_long = prepare_dataset(example, max_label_tokens=len(ids) - 1)
    assert too_long["drop_reason"] == "too_many_label_tokens" and too_long["labels"] == []
    assert prepare_dataset({**example, "sentence": "  "})["drop_reason"] == "empty_transcript"
    no_words = {**example, "sentence": "?!... —"}
    assert prepare_dataset(no_words)["drop_reason"] == "no_words_transcript"  # nothing to learn or score
    missing = {**example, "audio": str(corpus / "clips" / "missing.mp3")}
    assert prepare_dataset(missing)["drop_reason"] == "file_not_found"


def test_subsample_keeps_the_first_clips_like_the_cli():
    splits = DatasetDict(train=Dataset.from_dict({"x": list(range(10))}), test=Dataset.from_dict({"x": [1, 2]}))
    config = get_config("smoke", max_train_samples=4, max_test_samples=5)
    smaller = subsample(splits, config.max_train_samples, config.max_test_samples)
    assert smaller["train"]["x"][:] == [0, 1, 2, 3] and smaller["test"].num_rows == 2


def test_training_arguments_table_shows_the_course_s_value_beside_this_run_s():
    from helpers.training import COURSE_TRAINING_ARGUMENTS

    args = training_arguments(get_config("smoke"), "/tmp/whisper-course-args")
    table = display.explain_training_arguments(args).data
    rows = {line.split(" | ")[0].strip("| `"): line.split(" | ")[1:3] for line in table.splitlines()[2:]}
    # The smoke profile's values differ from the course's: each in bold beside the course's.
    assert rows["per_device_train_batch_size"] == ["16", f"**{args.per_device_train_batch_size}**"] != ["16", "16"]
    assert rows["max_steps"] == ["500", f"**{args.max_steps}**"] and rows["output_dir"][1] == "**whisper-course-args**"
    assert rows["learning_rate"][0] == "1e-05" and rows["metric_for_best_model"] == ["wer", "**wer_words**"]
    for name in ("predict_with_generate", "load_best_model_at_end", "greater_is_better"):  # the same: not bold
        assert rows[name] == [str(COURSE_TRAINING_ARGUMENTS[name])] * 2
    assert rows["eval_strategy"] == ["steps (`evaluation_strategy`)", "steps"]  # the course's name beside today's
    assert rows["remove_unused_columns"] == ["not set: True", "**False**"]  # the default the course's call gets
    assert ("activation_checkpointing" in rows) != ("gradient_checkpointing" in rows)  # only the one in use


def test_the_t4_run_keeps_the_course_s_recipe():
    from helpers.training import COURSE_TRAINING_ARGUMENTS

    args = training_arguments(get_config("t4"), "/tmp/whisper-course-args")
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "lr_scheduler_type",
                 "warmup_steps", "max_steps", "per_device_eval_batch_size", "generation_max_length", "logging_steps"):
        assert getattr(getattr(args, name), "value", getattr(args, name)) == COURSE_TRAINING_ARGUMENTS[name], name


def test_best_evaluation_is_the_checkpoint_the_trainer_kept():
    history = [{"loss": 3.0, "step": 5}, {"eval_wer_words": 80.0, "step": 10}, {"eval_wer_words": 60.0, "step": 20},
               {"eval_wer_words": 70.0, "step": 30}, {"eval_wer_words": 60.0, "step": 40}]
    assert display.best_evaluation(history)["step"] == 20  # a tie is no improvement for the trainer
    assert display.best_evaluation(history, best_step=40)["step"] == 40
    with pytest.raises(CourseError, match="eval_steps"):
        display.best_evaluation([{"loss": 3.0, "step": 5}])


def test_the_evaluations_table_puts_the_courses_normalised_wer_beside_ours():
    history = [{"loss": 3.0, "step": 5}, {"eval_loss": 2.5, "eval_wer_words": 80.0, "eval_wer": 41.5,
                                          "eval_wer_ortho": 99.0, "eval_cer_words": 30.0, "step": 10},
               {"eval_loss": 2.0, "eval_wer_words": 60.0, "eval_wer": 22.25, "eval_wer_ortho": 90.0,
                "eval_cer_words": 20.0, "step": 20}]
    table = display.evaluations_table(history).data
    assert "| step | test loss | `wer` % | `wer_words` % | `wer_ortho` % | `cer_words` % |" in table
    assert "| 20 (kept) | 2.00 | 22.25 | 60.00 | 90.00 | 20.00 |" in table and "| 10 | 2.50 | 41.50 |" in table


def test_scores_table_names_every_metric_and_shows_the_courses_figures():
    table = display.scores_table({"zero-shot": {"wer_words": 470.5, "wer": 130.0, "n": 24},
                                  "fine-tuned": {"wer_words": 96.25, "wer": 50.0, "n": 24}}).data
    assert "| metric (%) | zero-shot | fine-tuned | course zero-shot (CV13) | course fine-tuned (CV13) |" in table
    basic = next(line for line in table.splitlines() if line.startswith("| `wer`:"))
    course = COURSE_FIGURES["zero-shot"]["wer"], COURSE_FIGURES["fine-tuned"]["wer"]
    assert "BasicTextNormalizer" in basic and basic.endswith(f"| 130.00 | 50.00 | {course[0]:.2f} | {course[1]:.2f} |")
    ours = next(line for line in table.splitlines() if line.startswith("| `wer_words`:"))
    assert "marks kept" in ours and "| 470.50 | 96.25 | – | – |" in ours
    assert "| 24 | 24 | – | – |" in table


def test_a_smoke_result_says_it_is_noise_and_what_the_real_run_reaches():
    smoke = display.real_run_note(get_config("smoke")).data
    assert "Smoke run" in smoke and "random weights" in smoke and "14.1 %" in smoke and "125.7 %" in smoke
    assert "noise" in display.real_run_note(get_config("smoke"), about="transcripts").data
    real = display.real_run_note(get_config("t4", data="common-voice:dv")).data
    assert "Smoke" not in real and "63.9 %" in real and "not CV13" in real
    offline = display.real_run_note(get_config("offline")).data
    assert "Offline run" in offline and "whisper-base" in offline and "encoder frozen" in offline
    assert "Latin letters" in offline and "not comparable" in offline and "Smoke" not in offline


def test_the_helpers_own_source_is_shown_with_the_lines_that_matter_marked():
    source = display.show_source(prepare_dataset, marks={"duration > MAX_AUDIO_SECONDS": "the course's filter"})
    text = repr(source)
    marked = [line for line in text.splitlines() if line.startswith(">>")]
    assert len(marked) == 1 and "duration > MAX_AUDIO_SECONDS" in marked[0]
    assert text.splitlines()[0] == "# helpers.preparation.prepare_dataset" and "the course's filter" in text
    page = source._repr_html_()
    assert "prepare_dataset" in page and "<b>line 15</b>: the course&#x27;s filter" in page
    highlighted = page.split('<span style="background-color: #ffffcc">')  # the default style's highlight
    assert len(highlighted) == 2 and "MAX_AUDIO_SECONDS" in highlighted[1].split("\n")[0]
    with pytest.raises(ValueError, match="on 0 lines"):
        display.show_source(prepare_dataset, marks={"a line that is not there": "?"})
    with pytest.raises(ValueError, match="not exactly one"):
        display.show_source(prepare_dataset, marks={"drop_reason": "on several lines"})


def test_model_card_labels_hide_local_paths_and_find_the_language():
    smoke = get_config("smoke")
    assert sharing.source_label(smoke.data) == "cv-mini/si"
    assert sharing.source_label("/home/someone/.cache/whisper-course/whisper-smoke", keep=1) == "whisper-smoke"
    assert sharing.source_label("mdc:common-voice-dv") == "common-voice-dv"
    assert sharing.source_label("openai/whisper-small") == "openai/whisper-small"
    assert sharing.card_language(smoke) == "si"
    assert sharing.card_language(get_config("t4", data="common-voice:dv")) == "dv"
    assert sharing.card_language(get_config("t4", data="mdc:common-voice-dv")) == "dv"
    assert sharing.card_language(get_config("t4", data="someone/my-speech")) == "si"  # Whisper's 'sinhalese'


def test_export_writes_the_model_and_its_card(tmp_path):
    from huggingface_hub import ModelCard

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    card = ModelCard("---\nlanguage: si\n---\n# my model\n")
    out = sharing.export_model(model_dir, card, tmp_path / "export" / "whisper-smoke")
    assert (out / "config.json").is_file()
    assert ModelCard.load(out / "README.md").data.language == "si"


def test_a_long_recording_is_longer_than_whispers_window_and_made_of_the_clips():
    clips = [np.full(16000 * 7, 0.1, np.float32), np.full(16000 * 5, -0.2, np.float32)]
    wave, used = sharing.long_recording(clips, seconds=40.0)
    assert len(wave) >= 40 * 16000 and used == 7  # 7 s, 5 s, 7 s, ... each with half a second of silence
    assert wave[0] == np.float32(0.1) and wave[7 * 16000 + 8000] == np.float32(-0.2)


@pytest.fixture
def hub_online(monkeypatch):
    """Online mode, with huggingface_hub's endpoint a local stand-in that accepts connections."""
    from huggingface_hub import constants

    from tests.standins import HubStandIn

    with HubStandIn(token="hf_unused") as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        yield hub


def test_login_offline_without_a_token_says_pushing_is_skipped_and_never_prompts(monkeypatch, capsys, request):
    """As a new user runs 00 in a plain kernel, offline: the OAuth prompt would die with OfflineModeIsEnabled."""
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv(colab.NONINTERACTIVE_ENV, raising=False)
    monkeypatch.setattr("helpers.services.hub._cached_token", lambda: None)
    monkeypatch.setattr(session, "interactive", lambda: True)  # a person is looking

    def prompt(**kwargs):
        raise AssertionError("notebook_login() was called")

    monkeypatch.setattr(huggingface_hub, "notebook_login", prompt)
    session.login()
    assert "pushing will be skipped" in capsys.readouterr().out
    request.getfixturevalue("hub_online")  # online: now the course's login is offered
    with pytest.raises(AssertionError, match="notebook_login"):
        session.login()


def test_login_online_in_a_batch_run_goes_on_without_asking(monkeypatch, capsys, hub_online):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv(colab.NONINTERACTIVE_ENV, "1")
    monkeypatch.setattr("helpers.services.hub._cached_token", lambda: None)
    assert not colab.interactive()
    session.login()
    assert "continuing without logging in" in capsys.readouterr().out


def test_login_with_a_token_never_shows_it(monkeypatch, capsys):
    fake = "hf_" + "Zx9" * 12
    monkeypatch.setenv("HF_TOKEN", fake)
    session.login()
    out = capsys.readouterr().out
    assert "token was found" in out and fake not in out and fake[:8] not in out


def test_setup_prints_the_profile_and_workspace_and_quiets_the_libraries(workspace, monkeypatch, capsys,
                                                                          restore_libraries):
    import tqdm.auto
    import tqdm.std
    import transformers

    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    config = session.setup(max_steps=7)
    out = capsys.readouterr().out
    assert config.profile == "smoke" and config.max_steps == 7
    assert "Profile 'smoke' (COURSE_PROFILE=smoke is set)" in out and f"Workspace: {workspace}" in out
    assert "Course code: helpers" in out
    assert transformers.logging.get_verbosity() == transformers.logging.ERROR
    # Outside Colab, text bars: a saved copy shows their last frame, not a widget's first ("0%").
    assert tqdm.auto.tqdm is tqdm.std.tqdm


def test_the_short_run_has_fewer_steps_and_clips_and_a_folder_of_its_own(workspace, monkeypatch, capsys,
                                                                          restore_libraries):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    config = session.setup(short_run=True, max_steps=12)  # what the learner sets still wins
    expected = {**session.SHORT_RUN["smoke"], "max_steps": 12}
    assert {key: getattr(config, key) for key in expected} == expected
    assert config.warmup_steps == 1  # the recipe's warm-up follows the shorter run (a tenth of it)
    short = workspace.parent / session.SHORT_RUN_FOLDER / "smoke"
    assert f"Workspace: {short}" in capsys.readouterr().out
    assert ws.artifact_path("prepared") == short / "prepared"
    session.setup(short_run=True)  # run twice in one kernel: still the same folder, not short-run/short-run
    assert ws.artifact_path("prepared") == short / "prepared"
    assert set(session.SHORT_RUN) == {"smoke", "t4", "offline", "cpu"}
    assert session.SHORT_RUN["t4"]["max_steps"] < get_config("t4").max_steps
