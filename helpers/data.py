"""Load Common Voice (or any speech corpus shaped like it) into ``DatasetDict(train=..., validation=..., test=...)``.

Common Voice left the Hugging Face Hub in October 2025 and is published by the Mozilla Data Collective
(MDC). ``load_common_voice`` accepts, in this order of checking:

* a local Common Voice release folder (``clips/`` + ``train.tsv``/``dev.tsv``/``test.tsv``), or a folder
  up to three levels above one (an unpacked ``cv-corpus-*`` archive, e.g. on Google Drive), or one of
  its tsv files;
* an ``audiofolder`` (audio files + ``metadata.csv`` or ``metadata.jsonl`` with ``file_name`` and a
  transcript column, at the top or in ``train/``, ``test/``... folders);
* ``mdc:<dataset-id>``: downloaded from the Mozilla Data Collective's API, API key in ``MDC_API_KEY``;
* ``common-voice:<locale>``: the newest Common Voice release for that locale in the MDC's public catalogue
  (:func:`find_common_voice`), then downloaded as ``mdc:<its id>``;
* a Hub dataset id ``owner/name`` (optionally ``owner/name:config``), for mirrors and your own datasets;
* a teacher's mirror of a release (:mod:`helpers.services.data_mirror`): ``mirror:<owner>/<name>`` on the
  Hub, or a folder (a shared Drive folder) or file holding the release's archive, unpacked on the runtime's disk.

Every source gives the same three splits, each with only ``audio`` (undecoded, see ``helpers.audio``) and
``sentence``: ``validation``, a fixed, seeded slice of the source's dev split (``validation_size`` clips; of
train when the source has none), on which training chooses its best checkpoint; ``train``, everything
else of train and dev (the course merges all of dev into train); and ``test`` (held out; 10 % of train when
the source has no test split), scored once, at the end. The course chooses its checkpoint on the test split
it then scores; a slice of dev never scored as test keeps that score honest, for a few hundred training clips.

Loading is strict about the *shape* of a source and lenient about its *rows*. A source that cannot give
a training set (no such folder, no train split, a tsv without ``path``/``sentence``, a tsv that is not
UTF-8 text) raises ``DataSourceError`` with one sentence saying what was expected. Rows are never
dropped here: a row naming a missing clip, or with an empty sentence, goes on to preprocessing, which
skips it and counts it under its reason (``helpers.preparation``). A tsv is read as Common Voice's own loader
read it (``csv``, tabs, ``QUOTE_NONE``: quotes are part of the sentence, as Common Voice writes them), with a
UTF-8 (or UTF-16) byte-order mark, Windows line ends, and extra or missing optional columns taken in stride.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import datasets
from datasets import Audio, Dataset, DatasetDict, concatenate_datasets
from datasets.exceptions import DatasetsError

from helpers.config import CACHE_DIR, VALIDATION_SIZE
from helpers.runtime.errors import DataSourceError, first_line
from helpers.services.data_mirror import MIRROR_SOURCE, find_archive, is_archive, load_mirror_folder
from helpers.services.hub_errors import explain_hub_error, transport_errors
from helpers.services.mdc import (
    COMMON_VOICE_SOURCE,
    download_from_mdc,
    find_common_voice,
)

TRANSCRIPT_COLUMNS = ("sentence", "transcription", "text", "transcript", "normalized_text")
# Where a teacher's mirror is unpacked outside Colab (in Colab: the runtime's disk, helpers.services.data_mirror).
MIRROR_UNPACK_DIR = CACHE_DIR / "releases"
CV_EXPECTED = "a Common Voice locale folder with clips/, train.tsv, dev.tsv and test.tsv"
# Split folder names an audiofolder may use, as datasets' audiofolder understands them.
SPLIT_NAMES = {
    "train": "train", "training": "train",
    "validation": "validation", "valid": "validation", "dev": "validation", "val": "validation",
    "test": "test", "testing": "test", "eval": "test", "evaluation": "test",
}
_SEARCH_DEPTH = 3  # cv-corpus-23.0-2025-09-05/dv/train.tsv sits two levels below a Drive folder


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    # Spreadsheet programs save "Unicode text" as UTF-16 with a byte-order mark.
    encoding = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataSourceError(
            f"{path} is not UTF-8 text (undecodable byte on line {line}); save it as UTF-8 (Common Voice "
            "ships its tsv files that way)."
        ) from error


def read_cv_tsv(path: Path) -> list[dict[str, str]]:
    """Read one Common Voice tsv into dicts keyed by its header, as Common Voice's own loader read them: the
    ``csv`` module, tab-separated, ``QUOTE_NONE`` (Common Voice never quotes a field, and a quote inside a
    sentence is part of it). A BOM, CRLF, blank lines and rows with missing or surplus cells are fine.

    Raises ``DataSourceError`` when the file is not text or has no ``path`` or ``sentence`` column.
    """
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = [name.strip() for name in next(reader, [])]
    if not any(header):
        raise DataSourceError(f"{path} is empty; expected a header row with at least 'path' and 'sentence'.")
    missing = {"path", "sentence"} - set(header)
    if missing:
        raise DataSourceError(
            f"{path} has no {' or '.join(sorted(missing))} column; a Common Voice tsv has a header like "
            "'client_id path sentence up_votes down_votes age gender accents variant locale segment'."
        )
    records = []
    for row in reader:
        cells = [cell.strip() for cell in row[: len(header)]]  # surplus cells have no column to go in
        if any(cells):
            records.append(dict(zip(header, cells + [""] * (len(header) - len(cells)))))
    return records


def _subfolders(folder: Path) -> list[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    # clips/ holds up to a million files in a real release: never walk into it.
    return [Path(e.path) for e in entries if e.is_dir() and e.name not in ("clips", "audios") and e.name[0] != "."]


def find_cv_folders(root: Path, depth: int = _SEARCH_DEPTH) -> list[Path]:
    """Every folder holding a ``train.tsv`` at or up to ``depth`` levels below ``root``."""
    if (root / "train.tsv").is_file():
        return [root]
    if depth == 0:
        return []
    return [found for sub in _subfolders(root) for found in find_cv_folders(sub, depth - 1)]


def find_cv_folder(root: Path) -> Path | None:
    """The one Common Voice locale folder at or below ``root``; ``None`` if there is none.

    Raises ``DataSourceError`` when there are several (a Drive folder holding two languages): guessing
    would train on the wrong one.
    """
    found = find_cv_folders(Path(root))
    if len(found) > 1:
        names = ", ".join(str(p) for p in found[:5]) + (" ..." if len(found) > 5 else "")
        raise DataSourceError(f"{root} holds {len(found)} Common Voice folders ({names}); pass the one to use.")
    return found[0] if found else None


def _clip_path(folder: Path, name: str) -> str:
    """Where a tsv's ``path`` points: ``clips/<name>``; very old releases left out the ``.mp3``."""
    if not name:
        return ""
    clip = folder / "clips" / name
    if not clip.exists() and not Path(name).suffix and (folder / "clips" / f"{name}.mp3").exists():
        clip = folder / "clips" / f"{name}.mp3"
    return str(clip)


def _as_dataset(audio: list[str], sentences: list[str]) -> Dataset:
    return Dataset.from_dict({"audio": audio, "sentence": sentences}).cast_column("audio", Audio(decode=False))


def _cv_split(folder: Path, names: tuple[str, ...]) -> Dataset:
    audio, sentences = [], []
    for name in names:
        if not (folder / f"{name}.tsv").is_file():
            continue
        for record in read_cv_tsv(folder / f"{name}.tsv"):
            # Rows naming a missing clip are kept here and counted as "file not found" in preprocessing.
            audio.append(_clip_path(folder, record["path"]))
            sentences.append(record["sentence"])
    return _as_dataset(audio, sentences)


def _hold_out(train: Dataset, where: str, seed: int) -> tuple[Dataset, Dataset]:
    if len(train) < 2:
        raise DataSourceError(f"{where} has no test split and too few clips ({len(train)}) to hold some out.")
    print(f"{where} has no test split: holding out 10% of train as test (seed {seed}).")
    held = train.train_test_split(test_size=0.1, seed=seed)
    return held["train"], held["test"]


def _seeded_slice(dataset: Dataset, size: int, seed: int) -> tuple[Dataset, Dataset]:
    """``(rest, slice)``: ``size`` rows of ``dataset`` drawn with ``seed``, and the others, both in their order."""
    chosen = set(int(i) for i in np.random.default_rng(seed).choice(len(dataset), size=size, replace=False))
    rest = [i for i in range(len(dataset)) if i not in chosen]
    return dataset.select(rest), dataset.select(sorted(chosen))


def _three_splits(train: Dataset, dev: Dataset | None, test: Dataset | None, where: str, seed: int,
                  validation_size: int) -> DatasetDict:
    """train / validation / test from a source's own splits (see the module docstring)."""
    if validation_size < 1:
        raise DataSourceError(f"validation_size must be at least 1 clip (got {validation_size}).")
    if test is None:
        train, test = _hold_out(train, where, seed)
    if dev is not None and len(dev) > 0:
        rest, validation = _seeded_slice(dev, min(validation_size, len(dev)), seed)
        train = concatenate_datasets([train, rest]) if len(rest) else train
    else:
        if len(train) < 2:
            raise DataSourceError(f"{where} has no dev split and too few training clips ({len(train)}) to hold "
                                  "a validation slice out of them.")
        size = min(validation_size, max(1, len(train) // 10))
        print(f"{where} has no dev split: holding out {size} training clips as validation (seed {seed}).")
        train, validation = _seeded_slice(train, size, seed)
    return DatasetDict(train=train, validation=validation, test=test)


def load_cv_folder(folder: Path, seed: int = 42, validation_size: int = VALIDATION_SIZE) -> DatasetDict:
    """Load a Common Voice release locale folder: validation = ``validation_size`` clips of dev.tsv drawn with
    ``seed``, train = train.tsv + the rest of dev.tsv, test = test.tsv."""
    folder = Path(folder)
    found = find_cv_folder(folder)
    if found is None:
        others = sorted(p.name for p in folder.glob("*.tsv")) if folder.is_dir() else []
        detail = f" (it has {', '.join(others)} but no train split)" if others else ""
        raise DataSourceError(
            f"{folder} holds no train.tsv{detail}; expected {CV_EXPECTED} "
            "(e.g. cv-corpus-*/dv after unpacking the MDC download)."
        )
    train = _cv_split(found, ("train",))
    if len(train) == 0:
        raise DataSourceError(f"{found / 'train.tsv'} lists no clips: there is nothing to train on.")
    test = _cv_split(found, ("test",)) if (found / "test.tsv").is_file() else None
    return _three_splits(train, _cv_split(found, ("dev",)), test, str(found), seed, validation_size)


def _keep_audio_and_sentence(dataset: Dataset, where: str) -> Dataset:
    text = next((c for c in TRANSCRIPT_COLUMNS if c in dataset.column_names), None)
    if "audio" not in dataset.column_names or text is None:
        raise DataSourceError(
            f"{where} has columns {dataset.column_names}; expected 'audio' and a transcript column "
            f"(one of {', '.join(TRANSCRIPT_COLUMNS)})."
        )
    if text != "sentence":
        dataset = dataset.rename_column(text, "sentence")
    dataset = dataset.remove_columns([c for c in dataset.column_names if c not in ("audio", "sentence")])
    return dataset.cast_column("audio", Audio(decode=False))


def _train_validation_test(splits: DatasetDict, where: str, seed: int, validation_size: int) -> DatasetDict:
    names = set(splits)
    if "train" not in names:
        raise DataSourceError(f"{where} has splits {sorted(names)} but no train split; expected at least 'train'.")
    dev = [_keep_audio_and_sentence(splits[n], where) for n in ("validation", "dev", "valid") if n in names]
    test = _keep_audio_and_sentence(splits["test"], where) if "test" in names else None
    return _three_splits(_keep_audio_and_sentence(splits["train"], where), concatenate_datasets(dev) if dev else None,
                         test, where, seed, validation_size)


def _metadata_files(folder: Path) -> list[Path]:
    found = []
    for place in [folder, *(sub for sub in _subfolders(folder) if sub.name.lower() in SPLIT_NAMES)]:
        for name in ("metadata.csv", "metadata.jsonl"):
            if (place / name).is_file():
                found.append(place / name)
    return found


def _read_metadata(path: Path) -> list[dict[str, str]]:
    text = _read_text(path)
    if path.suffix == ".jsonl":
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as error:
            raise DataSourceError(f"{path} line {error.lineno}: not a JSON object ({error.msg}).") from error
    return list(csv.DictReader(text.splitlines()))


def load_audiofolder(folder: Path, seed: int = 42, validation_size: int = VALIDATION_SIZE) -> DatasetDict:
    """Load an ``audiofolder``: ``metadata.csv``/``.jsonl`` rows with ``file_name`` and a transcript column.

    Read here rather than with ``load_dataset("audiofolder")``, which needs torchcodec and stops at the
    first file it cannot find; a missing file is counted in preprocessing instead. The split is the
    metadata file's folder name (``train/``, ``test/``...) or the first folder of ``file_name``.
    """
    folder = Path(folder)
    columns: dict[str, dict[str, list[str]]] = {}
    for meta in _metadata_files(folder):
        rows = _read_metadata(meta)
        if not rows:
            continue
        text = next((c for c in TRANSCRIPT_COLUMNS if c in rows[0]), None)
        if "file_name" not in rows[0] or text is None:
            raise DataSourceError(
                f"{meta} has columns {sorted(rows[0])}; expected 'file_name' and a transcript column "
                f"(one of {', '.join(TRANSCRIPT_COLUMNS)})."
            )
        for row in rows:
            name = str(row.get("file_name") or "").strip()
            first = Path(name).parts[0].lower() if name and len(Path(name).parts) > 1 else ""
            split = SPLIT_NAMES.get(meta.parent.name.lower()) if meta.parent != folder else None
            split = split or SPLIT_NAMES.get(first, "train")
            part = columns.setdefault(split, {"audio": [], "sentence": []})
            part["audio"].append(str(meta.parent / name) if name else "")
            part["sentence"].append(str(row.get(text) or ""))
    if not columns.get("train", {}).get("audio"):
        found = f"it has only {', '.join(sorted(columns))}" if columns else "its metadata lists no files"
        raise DataSourceError(f"{folder} is an audiofolder without a train split ({found}).")
    splits = DatasetDict({name: _as_dataset(part["audio"], part["sentence"]) for name, part in columns.items()})
    return _train_validation_test(splits, str(folder), seed, validation_size)


def load_from_hub(dataset_id: str, seed: int = 42, validation_size: int = VALIDATION_SIZE) -> DatasetDict:
    """Load a Hub dataset (``owner/name`` or ``owner/name:config``) with the same train/validation/test shape."""
    name, _, config = dataset_id.partition(":")
    try:
        splits = datasets.load_dataset(name, config or None)
    # What the Hub and datasets raise for a dataset that cannot be had (not found, gated, bad token, offline,
    # an unknown config, a loading script datasets no longer runs); a bug of ours keeps its traceback.
    except (OSError, ValueError, RuntimeError, DatasetsError, *transport_errors()) as error:
        why = explain_hub_error(error, name, repo_type="dataset") or f"{type(error).__name__}: {first_line(error)}"
        raise DataSourceError(
            f"{dataset_id!r} is not a local folder and could not be loaded as a Hub dataset: {why}."
        ) from error
    return _train_validation_test(splits, dataset_id, seed, validation_size)


def load_from_mdc(dataset_id: str, seed: int = 42, validation_size: int = VALIDATION_SIZE,
                  download_dir: str | None = None) -> DatasetDict:
    """Download (once) a Common Voice release from the Mozilla Data Collective and load it as a release folder
    (:func:`helpers.services.mdc.download_from_mdc` says what each failed download means)."""
    return load_cv_folder(download_from_mdc(dataset_id, download_dir), seed, validation_size)


def load_common_voice(source: str | Path, seed: int = 42, validation_size: int = VALIDATION_SIZE) -> DatasetDict:
    """Load ``source`` (a local release folder, an audiofolder, ``mdc:<id>`` or a Hub id) as train/validation/test.

    ``validation_size`` clips of the source's dev split (of train when it has none), drawn with ``seed``,
    become ``validation``; the rest of dev joins train.

    >>> splits = load_common_voice("data/cv-mini/si")        # doctest: +SKIP
    >>> splits["train"].column_names
    ['audio', 'sentence']
    """
    text = str(source).strip()
    if text.startswith(MIRROR_SOURCE):
        return load_cv_folder(load_mirror_folder(text, MIRROR_UNPACK_DIR), seed, validation_size)
    if text.startswith("mdc:"):
        return load_from_mdc(text[4:].strip(), seed=seed, validation_size=validation_size)
    if text.startswith(COMMON_VOICE_SOURCE):
        release = find_common_voice(text[len(COMMON_VOICE_SOURCE):].strip())
        print(f"Newest Common Voice release in the MDC catalogue: {release.describe()}")
        return load_from_mdc(release.id, seed=seed, validation_size=validation_size)
    path = Path(text).expanduser()
    if path.is_file() and path.name in ("train.tsv", "dev.tsv", "test.tsv", "validated.tsv", "metadata.csv",
                                        "metadata.jsonl"):
        path = path.parent  # a tsv or metadata file stands for its folder
    if is_archive(path):
        return load_cv_folder(load_mirror_folder(str(path), MIRROR_UNPACK_DIR), seed, validation_size)
    if path.is_dir():
        if find_cv_folder(path) is not None:
            return load_cv_folder(path, seed, validation_size)
        if _metadata_files(path):
            return load_audiofolder(path, seed, validation_size)
        if find_archive(path) is not None:  # a teacher's mirror folder: the release's archive, unpacked once
            return load_cv_folder(load_mirror_folder(str(path), MIRROR_UNPACK_DIR), seed, validation_size)
        if any(path.glob("*.tsv")):
            return load_cv_folder(path, seed, validation_size)  # explains which split is missing
        raise DataSourceError(
            f"{path} is neither {CV_EXPECTED} nor an audiofolder (audio files + metadata.csv with file_name "
            "and a transcript column)."
        )
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise DataSourceError(
            f"Data source {text!r} was not found; expected a Common Voice folder, an audiofolder, "
            "'mdc:<dataset-id>', 'common-voice:<locale>' or a Hub dataset id 'owner/name'."
        )
    return load_from_hub(text, seed, validation_size)


def subsample(splits: DatasetDict, max_train: int | None, max_test: int | None) -> DatasetDict:
    """Keep the first ``max_train`` / ``max_test`` clips of train and test when set (a quicker run); the
    validation slice has its own size (``validation_size`` when loading)."""
    for split, limit in (("train", max_train), ("test", max_test)):
        if limit is not None and limit < len(splits[split]):
            splits[split] = splits[split].select(range(limit))
    return splits
