"""Preprocessing: decode + resample audio, tokenise labels, filter what Whisper cannot learn from.

We store each clip as 16 kHz 16-bit audio, FLAC-compressed in the ``audio_16k`` column (``helpers.audio
.to_flac``; ``from_int16`` reads it back), rather than the course's 80 x 3000 float32 log-mel matrix (960 KB
per clip however short): a 5 s clip takes 160 KB as int16 and about 95 KB as FLAC, and the collator computes
log-mel features for a whole batch at once (see ``helpers.collator`` and ``benchmarks/`` for the measurements).
Clips are decoded and encoded ``num_proc`` at a time in threads, ahead of the ``map`` that writes them
(:func:`_prepared_rows` says why threads), and the rows come out the same for any ``num_proc``.
"""

from __future__ import annotations

import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict, Features, List, Value, concatenate_datasets
from datasets.fingerprint import Hasher
from transformers import WhisperFeatureExtractor, WhisperProcessor

from helpers.audio import (
    DECODE_REASONS,
    SAMPLING_RATE,
    AudioDecodeError,
    from_int16,
    load_audio,
    to_flac,
)
from helpers.metrics import normalize

MAX_AUDIO_SECONDS = 30.0  # Whisper's encoder sees exactly 30 s; longer clips would be cut mid-sentence.
DROP_REASONS = {
    **DECODE_REASONS,  # missing, empty, undecodable, truncated clips (helpers.audio)
    "too_long_audio": f"the audio is longer than {MAX_AUDIO_SECONDS:.0f} s",
    "empty_transcript": "the transcript is empty",
    "no_words_transcript": "the transcript has no words (only punctuation or symbols): nothing to learn or score",
    "too_many_label_tokens": "the labels (with prefix tokens) exceed the model's max_target_positions",
}
SHOWN_DROPPED_ROWS = 20  # per split on screen; report.json lists every one
_PREPARED_FEATURES = Features({"sentence": Value("string"), "audio_16k": Value("binary"), "labels": List(Value("int64")),
                               "duration": Value("float64"), "drop_reason": Value("string"), "source": Value("string")})
_PREPARE_BATCH = 64  # rows per map batch (one Arrow write) and per read of the source rows


def prepare_dataset(example: dict, max_label_tokens: int = 448) -> dict:
    """The course's ``prepare_dataset``: one example in, what the model learns from out, with the filters.

    ``example`` is a row: ``audio``, ``sentence`` and ``labels``, the sentence's label ids (tokenised
    beforehand for the whole split, in one call: see :func:`prepare_split`). Audio -> 16 kHz samples, stored
    as FLAC (the collator computes the log-mel features per batch); label ids -> labels; and the reason to
    drop the clip, if there is one (empty when it is kept).
    """
    sentence, label_ids = example["sentence"], example["labels"]
    try:
        wave = load_audio(example["audio"])  # decode, mix to mono, resample to 16 kHz
    except AudioDecodeError as error:  # missing, empty, undecodable or truncated
        return {"audio_16k": b"", "labels": [], "duration": 0.0, "drop_reason": error.reason}
    duration = len(wave) / SAMPLING_RATE
    if duration > MAX_AUDIO_SECONDS:  # the course's filter: Whisper's encoder hears 30 s at most
        reason = "too_long_audio"
    elif not (sentence or "").strip():  # nothing to learn from
        reason = "empty_transcript"
    elif not normalize(sentence):  # "?!... —": no word, and every score would leave the clip out
        reason = "no_words_transcript"
    elif len(label_ids) > max_label_tokens:  # the decoder attends to max_target_positions tokens at most
        reason = "too_many_label_tokens"
    else:
        return {"audio_16k": to_flac(wave), "labels": label_ids, "duration": duration, "drop_reason": ""}
    return {"audio_16k": b"", "labels": [], "duration": duration, "drop_reason": reason}


def _prepared_rows(dataset: Dataset, max_label_tokens: int, workers: int,
                   prepare_one: Callable = prepare_dataset) -> Iterator[tuple[str, dict]]:
    """``(source, prepare_one(...))`` for every row of ``dataset``, in order.

    With ``workers`` > 1 the clips are prepared in that many threads, up to two batches ahead of the map
    that writes them. Threads, not processes: about four fifths of a clip's time is spent in C code that
    releases the GIL (libsndfile decoding MP3 and encoding FLAC through cffi, soxr resampling), so threads
    share the cores without what ``map(num_proc=...)`` costs on top: a worker pool and a manager process
    started per split, the dataset pickled to each worker, each worker's rows written to a shard file and
    read back: about 40 % more CPU per clip than one process on the benchmark's 300 clips, which made two
    workers slower than one. The rows never leave the process, so notebooks and every platform's start
    method behave alike, and one worker costs nothing extra.
    """
    columns = dataset.select_columns(["audio", "sentence", "labels"])
    rows = (row for batch in columns.iter(batch_size=_PREPARE_BATCH)
            for row in zip(batch["audio"], batch["sentence"], batch["labels"]))

    def prepare(audio, sentence: str, label_ids: list[int]) -> tuple[str, dict]:
        source = (audio or {}).get("path") or "<bytes>"
        return source, prepare_one({"audio": audio, "sentence": sentence, "labels": label_ids}, max_label_tokens)

    if workers <= 1:
        for row in rows:
            yield prepare(*row)
        return
    # Bounded read-ahead: the rows waiting to be written hold decoded audio, so at most a few batches' worth.
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="prepare") as pool:
        try:
            for row in rows:
                pending.append(pool.submit(prepare, *row))
                if len(pending) >= 2 * _PREPARE_BATCH:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # the consumer stopped early (an error in the map): drop what has not started
            pool.shutdown(cancel_futures=True)


def _prepare_batch(audios: list, rows: Iterator[tuple[str, dict]]) -> dict:
    # The map walks the same rows in the same order as ``rows`` (one process, batches in order); it only
    # writes what ``rows`` prepared, so the work can run ahead of it in threads.
    out = {"audio_16k": [], "labels": [], "duration": [], "drop_reason": [], "source": []}
    for audio in audios:
        source, prepared = next(rows)
        if source != ((audio or {}).get("path") or "<bytes>"):
            raise RuntimeError(f"preprocessing lost its place: expected {source}, the map is at {audio}")
        out["source"].append(source)
        for key, value in prepared.items():
            out[key].append(value)
    return out


def _fingerprint(dataset: Dataset, processor: WhisperProcessor, max_label_tokens: int,
                 prepare_one: Callable = prepare_dataset) -> str:
    """A cache key for ``prepare_split``'s map, from what decides its output (the labels included).

    Without it, ``datasets`` would fingerprint the map by dill-pickling its function and ``fn_kwargs``: the
    generator of prepared rows cannot be pickled, and the tokenizer (before the labels were computed up
    front) took about 4 s of CPU per split, more than preparing the bundled corpus itself. The preparation
    function is part of the key, its code included when a notebook defines it (as ``datasets`` hashes a
    map's function): a learner's edited version prepares the clips again instead of reading the cache.
    """
    tokenizer = processor.tokenizer
    try:
        function = Hasher.hash(prepare_one)
    except Exception:  # a function dill cannot pickle: no cache to reuse, as datasets does then
        function = uuid.uuid4().hex
    key = (dataset._fingerprint, tokenizer.name_or_path, len(tokenizer), list(tokenizer.prefix_tokens),
           max_label_tokens, MAX_AUDIO_SECONDS, sorted(DROP_REASONS), function)
    return Hasher.hash(key)


def prepare_split(
    dataset: Dataset, processor: WhisperProcessor, max_label_tokens: int = 448, num_proc: int = 1, desc: str = "",
    prepare: Callable = prepare_dataset,
) -> tuple[Dataset, dict]:
    """Decode, resample and tokenise one split; return the kept rows and a report of what was dropped.

    ``max_label_tokens`` is the model's ``max_target_positions``: the labels include the prefix tokens
    (start of transcript, language, task, no-timestamps) and the end token. ``num_proc`` clips are prepared
    at a time, in threads (see :func:`_prepared_rows`); the rows are the same for any number. ``prepare``
    prepares one clip, called as :func:`prepare_dataset` is (notebook 02 passes its own, editable copy); a
    ``drop_reason`` it invents is reported as it is.
    """
    fingerprint = _fingerprint(dataset, processor, max_label_tokens, prepare)
    # Tokenise every transcript here, in one batched call of the Rust tokenizer (milliseconds), rather than
    # clip by clip in the workers.
    texts = [(sentence or "").strip() for sentence in dataset["sentence"]]
    tokens = processor.tokenizer(texts, verbose=False).input_ids if texts else []  # too long: counted, not warned
    dataset = dataset.remove_columns([c for c in dataset.column_names if c not in ("audio", "sentence")])
    dataset = dataset.add_column("labels", tokens, new_fingerprint=Hasher.hash((fingerprint, "labels")))
    # A generator runs only when iterated: if the map's result is already cached, no clip is decoded.
    rows = _prepared_rows(dataset, max_label_tokens, num_proc, prepare)
    try:
        processed = dataset.map(
            _prepare_batch,
            batched=True,
            batch_size=_PREPARE_BATCH,
            input_columns="audio",  # only for checking the place; the work is in ``rows``
            fn_kwargs={"rows": rows},
            remove_columns=["audio", "labels"],
            desc=f"Preparing {desc}".strip(),
            new_fingerprint=fingerprint,  # the rows do not depend on num_proc
            features=_PREPARED_FEATURES,
        )
    finally:
        rows.close()
    reasons = processed["drop_reason"]
    counts = Counter(r for r in reasons if r)
    dropped_rows = [
        {"source": src, "sentence": sentence, "reason": reason, "why": DROP_REASONS.get(reason, reason)}
        for src, sentence, reason in zip(processed["source"], processed["sentence"], reasons)
        if reason
    ]
    kept = processed
    if counts:  # a filter leaves an indices mapping, which save_to_disk then copies every row through
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


def prepare_splits(
    splits: DatasetDict, processor: WhisperProcessor, max_label_tokens: int = 448, num_proc: int = 1,
    prepare: Callable = prepare_dataset, seed: int = 42,
) -> tuple[DatasetDict, dict]:
    """The course's ``common_voice.map(prepare_dataset, ...)`` and its 30 s filter, on every split.

    :func:`prepare_split` on each, every clip through ``prepare`` (:func:`prepare_dataset`, or notebook 02's
    edited copy); returns the prepared ``DatasetDict`` and a per-split report. A validation split that lost
    clips is refilled from the prepared training clips (:func:`refill_validation`, drawn with ``seed``)."""
    prepared, report = {}, {}
    for name, split in splits.items():
        prepared[name], report[name] = prepare_split(split, processor, max_label_tokens, num_proc, desc=name,
                                                     prepare=prepare)
    return refill_validation(prepared, report, seed), report


def refill_validation(prepared: dict, report: dict, seed: int = 42) -> DatasetDict:
    """Top the validation split up to the size it was loaded with, from the training clips that survived.

    The validation slice is drawn before preprocessing (of train, when a source has no dev split); the clips
    preprocessing drops from it would leave the best checkpoint chosen on fewer clips, or on none (a small
    corpus whose slice happened to draw only broken files). Prepared training clips drawn with ``seed`` move
    over, never the last one; ``report`` says so (``refilled``, ``moved_to_validation`` and a ``note``), and
    still counts each dropped clip once, in the split it came from.
    """
    if "validation" not in prepared or "train" not in prepared:
        return DatasetDict(prepared)
    validation, train = prepared["validation"], prepared["train"]
    take = min(report["validation"]["total"] - len(validation), len(train) - 1)
    if take <= 0:
        return DatasetDict(prepared)
    chosen = set(int(i) for i in np.random.default_rng(seed).choice(len(train), size=take, replace=False))
    moved = train.select(sorted(chosen))
    prepared = {**prepared, "validation": concatenate_datasets([validation, moved]) if len(validation) else moved,
                "train": train.select([i for i in range(len(train)) if i not in chosen])}
    seconds = round(float(sum(moved["duration"])), 2)
    part, rest = report["validation"], report["train"]
    part.update(kept=part["kept"] + take, refilled=take, kept_seconds=round(part["kept_seconds"] + seconds, 2))
    rest.update(kept=rest["kept"] - take, moved_to_validation=take, kept_seconds=round(rest["kept_seconds"] - seconds, 2))
    part["note"] = (f"{part['dropped']} of the {part['total']} validation clips were dropped in preprocessing; {take} "
                    f"prepared training clips took their place (drawn with seed {seed}), so the best checkpoint is "
                    f"chosen on {len(prepared['validation'])} clips.")
    rest["note"] = f"{take} prepared clips moved to validation, in place of the validation clips dropped."
    return DatasetDict(prepared)


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
        if part.get("note"):
            lines.append(f"  {part['note']}")
    return "\n".join(lines)


def log_mel(audio_16k, feature_extractor: WhisperFeatureExtractor) -> np.ndarray:
    """The (80, 3000) log-mel spectrogram Whisper sees for one stored clip (for plots and checks)."""
    features = feature_extractor(from_int16(audio_16k), sampling_rate=SAMPLING_RATE, return_tensors="np")
    return features.input_features[0]
