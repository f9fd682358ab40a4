"""Bad and odd input through the real CLI: skipped, counted and reported, or stopped with one clear sentence.

A Common Voice-shaped folder is generated with every kind of trouble the issue lists (files that are not
audio, cut short, empty or missing; silence, 8 kHz, 44.1 kHz stereo, FLAC among the MP3s; a clip over
30 s; empty sentences; a transcript over 448 tokens; tsv quirks), and ``python -m helpers prepare`` and
``run`` must finish with exit code 0, keep every good row and report every bad one under a reason a
person understands. What makes a run impossible must stop it with one sentence on stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers.audio import load_audio
from helpers.cli import main
from helpers.config import REPO_ROOT
from helpers.preparation import DROP_REASONS

CV_HEADER = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accents", "variant",
             "locale", "segment"]
# Settings that make a whole run take seconds: a few steps, short generations.
TINY = ["--max-steps", "2", "--save-steps", "2", "--eval-steps", "2", "--logging-steps", "1", "--batch-size", "4",
        "--eval-batch-size", "8", "--generation-max-length", "6", "--warmup-steps", "1", "--num-proc", "1"]

# Every row the odd corpus holds that preprocessing must drop: clip name -> reason code.
BAD_TRAIN = {
    "not_audio.mp3": "undecodable_audio",
    "truncated.mp3": "truncated_audio",
    "empty.mp3": "empty_file",
    "missing.mp3": "file_not_found",
    "too_long.mp3": "too_long_audio",
    "empty_sentence.mp3": "empty_transcript",
    "blank_sentence.mp3": "empty_transcript",
    "punctuation_sentence.mp3": "no_words_transcript",
    "long_transcript.mp3": "too_many_label_tokens",
}
BAD_TEST = {"missing_test.mp3": "file_not_found", "truncated_test.mp3": "truncated_audio",
            "punctuation_test.mp3": "no_words_transcript"}
# Valid though unlike the rest: resampled and kept (M4A through ffmpeg, which Colab and our setup install).
HAVE_FFMPEG = shutil.which("ffmpeg") is not None
ODD_BUT_GOOD = ["silence.mp3", "speech_8k.wav", "speech_44k_stereo.wav", "speech.flac"] + ["speech.m4a"] * HAVE_FFMPEG


def _write_tsv(path: Path, header: list[str], rows: list[list[str]], bom=False, crlf=False) -> None:
    end = "\r\n" if crlf else "\n"
    text = end.join("\t".join(cells) for cells in [header, *rows]) + end
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))


def build_odd_corpus(folder: Path, corpus: Path) -> dict:
    """Write the odd corpus to ``folder``; return what loading and preprocessing it must give."""
    clips = folder / "clips"
    clips.mkdir(parents=True)
    source = [line.split("\t") for line in (corpus / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    good = iter(source)

    def copy_good(name: str | None = None) -> tuple[str, str]:
        row = next(good)
        name = name or row[1]
        shutil.copy(corpus / "clips" / row[1], clips / name)
        return name, row[2]

    def speech(seconds: float | None = None) -> tuple[np.ndarray, str]:
        """A bundled clip at 48 kHz (repeated up to ``seconds``) and its sentence."""
        row = next(good)
        wave, rate = sf.read(str(corpus / "clips" / row[1]), dtype="float32")
        assert rate == 48_000
        if seconds:
            wave = np.tile(wave, int(seconds * rate / len(wave)) + 1)[: int(seconds * rate)]
        return wave, row[2]

    train, test, dev = [], [], []
    for _ in range(6):
        train.append(copy_good())
    # Valid files unlike Common Voice's MP3s.
    sf.write(str(clips / "silence.mp3"), np.zeros(48_000 * 2, np.float32), 48_000, format="MP3")
    train.append(("silence.mp3", "ශබ්දයක් නැත."))
    wave, text = speech()
    sf.write(str(clips / "speech_8k.wav"), load_audio_at(wave, 48_000, 8_000), 8_000, subtype="PCM_16")
    train.append(("speech_8k.wav", text))
    wave, text = speech()
    stereo = load_audio_at(wave, 48_000, 44_100)
    sf.write(str(clips / "speech_44k_stereo.wav"), np.stack([stereo, 0.5 * stereo], axis=1), 44_100, subtype="PCM_16")
    train.append(("speech_44k_stereo.wav", text))
    wave, text = speech()
    sf.write(str(clips / "speech.flac"), load_audio_at(wave, 48_000, 22_050), 22_050, subtype="PCM_16")
    train.append(("speech.flac", text))
    if HAVE_FFMPEG:
        name, text = copy_good("speech_source.mp3")
        subprocess.run(["ffmpeg", "-nostdin", "-i", str(clips / name), "-c:a", "aac", str(clips / "speech.m4a")],
                       check=True, capture_output=True)
        (clips / name).unlink()
        train.append(("speech.m4a", text))
    # Files that cannot be used.
    (clips / "not_audio.mp3").write_text("This is a text file somebody renamed to .mp3.\n" * 30)
    train.append(("not_audio.mp3", "කිසිවක් නැත."))
    name, text = copy_good("truncated.mp3")
    (clips / name).write_bytes((clips / name).read_bytes()[: (clips / name).stat().st_size * 2 // 5])
    train.append((name, text))
    (clips / "empty.mp3").write_bytes(b"")
    train.append(("empty.mp3", "හිස් ගොනුවකි."))
    train.append(("missing.mp3", "මෙම ගොනුව නැත."))
    wave, text = speech(seconds=31.0)
    sf.write(str(clips / "too_long.mp3"), wave, 48_000, format="MP3")
    train.append(("too_long.mp3", text))
    train.append((copy_good("empty_sentence.mp3")[0], ""))
    train.append((copy_good("blank_sentence.mp3")[0], " \u3000 "))
    train.append((copy_good("punctuation_sentence.mp3")[0], "?!... —"))  # no word to learn or score
    name, text = copy_good("long_transcript.mp3")
    train.append((name, " ".join([text] * 40)))
    # dev.tsv: quotes inside sentences, as Common Voice writes them (never escaped, never a quoted field).
    name, text = copy_good()
    dev.append((name, f'"{text.replace(chr(34), chr(34) * 2)}, ""quoted"""'))
    name, _ = copy_good()
    dev.append((name, '"Stop!" she said, "now".'))
    for _ in range(3):
        test.append(copy_good())
    test.append(("missing_test.mp3", "නැති ගොනුවකි."))
    test.append((copy_good("punctuation_test.mp3")[0], "?!... —"))
    name, text = copy_good("truncated_test.mp3")
    (clips / name).write_bytes((clips / name).read_bytes()[: (clips / name).stat().st_size // 2])
    test.append((name, text))

    def cv_row(name: str, sentence: str, i: int) -> list[str]:
        return [f"client{i}", name, sentence, "2", "0", "", "", "", "", "si", ""]

    # train.tsv: UTF-8 BOM, Windows line ends, an extra column, rows missing their optional tail.
    _write_tsv(folder / "train.tsv", CV_HEADER + ["sentence_domain"],
               [cv_row(n, s, i) + ["general"] if i % 3 else cv_row(n, s, i)[:3] for i, (n, s) in enumerate(train)],
               bom=True, crlf=True)
    # dev.tsv: only the two columns that matter, in another order.
    _write_tsv(folder / "dev.tsv", ["sentence", "path"], [[s, n] for n, s in dev])
    _write_tsv(folder / "test.tsv", CV_HEADER, [cv_row(n, s, i) for i, (n, s) in enumerate(test)])
    return {
        # Both dev clips are the validation slice (fewer than validation_size): none of dev trains.
        "train_paths": [n for n, _ in train],
        "dev_sentences": [dev[0][1], '"Stop!" she said, "now".'],  # every quote kept, as written
        "train_total": len(train),
        "train_kept": len(train) - len(BAD_TRAIN),
        "test_total": len(test),
        "test_kept": len(test) - len(BAD_TEST),
    }


def load_audio_at(wave: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    import soxr

    return soxr.resample(wave, rate, new_rate).astype(np.float32)


def cli_subprocess(*args: str, **env: str) -> subprocess.CompletedProcess:
    # One torch thread: the tiny model gains nothing from more, and the test machine's cores are shared.
    environment = {**os.environ, "COURSE_PROFILE": "smoke", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-m", "helpers", *args], cwd=REPO_ROOT, env=environment,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def odd_corpus(tmp_path_factory, corpus):
    folder = tmp_path_factory.mktemp("odd") / "si"
    return folder, build_odd_corpus(folder, corpus)


@pytest.fixture(scope="module")
def prepared_cli(odd_corpus, tmp_path_factory):
    """``python -m helpers prepare`` on the odd corpus, in a real process (two workers)."""
    folder, _ = odd_corpus
    out = tmp_path_factory.mktemp("prepare")
    result = cli_subprocess("prepare", "--data", str(folder), "--output-dir", str(out), "--num-proc", "2")
    return result, json.loads((out / "report.json").read_text(encoding="utf-8")) if (out / "report.json").is_file() else None


def test_tsv_quirks_parse_into_the_right_rows(odd_corpus):
    from helpers.data import load_common_voice

    folder, expected = odd_corpus
    splits = load_common_voice(folder)
    assert len(splits["train"]) == expected["train_total"] and len(splits["test"]) == expected["test_total"]
    assert [Path(a["path"]).name for a in splits["train"]["audio"]] == expected["train_paths"]
    assert splits["validation"]["sentence"] == expected["dev_sentences"]
    assert not any(s.startswith("\ufeff") or s.endswith("\r") for s in splits["train"]["sentence"])


def test_prepare_finishes_with_exit_0_and_no_noise(prepared_cli):
    result, report = prepared_cli
    assert result.returncode == 0, result.stderr[-3000:]
    assert report is not None
    assert "Traceback" not in result.stderr and "Error" not in result.stderr
    assert "Xing" not in result.stderr and "mpg123" not in result.stderr  # the decoder's own chatter is hidden


def test_every_bad_row_is_counted_under_its_reason(prepared_cli, odd_corpus):
    _, report = prepared_cli
    _, expected = odd_corpus
    for split, bad, total, kept in (("train", BAD_TRAIN, expected["train_total"], expected["train_kept"]),
                                    ("test", BAD_TEST, expected["test_total"], expected["test_kept"])):
        part = report[split]
        assert (part["total"], part["kept"], part["dropped"]) == (total, kept, len(bad))
        found = {Path(row["source"]).name: row["reason"] for row in part["dropped_rows"]}
        assert found == bad
        counts: dict[str, int] = {}
        for reason in bad.values():
            counts[reason] = counts.get(reason, 0) + 1
        assert part["dropped_by_reason"] == counts
        for row in part["dropped_rows"]:
            assert row["why"] == DROP_REASONS[row["reason"]] and " " in row["why"]  # words, not a code


def test_odd_but_valid_audio_is_kept(prepared_cli, odd_corpus):
    _, report = prepared_cli
    dropped = {Path(row["source"]).name for row in report["train"]["dropped_rows"]}
    assert not dropped & set(ODD_BUT_GOOD)
    folder, _ = odd_corpus
    for name in ODD_BUT_GOOD:
        wave = load_audio(str(folder / "clips" / name))
        assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) > 16_000


def test_bad_rows_are_listed_on_screen_in_words(prepared_cli):
    result, report = prepared_cli
    for split, bad in (("train", BAD_TRAIN), ("test", BAD_TEST)):
        assert f"{split}: kept {report[split]['kept']} of {report[split]['total']} clips" in result.stdout
        for name, reason in bad.items():
            assert f"- {name}: {DROP_REASONS[reason]}" in result.stdout
    assert "dropped 2: the transcript is empty" in result.stdout


def test_run_on_the_odd_corpus_trains_and_writes_results(odd_corpus, tmp_path, capfd, one_torch_thread):
    folder, expected = odd_corpus
    code = main(["run", "--profile", "smoke", "--data", str(folder), "--output-dir", str(tmp_path), *TINY])
    captured = capfd.readouterr()
    assert code == 0, captured.err[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["baseline"]["n"] == results["finetuned"]["n"] == expected["test_kept"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["train"]["kept"] == expected["train_kept"] and report["train"]["dropped"] == len(BAD_TRAIN)
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert "Traceback" not in captured.err and "Xing" not in captured.err


# What makes a run impossible: one sentence on stderr, a non-zero exit code, no traceback.


def stopped(capfd, *args: str) -> str:
    code = main(list(args))
    captured = capfd.readouterr()
    assert code != 0
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert "Traceback" not in captured.err
    assert lines and lines[-1].startswith("error: ") and lines[-1].endswith((".", ")")), captured.err[-2000:]
    return lines[-1]


def test_missing_folder_stops_in_a_real_process(tmp_path):
    result = cli_subprocess("prepare", "--data", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: Data source '{tmp_path / 'nowhere'}' was not found; expected a Common Voice folder, an "
        "audiofolder, 'mdc:<dataset-id>', 'common-voice:<locale>' or a Hub dataset id 'owner/name'."]


def test_no_train_split_stops(tmp_path, odd_corpus, capfd):
    folder, _ = odd_corpus
    (tmp_path / "si").mkdir()
    shutil.copy(folder / "test.tsv", tmp_path / "si" / "test.tsv")
    message = stopped(capfd, "prepare", "--data", str(tmp_path / "si"), "--output-dir", str(tmp_path / "out"))
    assert "no train.tsv" in message and "no train split" in message


def test_model_that_cannot_be_loaded_offline_stops(tmp_path, corpus, capfd, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for model in ("openai/whisper-tiny", str(tmp_path)):
        message = stopped(capfd, "prepare", "--model", model, "--data", str(corpus), "--output-dir", str(tmp_path))
        assert f"Could not load the Whisper model '{model}'" in message


def test_model_id_with_the_hub_unreachable_fails_at_once_from_the_cache(tmp_path, corpus, capfd, monkeypatch):
    """Online mode but no network: instead of minutes of retries, offline mode and one sentence."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # refuses connections
    code = main(["prepare", "--model", "openai/whisper-tiny", "--data", str(corpus), "--output-dir", str(tmp_path)])
    captured = capfd.readouterr()
    assert code == 2 and "Traceback" not in captured.err and "Retrying" not in captured.err
    assert "the Hugging Face Hub cannot be reached, so openai/whisper-tiny can only come from the local cache" in captured.out
    assert captured.err.strip().splitlines()[-1].startswith("error: Could not load the Whisper model 'openai/whisper-tiny'")
    assert constants.HF_HUB_OFFLINE is True


def test_unknown_language_and_task_stop(tmp_path, corpus, capfd):
    message = stopped(capfd, "prepare", "--language", "klingon", "--data", str(corpus), "--output-dir", str(tmp_path))
    assert "Unknown Whisper language 'klingon'" in message
    message = stopped(capfd, "run", "--task", "summarise", "--data", str(corpus), "--output-dir", str(tmp_path))
    assert "Unknown task 'summarise'" in message


def test_corpus_where_nothing_survives_stops_after_writing_the_report(tmp_path, capfd):
    folder = tmp_path / "si"
    (folder / "clips").mkdir(parents=True)
    (folder / "clips" / "a.mp3").write_text("not audio")
    _write_tsv(folder / "train.tsv", ["path", "sentence"], [["a.mp3", "one"], ["b.mp3", "two"]])
    _write_tsv(folder / "dev.tsv", ["path", "sentence"], [["b.mp3", "four"]])  # the validation slice's source
    _write_tsv(folder / "test.tsv", ["path", "sentence"], [["b.mp3", "three"]])
    message = stopped(capfd, "prepare", "--data", str(folder), "--output-dir", str(tmp_path / "out"))
    assert "No train clip survived preprocessing" in message
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["train"]["dropped_by_reason"] == {"file_not_found": 1, "undecodable_audio": 1}


def test_cuda_out_of_memory_gives_advice_not_a_traceback(tmp_path, corpus, capfd, monkeypatch):
    import torch
    from transformers import Seq2SeqTrainer

    def out_of_memory(self, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB (GPU 0; 14.75 GiB total)")

    monkeypatch.setattr(Seq2SeqTrainer, "train", out_of_memory)
    # As after a disconnect: the zero-shot score is on disk already, so the run goes straight to training.
    (tmp_path / "baseline.json").write_text('{"wer_ortho": 100.0, "wer_words": 100.0, "wer": 100.0, "cer_words": 100.0, "n": 1}')
    message = stopped(capfd, "run", "--profile", "smoke", "--data", str(corpus), "--output-dir", str(tmp_path),
                      "--max-train-samples", "4", "--max-test-samples", "1", *TINY)
    for advice in ("--batch-size 2 --gradient-accumulation-steps 2", "gradient checkpointing", "fp16",
                   "--auto-find-batch-size", "smaller model"):
        assert advice in message


def test_out_of_memory_while_evaluating_names_the_eval_batch_size(corpus, processor, monkeypatch):
    import torch

    from helpers.config import SMOKE_MODEL_DIR
    from helpers.data import load_common_voice
    from helpers.evaluation import transcribe
    from helpers.model import load_model_and_processor
    from helpers.preparation import prepare_splits
    from helpers.runtime.device import OutOfMemory

    model, processor = load_model_and_processor(str(SMOKE_MODEL_DIR), "sinhalese", "transcribe")
    test = load_common_voice(corpus)["test"].select(range(2))
    prepared, _ = prepare_splits({"test": test}, processor)

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(model, "generate", out_of_memory)
    with pytest.raises(OutOfMemory, match=r"smaller --eval-batch-size \(try 4\)"):
        transcribe(model, processor, prepared["test"], batch_size=8)


def test_a_held_out_validation_slice_of_broken_clips_is_refilled_from_the_clips_that_survive(tmp_path, corpus):
    """No dev split: the validation slice is a tenth of train, drawn before preprocessing. Here every clip it
    drew is broken, and a few more in train: the run goes on, validation is refilled from the surviving
    training clips, and every broken clip is counted once, in the split it came from."""
    from helpers.data import load_common_voice

    folder = tmp_path / "si"
    shutil.copytree(corpus / "clips", folder / "clips")
    for name in ("train.tsv", "test.tsv"):  # no dev.tsv
        shutil.copy(corpus / name, folder / name)
    held_out = [Path(a["path"]).name for a in load_common_voice(folder)["validation"]["audio"]]
    train_rows = (corpus / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    others = [row.split("\t")[1] for row in train_rows if row.split("\t")[1] not in held_out][:3]
    for name in held_out + others:
        (folder / "clips" / name).write_text("not audio: a file broken in transfer\n" * 20)

    out = tmp_path / "out"
    result = cli_subprocess("prepare", "--data", str(folder), "--output-dir", str(out), "--num-proc", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    validation, train = report["validation"], report["train"]
    size = len(held_out)
    assert {Path(row["source"]).name for row in validation["dropped_rows"]} == set(held_out)
    assert {Path(row["source"]).name for row in train["dropped_rows"]} == set(others)
    assert validation["dropped"] == size and train["dropped"] == len(others)  # each once, where it came from
    assert validation["refilled"] == size and validation["kept"] == size
    assert train["moved_to_validation"] == size
    assert train["kept"] == train["total"] - len(others) - size
    assert f"{size} prepared training clips took their place" in result.stdout
