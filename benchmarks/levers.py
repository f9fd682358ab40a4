"""Single-process measurements of the levers behind our path, on a sample of the benchmark corpus.

    python -m benchmarks.levers --data CORPUS --ours OURS_DIR --result levers.json

* decoding: ``librosa.load(sr=16000)`` (the recipe) against ``helpers.audio.load_audio`` (soundfile +
  soxr), clip by clip, alternating which goes first;
* log-mel: the recipe's one-clip-per-call extraction, the extractor on a whole batch (padded to 30 s,
  what our collator did first) and the collator's STFT over the audio only (``helpers.collator``), per clip;
* storage: bytes per clip of each way to keep a clip (float32 / float16 log-mel, float32 / int16 /
  float16 audio, FLAC, the source MP3) and how far each one's log-mel is from float32 audio's;
* Arrow against Parquet for our prepared train split.

Timings here are single-core and per clip; the end-to-end figures are in ``benchmarks.run``.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np


def _per_clip_ms(values: list[float]) -> float:
    return 1000 * statistics.median(values)


def decoding(clips: list[Path]) -> dict:
    """librosa against soundfile + soxr: time per clip and the largest sample difference."""
    import librosa

    from helpers.audio import load_audio

    librosa.load(str(clips[0]), sr=16000)  # numba compiles on first use
    times: dict[str, list[float]] = {"librosa": [], "soundfile_soxr": []}
    diffs = []
    for i, clip in enumerate(clips):
        order = ["librosa", "soundfile_soxr"] if i % 2 == 0 else ["soundfile_soxr", "librosa"]
        waves = {}
        for name in order:
            start = time.perf_counter()
            waves[name] = librosa.load(str(clip), sr=16000)[0] if name == "librosa" else load_audio(clip)
            times[name].append(time.perf_counter() - start)
        n = min(len(w) for w in waves.values())
        diffs.append(float(np.abs(waves["librosa"][:n] - waves["soundfile_soxr"][:n]).max()))
    return {
        "librosa_ms_per_clip": _per_clip_ms(times["librosa"]),
        "soundfile_soxr_ms_per_clip": _per_clip_ms(times["soundfile_soxr"]),
        "speedup": statistics.median(times["librosa"]) / statistics.median(times["soundfile_soxr"]),
        "max_abs_sample_diff": max(diffs),
    }


def log_mel(waves: list[np.ndarray], processor, batch_size: int) -> dict:
    """One clip per extractor call (the recipe) against batches (our collator), per clip."""
    from helpers.audio import to_int16
    from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding

    extractor = processor.feature_extractor
    collator = DataCollatorSpeechSeq2SeqWithPadding(processor, decoder_start_token_id=0)
    stored = [{"audio_16k": to_int16(w)} for w in waves]
    single, padded, batched = [], [], []
    for start in range(0, len(waves) - batch_size + 1, batch_size):
        chunk = range(start, start + batch_size)
        t0 = time.perf_counter()
        for i in chunk:
            extractor(waves[i], sampling_rate=16000)
        t1 = time.perf_counter()
        extractor([waves[i] for i in chunk], sampling_rate=16000, return_tensors="pt")
        t2 = time.perf_counter()
        collator.features([stored[i] for i in chunk])
        t3 = time.perf_counter()
        single.append((t1 - t0) / batch_size)
        padded.append((t2 - t1) / batch_size)
        batched.append((t3 - t2) / batch_size)
    return {
        "batch_size": batch_size,
        "per_clip_call_ms": _per_clip_ms(single),
        "extractor_batched_ms_per_clip": _per_clip_ms(padded),
        "collator_batched_ms_per_clip": _per_clip_ms(batched),
        "speedup": statistics.median(single) / statistics.median(batched),
        "trim_speedup": statistics.median(padded) / statistics.median(batched),
    }


def storage(clips: list[Path], waves: list[np.ndarray], processor) -> dict:
    """Bytes per clip of each stored form, and each form's log-mel error against float32 audio's."""
    import soundfile as sf

    from helpers.audio import from_int16, to_int16

    extractor = processor.feature_extractor

    def mel(wave: np.ndarray) -> np.ndarray:
        return extractor(wave.astype(np.float32), sampling_rate=16000, return_tensors="np").input_features[0]

    forms = {k: {"bytes": 0, "mel_max_abs_err": 0.0, "mel_mean_abs_err": []} for k in (
        "log_mel_float32", "log_mel_float16", "audio_float32", "audio_int16", "audio_float16", "audio_flac", "source_mp3")}
    seconds = 0.0
    for clip, wave in zip(clips, waves):
        seconds += len(wave) / 16000
        reference = mel(wave)
        int16 = to_int16(wave)
        buffer = io.BytesIO()
        sf.write(buffer, int16, 16000, format="FLAC", subtype="PCM_16")
        flac = buffer.getvalue()
        flac_back = sf.read(io.BytesIO(flac), dtype="int16")[0]
        stored = {
            "log_mel_float32": (reference.nbytes, reference),
            "log_mel_float16": (reference.astype(np.float16).nbytes, reference.astype(np.float16).astype(np.float32)),
            "audio_float32": (wave.astype(np.float32).nbytes, reference),
            "audio_int16": (int16.nbytes, mel(from_int16(int16))),
            "audio_float16": (wave.astype(np.float16).nbytes, mel(wave.astype(np.float16).astype(np.float32))),
            "audio_flac": (len(flac), mel(from_int16(flac_back))),
            "source_mp3": (clip.stat().st_size, None),
        }
        for name, (size, features) in stored.items():
            forms[name]["bytes"] += size
            if features is not None:
                error = np.abs(features - reference)
                forms[name]["mel_max_abs_err"] = max(forms[name]["mel_max_abs_err"], float(error.max()))
                forms[name]["mel_mean_abs_err"].append(float(error.mean()))
    base = forms["log_mel_float32"]["bytes"]
    out = {"clips": len(clips), "mean_seconds": seconds / len(clips)}
    for name, form in forms.items():
        errors = form.pop("mel_mean_abs_err")
        form["mel_mean_abs_err"] = float(np.mean(errors)) if errors else None
        if name == "source_mp3":
            form["mel_max_abs_err"] = None  # needs decoding and resampling at batch time: not a stored form
        form["bytes_per_clip"] = form.pop("bytes") / len(clips)
        form["vs_recipe"] = form["bytes_per_clip"] * len(clips) / base
        out[name] = form
    return out


def arrow_vs_parquet(ours_dir: Path, scratch: Path) -> dict:
    """Our prepared train split as Arrow (``save_to_disk``) and as Parquet (``to_parquet``, its default codec)."""
    from datasets import load_from_disk

    from .measure import dir_bytes

    train = load_from_disk(str(ours_dir))["train"]
    parquet = scratch / "train.parquet"
    start = time.perf_counter()
    train.to_parquet(str(parquet))
    seconds = time.perf_counter() - start
    arrow = dir_bytes(ours_dir / "train")
    return {"arrow_bytes": arrow, "parquet_bytes": parquet.stat().st_size,
            "parquet_vs_arrow": parquet.stat().st_size / arrow, "parquet_write_s": seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--ours", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--sample", type=int, default=48, help="clips to measure on")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    import datasets

    from helpers.audio import load_audio
    from helpers.config import SMOKE_MODEL_DIR
    from helpers.model import load_processor

    datasets.disable_progress_bars()
    processor = load_processor(str(SMOKE_MODEL_DIR), "sinhalese", "transcribe")
    clips = sorted((args.data / "clips").glob("*.mp3"))[: args.sample]
    waves = [load_audio(c) for c in clips]
    batch_size = max(1, min(args.batch_size, len(clips)))
    result = {
        "decoding": decoding(clips),
        "log_mel": log_mel(waves, processor, batch_size),
        "storage": storage(clips, waves, processor),
        "arrow_vs_parquet": arrow_vs_parquet(args.ours, args.result.parent),
    }
    (args.result.parent / "train.parquet").unlink(missing_ok=True)
    args.result.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
