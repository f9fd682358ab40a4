"""CTranslate2 export (``helpers.extras.ctranslate2``): the converted model transcribes as transformers does.

Both decode greedily from the same log-mel features and the same prompt tokens, so every generated token
must be the same. The smoke model (what the CLI trains in CI) is converted as the issue asks, but being
random it says the same thing for every clip; OpenAI's real tiny.en gives each clip its own transcript,
which is the comparison that can catch a wrong tensor. int8 is checked for size and for still transcribing.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from helpers.audio import from_int16
from helpers.config import SMOKE_MODEL_DIR
from helpers.extras.ctranslate2 import CT2Whisper, export_ctranslate2, transcribe_ct2
from helpers.runtime.errors import CourseError
from tests.support import pretrained_model

pytest.importorskip("ctranslate2", reason="pip install -e '.[ct2]' (the extra the export needs)")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny_en() -> Path:
    return pretrained_model("tiny.en")


@pytest.fixture(scope="module")
def test_clips(corpus):
    from helpers.data import load_common_voice

    return load_common_voice(str(corpus))["test"]


def _both(model_dir: Path, language: str | None, test_clips, max_length: int, tmp: Path):
    """(transformers' transcripts through our evaluation, CTranslate2's, the CT2 folder) on every test clip."""
    from helpers.evaluation import transcribe
    from helpers.model import load_model_and_processor
    from helpers.preparation import prepare_splits

    task = "transcribe" if language else None
    model, processor = load_model_and_processor(str(model_dir), language, task)
    prepared = prepare_splits({"test": test_clips}, processor, num_proc=1)[0]["test"]
    assert len(prepared) == len(test_clips) == 24
    ours = transcribe(model, processor, prepared, batch_size=8, max_length=max_length)
    ct2_dir = export_ctranslate2(model_dir, tmp / "ct2", quantization=None)
    audio = [from_int16(row["audio_16k"]) for row in prepared]
    theirs = CT2Whisper(ct2_dir, threads=1).transcribe(audio, language, task, max_length, batch_size=8)
    return ours, theirs, ct2_dir, audio


def test_smoke_model_ct2_transcripts_equal_transformers(test_clips, tmp_path):
    ours, theirs, ct2_dir, _ = _both(SMOKE_MODEL_DIR, "sinhalese", test_clips, 16, tmp_path)
    assert ours == theirs
    assert all(len(text) > 10 for text in ours)  # 16 tokens of something, not two empty lists
    # What faster-whisper reads beside model.bin.
    for name in ("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json"):
        assert (ct2_dir / name).is_file(), name
    assert json.loads((ct2_dir / "preprocessor_config.json").read_text())["feature_size"] == 80


@pytest.fixture(scope="module")
def tiny_en(test_clips, tmp_path_factory):
    return _both(_tiny_en(), None, test_clips, 48, tmp_path_factory.mktemp("tiny-en"))


def test_tiny_en_ct2_transcripts_equal_transformers_clip_by_clip(tiny_en, test_clips):
    from helpers.metrics import wer_scores

    ours, theirs, ct2_dir, audio = tiny_en
    mismatched = [(a, b) for a, b in zip(ours, theirs, strict=True) if a != b]
    assert not mismatched, mismatched[:3]
    assert len(set(ours)) >= 20  # real, different transcripts for (nearly) every clip
    english = [i for i, row in enumerate(test_clips) if row["sentence"].isascii()]
    scores = wer_scores([ours[i] for i in english], [test_clips[i]["sentence"] for i in english])
    print("tiny.en (transformers = CTranslate2) on the English test clips:", scores)
    assert scores["wer_words"] < 60, scores  # the real model: a mis-converted one gives about 100
    # One clip, through the convenience call the CLI and notebook 06 use.
    assert transcribe_ct2(ct2_dir, audio[english[0]], None, None, 48) == ours[english[0]]


def test_int8_export_is_smaller_and_still_transcribes(tiny_en, test_clips, tmp_path):
    from helpers.metrics import wer_scores

    _, _, full, audio = tiny_en
    small = export_ctranslate2(_tiny_en(), tmp_path / "int8", quantization="int8")
    ratio = (small / "model.bin").stat().st_size / (full / "model.bin").stat().st_size
    assert 0.2 < ratio < 0.35, ratio  # int8 weights, a float32 scale per row, a few float vectors
    english = [i for i, row in enumerate(test_clips) if row["sentence"].isascii()]
    texts = transcribe_ct2(small, [audio[i] for i in english], None, None, 48)
    scores = wer_scores(texts, [test_clips[i]["sentence"] for i in english])
    print("tiny.en int8 (CTranslate2) on the English test clips:", scores)
    assert scores["wer_words"] < 80, scores


def test_export_refuses_what_cannot_work(tmp_path):
    with pytest.raises(CourseError, match="no config.json"):
        export_ctranslate2(tmp_path, tmp_path / "ct2")
    with pytest.raises(CourseError, match="Unknown CTranslate2 quantization 'int4'"):
        export_ctranslate2(SMOKE_MODEL_DIR, tmp_path / "ct2", quantization="int4")
    with pytest.raises(CourseError, match="no model.bin"):
        CT2Whisper(tmp_path)


def test_cli_export_subcommand(tmp_path, capsys):
    from helpers.cli import main

    assert main(["export-ct2", "--model-dir", str(SMOKE_MODEL_DIR), "--output-dir", str(tmp_path / "ct2"),
                 "--quantization", "int8"]) == 0
    assert "faster-whisper loads this folder" in capsys.readouterr().out
    config = json.loads((tmp_path / "ct2" / "config.json").read_text())
    assert config["suppress_ids_begin"] == [220, 50257]  # the generation config's rules went along
    original = (SMOKE_MODEL_DIR / "model.safetensors").stat().st_size
    assert (tmp_path / "ct2" / "model.bin").stat().st_size < 0.35 * original


def test_without_the_ct2_extra_the_export_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # as on an install without the [ct2] extra
    with pytest.raises(CourseError, match=re.escape("pip install 'whisper-course-helpers[ct2]'")):
        export_ctranslate2(SMOKE_MODEL_DIR, tmp_path / "ct2")
    assert not (tmp_path / "ct2").exists()
