"""English-only checkpoints (``*.en``) get labels without language or task tokens on every path.

The stand-in is ``build_smoke_model(english_only=True)``: GPT-2's vocabulary (``<|endoftext|>`` 50256,
``<|startoftranscript|>`` 50257, ``<|notimestamps|>`` 50362) and a generation config without languages, as
openai/whisper-*.en. Its labels must start ``<|startoftranscript|><|notimestamps|>`` in the notebooks'
path (``load_processor`` + ``prepare_splits``, notebooks 02/03), in ``load_model_and_processor`` and in
``python -m helpers prepare``, however the language is set. ``None`` also clears a config field now.
"""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from helpers.config import SMOKE_MODEL_DIR, CourseConfig, get_config
from helpers.model import is_english_only, load_model_and_processor, load_processor
from tools.smoke_model import build_smoke_model

# Ids in the *.en vocabulary (openai-whisper's gpt2.tiktoken + Whisper's special tokens).
EN_END_OF_TEXT, EN_START, EN_NO_TIMESTAMPS = 50256, 50257, 50362
EN_LANGUAGE_AND_TASK_IDS = set(range(50258, 50360))  # <|en|> ... <|su|>, <|translate|>, <|transcribe|>
NOTE = "is English-only; language 'sinhalese' and task 'transcribe' are ignored."


@pytest.fixture(scope="module")
def english_model(tmp_path_factory):
    return build_smoke_model(tmp_path_factory.mktemp("english-only") / "whisper-smoke.en", english_only=True)


@pytest.fixture(scope="module")
def few_clips(corpus):
    from helpers.data import load_common_voice

    splits = load_common_voice(str(corpus))
    return {"train": splits["train"].select(range(4)), "test": splits["test"].select(range(2))}


def assert_english_only_labels(prepared, processor) -> None:
    tokenizer = processor.tokenizer
    assert tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|notimestamps|>"]) == [EN_START, EN_NO_TIMESTAMPS]
    rows = [row for split in prepared.values() for row in split]
    assert rows
    for row in rows:
        labels = row["labels"]
        assert labels[:2] == [EN_START, EN_NO_TIMESTAMPS] and labels[-1] == EN_END_OF_TEXT
        assert not set(labels) & EN_LANGUAGE_AND_TASK_IDS, labels[:6]
        assert tokenizer.decode(labels[2:-1]) == row["sentence"].strip()


def test_english_only_checkpoints_are_recognised(english_model, tmp_path):
    assert is_english_only(str(english_model))
    assert not is_english_only(str(SMOKE_MODEL_DIR))
    # Without a generation config the vocabulary decides (every *.en tokenizer has language tokens too).
    for source, expected in ((english_model, True), (SMOKE_MODEL_DIR, False)):
        copy = shutil.copytree(source, tmp_path / source.name)
        (copy / "generation_config.json").unlink()
        assert is_english_only(str(copy)) is expected


def test_notebook_path_gives_labels_without_language(english_model, few_clips, capsys):
    from helpers.preparation import prepare_splits

    config = get_config("smoke", model=str(english_model))  # notebooks 02/03: the profile's language stays
    assert config.language == "sinhalese"
    processor = load_processor(config.model, config.language, config.task)
    assert capsys.readouterr().out.count(NOTE) == 1
    prepared, report = prepare_splits(few_clips, processor)
    assert report["train"]["kept"] == 4
    assert_english_only_labels(prepared, processor)


def test_model_and_processor_agree_and_note_once(english_model, capsys):
    model, processor = load_model_and_processor(str(english_model), "sinhalese", "transcribe")
    assert capsys.readouterr().out.count(NOTE) == 1  # one decision, one note
    assert model.generation_config.language is None and model.generation_config.task is None
    assert processor.tokenizer.prefix_tokens == [EN_START, EN_NO_TIMESTAMPS]
    for language, task in ((None, None), ("english", "transcribe")):
        assert load_processor(str(english_model), language, task).tokenizer.prefix_tokens == [EN_START, EN_NO_TIMESTAMPS]
    assert NOTE.split(";")[0] not in capsys.readouterr().out  # nothing to ignore: no note


def test_multilingual_checkpoints_keep_language_and_task(capsys):
    tokenizer = load_processor(str(SMOKE_MODEL_DIR), "sinhalese", "transcribe").tokenizer
    ids = tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|si|>", "<|transcribe|>", "<|notimestamps|>"])
    assert tokenizer.prefix_tokens == ids == [50258, 50322, 50359, 50363]
    # None leaves the language out (Whisper then detects it), even when the tokenizer was saved with one.
    assert load_processor(str(SMOKE_MODEL_DIR), None, "transcribe").tokenizer.prefix_tokens == [50258, 50359, 50363]
    assert "English-only" not in capsys.readouterr().out


def test_prepare_command_with_an_english_only_checkpoint(english_model, corpus, tmp_path, capsys, monkeypatch):
    from helpers import cli
    from helpers.cli import main

    made = {}
    prepare_splits = cli.prepare_splits

    def keep(splits, processor, *args, **kwargs):  # what prepare computes, to look at its labels
        made["prepared"], report = prepare_splits(splits, processor, *args, **kwargs)
        made["processor"] = processor
        return made["prepared"], report

    monkeypatch.setattr(cli, "prepare_splits", keep)  # the real one still runs; the name the command calls
    code = main(["prepare", "--profile", "smoke", "--model", str(english_model), "--language", "sinhalese",
                 "--data", str(corpus), "--output-dir", str(tmp_path), "--max-train-samples", "4",
                 "--max-test-samples", "2", "--num-proc", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert captured.out.count(NOTE) == 1 and (tmp_path / "report.json").is_file()
    assert_english_only_labels(made["prepared"], made["processor"])


def test_none_clears_a_field_and_flags_not_given_change_nothing():
    from helpers.cli import _parser, config_from_args

    assert get_config("t4").language == "sinhalese"
    config = get_config("t4", language=None)
    assert config.language is None and config.task == "transcribe"
    assert get_config("smoke", language=None, task=None).task is None
    assert get_config("smoke").replace(language=None).language is None
    with pytest.raises(TypeError, match="max_steps cannot be None"):
        get_config("smoke", max_steps=None)
    # The command line passes only the flags given: the rest keep the profile's values.
    from_cli = config_from_args(_parser().parse_args(["prepare", "--profile", "smoke"]))
    assert dataclasses.asdict(from_cli) == dataclasses.asdict(get_config("smoke"))
    cleared = config_from_args(_parser().parse_args(["prepare", "--profile", "smoke", "--language", "None"]))
    assert cleared.language is None and cleared.task == "transcribe"
    assert isinstance(cleared, CourseConfig)
