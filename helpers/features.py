"""Preprocessing: decode + resample audio, tokenise labels, filter what Whisper cannot learn from.

We store each clip as 16 kHz 16-bit audio, FLAC-compressed in the ``audio_16k`` column (``helpers.audio
.to_flac``; ``from_int16`` reads it back), rather than the course's 80 x 3000 float32 log-mel matrix (960 KB
per clip however short): a 5 s clip takes 160 KB as int16 and about 95 KB as FLAC, and the collator computes
log-mel features for a whole batch at once (see ``helpers.collator`` and ``benchmarks/`` for the measurements).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict
from datasets.fingerprint import Hasher
from transformers import WhisperFeatureExtractor, WhisperProcessor

from .audio import DECODE_REASONS, SAMPLING_RATE, AudioDecodeError, from_int16, load_audio, to_flac

MAX_AUDIO_SECONDS = 30.0  # Whisper's encoder sees exactly 30 s; longer clips would be cut mid-sentence.
DROP_REASONS = {
    **DECODE_REASONS,  # missing, empty, undecodable, truncated clips (helpers.audio)
    "too_long_audio": f"the audio is longer than {MAX_AUDIO_SECONDS:.0f} s",
    "empty_transcript": "the transcript is empty",
    "too_many_label_tokens": "the labels (with prefix tokens) exceed the model's max_target_positions",
}
SHOWN_DROPPED_ROWS = 20  # per split on screen; report.json lists every one


def _prepare_batch(batch: dict, max_label_tokens: int) -> dict:
    # Labels come in already tokenised (see prepare_split): workers then receive no tokenizer at all.
    out = {"audio_16k": [], "labels": [], "duration": [], "drop_reason": [], "source": []}
    for audio, sentence, tokens in zip(batch["audio"], batch["sentence"], batch["labels"]):
        out["source"].append((audio or {}).get("path") or "<bytes>")
        reason, samples, labels = "", b"", []
        try:
            wave = load_audio(audio)
        except AudioDecodeError as error:
            reason, wave = error.reason, np.zeros(0, np.float32)
        duration = len(wave) / SAMPLING_RATE
        text = (sentence or "").strip()
        if not reason and duration > MAX_AUDIO_SECONDS:
            reason = "too_long_audio"
        elif not reason and not text:
            reason = "empty_transcript"
        if not reason:
            labels = tokens
            if len(labels) > max_label_tokens:
                reason, labels = "too_many_label_tokens", []
            else:
                samples = to_flac(wave)
        out["audio_16k"].append(samples)
        out["labels"].append(labels)
        out["duration"].append(duration)
        out["drop_reason"].append(reason)
    return out


def _fingerprint(dataset: Dataset, processor: WhisperProcessor, max_label_tokens: int) -> str:
    """A cache key for ``prepare_split``'s map, from what decides its output (the labels included).

    Without it, ``datasets`` fingerprints the map by dill-pickling ``fn_kwargs``, i.e. the whole
    51865-token tokenizer: about 4 s of CPU per split, more than preparing the bundled corpus itself.
    """
    tokenizer = processor.tokenizer
    key = (dataset._fingerprint, tokenizer.name_or_path, len(tokenizer), list(tokenizer.prefix_tokens),
           max_label_tokens, MAX_AUDIO_SECONDS, sorted(DROP_REASONS))
    return Hasher.hash(key)


def prepare_split(
    dataset: Dataset, processor: WhisperProcessor, max_label_tokens: int = 448, num_proc: int = 1, desc: str = ""
) -> tuple[Dataset, dict]:
    """Decode, resample and tokenise one split; return the kept rows and a report of what was dropped.

    ``max_label_tokens`` is the model's ``max_target_positions``: the labels include the prefix tokens
    (start of transcript, language, task, no-timestamps) and the end token.
    """
    num_proc = max(1, min(num_proc, len(dataset) // 8)) or 1  # workers cost more than they save on tiny splits
    fingerprint = _fingerprint(dataset, processor, max_label_tokens)
    # Tokenise every transcript here, in one batched call of the Rust tokenizer (milliseconds), rather than
    # in the workers: handing each worker the tokenizer means pickling its whole vocabulary, seconds of
    # CPU per worker and split, which made num_proc > 1 slower than one process on a 300-clip corpus.
    texts = [(sentence or "").strip() for sentence in dataset["sentence"]]
    tokens = processor.tokenizer(texts, verbose=False).input_ids if texts else []  # too long: counted, not warned
    dataset = dataset.remove_columns([c for c in dataset.column_names if c not in ("audio", "sentence")])
    dataset = dataset.add_column("labels", tokens, new_fingerprint=Hasher.hash((fingerprint, "labels")))
    processed = dataset.map(
        _prepare_batch,
        batched=True,
        batch_size=16,
        fn_kwargs={"max_label_tokens": max_label_tokens},
        remove_columns=["audio", "labels"],
        num_proc=num_proc if num_proc > 1 else None,
        desc=f"Preparing {desc}".strip(),
        new_fingerprint=fingerprint,
    )
    reasons = processed["drop_reason"]
    counts = Counter(r for r in reasons if r)
    dropped_rows = [
        {"source": src, "sentence": sentence, "reason": reason, "why": DROP_REASONS[reason]}
        for src, sentence, reason in zip(processed["source"], processed["sentence"], reasons)
        if reason
    ]
    kept = processed.filter(lambda r: [not x for x in r], input_columns="drop_reason", batched=True)
    kept = kept.remove_columns(["drop_reason", "source"])
    report = {
        "total": len(dataset),
        "kept": len(kept),
        "dropped": sum(counts.values()),
        "dropped_by_reason": dict(sorted(counts.items())),
        "dropped_rows": dropped_rows,
        "kept_seconds": round(float(sum(kept["duration"])), 2),
    }
    return kept, report


def prepare_dataset(
    splits: DatasetDict, processor: WhisperProcessor, max_label_tokens: int = 448, num_proc: int = 1
) -> tuple[DatasetDict, dict]:
    """:func:`prepare_split` on every split; returns the prepared ``DatasetDict`` and a per-split report."""
    prepared, report = {}, {}
    for name, split in splits.items():
        prepared[name], report[name] = prepare_split(split, processor, max_label_tokens, num_proc, desc=name)
    return DatasetDict(prepared), report


def format_report(report: dict) -> str:
    """A few human lines: per split, kept and dropped counts with the reason in words."""
    lines = []
    for name, part in report.items():
        lines.append(f"{name}: kept {part['kept']} of {part['total']} clips ({part['kept_seconds']:.1f} s of audio)")
        for reason, count in part["dropped_by_reason"].items():
            lines.append(f"  dropped {count}: {DROP_REASONS.get(reason, reason)}")
        rows = part.get("dropped_rows", [])
        for row in rows[:SHOWN_DROPPED_ROWS]:
            lines.append(f"    - {Path(str(row['source'])).name}: {row['why']}")
        if len(rows) > SHOWN_DROPPED_ROWS:
            lines.append(f"    ... and {len(rows) - SHOWN_DROPPED_ROWS} more, listed in report.json")
    return "\n".join(lines)


def save_report(report: dict, path: Path) -> None:
    from .training import write_json  # atomic: a kill leaves the old report or none, never half of one

    write_json(path, report)


def log_mel(audio_16k, feature_extractor: WhisperFeatureExtractor) -> np.ndarray:
    """The (80, 3000) log-mel spectrogram Whisper sees for one stored clip (for plots and checks)."""
    features = feature_extractor(from_int16(audio_16k), sampling_rate=SAMPLING_RATE, return_tensors="np")
    return features.input_features[0]
