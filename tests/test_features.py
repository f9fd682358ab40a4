"""Preprocessing on the bundled MP3s: real labels, stored 16 kHz audio, Whisper's own log-mel, counted filters."""

import io

import numpy as np
import pytest
import soundfile as sf
import torch
from datasets import Audio, Dataset

from helpers.audio import SAMPLING_RATE, load_audio, to_int16
from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding
from helpers.preparation import DROP_REASONS, format_report, log_mel, prepare_split

PREFIX = [50258, 50322, 50359, 50363]  # <|startoftranscript|> <|si|> <|transcribe|> <|notimestamps|>
EOT = 50257


def test_every_bundled_clip_is_kept_with_real_labels(prepared, processor):
    splits, ready, report = prepared
    for name in ("train", "test"):
        assert report[name]["kept"] == report[name]["total"] == len(splits[name]) == len(ready[name])
        assert report[name]["dropped_by_reason"] == {}
    row = ready["train"][0]
    assert row["labels"][:4] == PREFIX and row["labels"][-1] == EOT
    assert processor.tokenizer.decode(row["labels"], skip_special_tokens=True) == row["sentence"]
    n = len(splits["train"])
    assert f"train: kept {n} of {n} clips" in format_report(report)


def test_stored_audio_is_the_decoded_clip_at_16_khz(prepared, corpus):
    splits, ready, _ = prepared
    path = splits["test"][3]["audio"]["path"]
    flac = ready["test"][3]["audio_16k"]
    assert isinstance(flac, bytes) and flac[:4] == b"fLaC"
    stored = sf.read(io.BytesIO(flac), dtype="int16")[0]
    np.testing.assert_array_equal(stored, to_int16(load_audio(path)))  # lossless: the int16 samples exactly
    seconds = sf.info(path).duration
    assert stored.size == pytest.approx(seconds * SAMPLING_RATE, abs=0.01 * SAMPLING_RATE)
    assert ready["test"][3]["duration"] == pytest.approx(seconds, abs=0.01)
    assert np.abs(stored).max() > 1000  # speech, not silence


def test_log_mel_matches_openai_whisper_end_to_end(openai_whisper, processor, corpus):
    """Our decode (soundfile + soxr) and features against openai-whisper's ffmpeg decode and log-mel."""
    reference_audio = openai_whisper("audio")
    clip = str(next((corpus / "clips").glob("*.mp3")))
    theirs = reference_audio.log_mel_spectrogram(reference_audio.load_audio(clip), padding=reference_audio.N_SAMPLES)
    theirs = theirs[:, : reference_audio.N_FRAMES].numpy()
    collator = DataCollatorSpeechSeq2SeqWithPadding(processor, decoder_start_token_id=PREFIX[0])
    ours = collator.features([{"audio_16k": to_int16(load_audio(clip))}])[0].numpy()
    assert ours.shape == theirs.shape == (80, 3000)
    assert np.abs(ours - theirs).mean() < 0.02  # different resamplers (soxr vs ffmpeg) and int16 storage
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.995
    np.testing.assert_allclose(log_mel(to_int16(load_audio(clip)), processor.feature_extractor), ours, atol=1e-5)


def test_filters_are_counted_by_reason(processor, tmp_path):
    rng = np.random.default_rng(0)
    speech = 0.1 * rng.standard_normal(SAMPLING_RATE * 2).astype(np.float32)
    files = {}
    for name, seconds in (("ok", 2), ("long", 31)):
        files[name] = tmp_path / f"{name}.wav"
        sf.write(files[name], np.resize(speech, SAMPLING_RATE * seconds), SAMPLING_RATE)
    (tmp_path / "text.mp3").write_text("not audio")
    (tmp_path / "empty.mp3").write_bytes(b"")
    rows = [
        (files["ok"], "ආයුබෝවන්"), (files["ok"], "hello"), (files["long"], "too long"), (files["ok"], "   "),
        (files["ok"], "word " * 500), (tmp_path / "text.mp3", "x"), (tmp_path / "empty.mp3", "x"),
        (tmp_path / "missing.mp3", "x"),
    ]
    dataset = Dataset.from_dict({"audio": [str(p) for p, _ in rows], "sentence": [s for _, s in rows]})
    dataset = dataset.cast_column("audio", Audio(decode=False))
    kept, report = prepare_split(dataset, processor)
    threaded, threaded_report = prepare_split(dataset, processor, num_proc=3)  # 8 rows, each thread gets some
    assert threaded.to_dict() == kept.to_dict() and threaded_report == report
    assert kept["sentence"] == ["ආයුබෝවන්", "hello"]
    assert report["dropped_by_reason"] == {
        "too_long_audio": 1, "empty_transcript": 1, "too_many_label_tokens": 1, "undecodable_audio": 1,
        "empty_file": 1, "file_not_found": 1,
    }
    assert (report["total"], report["kept"], report["dropped"]) == (8, 2, 6)
    assert {r["reason"] for r in report["dropped_rows"]} <= set(DROP_REASONS)
    assert all(r["why"] == DROP_REASONS[r["reason"]] for r in report["dropped_rows"])


def test_label_limit_counts_the_prefix_tokens(processor, tmp_path):
    """A transcript of exactly 448 tokens with prefix and end token is kept; one more token is dropped."""
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(SAMPLING_RATE, np.float32) + 0.01, SAMPLING_RATE)
    word = " a"  # one BPE token per repetition
    n = 448 - len(PREFIX) - 1
    texts = ["a" + word * (n - 1), "a" + word * n]
    assert [len(processor.tokenizer(t).input_ids) for t in texts] == [448, 449]
    dataset = Dataset.from_dict({"audio": [str(path)] * 2, "sentence": texts}).cast_column("audio", Audio(decode=False))
    kept, report = prepare_split(dataset, processor, max_label_tokens=448)
    assert len(kept) == 1 and report["dropped_by_reason"] == {"too_many_label_tokens": 1}
    assert torch.tensor(kept["labels"][0]).numel() == 448


def test_workers_give_the_same_rows_as_one_process(processor, corpus):
    """Clips prepared in two threads, ahead of the map that writes them, give one thread's rows in order."""
    from helpers.data import load_common_voice

    split = load_common_voice(corpus)["test"]
    one, report_one = prepare_split(split, processor, num_proc=1)
    two, report_two = prepare_split(split, processor, num_proc=2)
    assert report_one == report_two and len(one) == len(two) == len(split)
    assert one["labels"] == two["labels"] == [processor.tokenizer(s.strip()).input_ids for s in split["sentence"]]
    assert one["duration"] == two["duration"]
    assert one["audio_16k"] == two["audio_16k"]


def test_flac_storage_gives_the_int16_features(processor, corpus):
    """FLAC is lossless: the collator's features from stored FLAC equal those from int16 samples."""
    from helpers.audio import from_int16, to_flac

    wave = load_audio(next((corpus / "clips").glob("*.mp3")))
    np.testing.assert_array_equal(from_int16(to_flac(wave)), from_int16(to_int16(wave)))
    assert len(to_flac(wave)) < to_int16(wave).nbytes
    collator = DataCollatorSpeechSeq2SeqWithPadding(processor, decoder_start_token_id=PREFIX[0])
    torch.testing.assert_close(collator.features([{"audio_16k": to_flac(wave)}]),
                               collator.features([{"audio_16k": to_int16(wave)}]), rtol=0, atol=0)
    assert from_int16(b"").size == 0


def test_a_failing_clip_stops_the_workers_with_its_error(processor, corpus):
    """An error in a worker thread reaches the caller (not a hang, not a silently missing row)."""
    import threading

    from helpers import preparation
    from helpers.data import load_common_voice

    split = load_common_voice(corpus)["test"]
    real, calls, never = preparation.prepare_dataset, [], threading.Event()

    def flaky(audio, *args, **kwargs):
        calls.append(audio)
        if len(calls) == 5:
            raise MemoryError("clip 5")
        if len(calls) > 5:
            never.wait(1.0)  # later clips are slow: the ones not started yet must be cancelled, not run
        return real(audio, *args, **kwargs)

    with pytest.raises(MemoryError, match="clip 5"):
        prepare_split(split, processor, num_proc=2, prepare=flaky)  # as 02 passes its own function
    assert len(calls) <= 5 + 2 < len(split)  # at most the two running when the error arrived, not all 24
