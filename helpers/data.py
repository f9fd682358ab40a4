"""Load Common Voice (or any speech corpus shaped like it) into ``DatasetDict(train=..., test=...)``.

Common Voice left the Hugging Face Hub in October 2025 and is published by the Mozilla Data Collective
(MDC). ``load_common_voice`` accepts, in this order of checking:

* a local Common Voice release folder (``clips/`` + ``train.tsv``/``dev.tsv``/``test.tsv``), or any folder
  above one (an unpacked ``cv-corpus-*`` archive, e.g. on Google Drive);
* an ``audiofolder`` (audio files + ``metadata.csv`` with ``file_name`` and a transcript column);
* ``mdc:<dataset-id>``: downloaded with the ``datacollective`` SDK, API key in ``MDC_API_KEY``;
* a Hub dataset id ``owner/name`` (optionally ``owner/name:config``), for mirrors and your own datasets.

Every source gives the same result: ``train`` (train + dev/validation merged, as in the course) and
``test`` (held out), each with only ``audio`` (undecoded, see ``helpers.audio``) and ``sentence``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from datasets import Audio, Dataset, DatasetDict, concatenate_datasets

from .config import CourseError

TRANSCRIPT_COLUMNS = ("sentence", "transcription", "text", "transcript", "normalized_text")


class DataSourceError(CourseError):
    """The data source does not exist or is not shaped as expected; the message says what was expected."""


def _clean(field: str) -> str:
    # Some tools quote every field; Common Voice itself writes quotes inside sentences unescaped.
    field = field.strip()
    if len(field) >= 2 and field[0] == field[-1] == '"':
        field = field[1:-1].replace('""', '"')
    return field


def read_cv_tsv(path: Path) -> list[dict[str, str]]:
    """Read one Common Voice tsv: tolerant of a UTF-8 BOM, Windows line ends, quoting and extra columns."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        lines = handle.read().splitlines()
    rows = list(csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise DataSourceError(f"{path} is empty; expected a header row with at least 'path' and 'sentence'.")
    header = [_clean(name) for name in rows[0]]
    missing = {"path", "sentence"} - set(header)
    if missing:
        raise DataSourceError(
            f"{path} has no {' or '.join(sorted(missing))} column; a Common Voice tsv has a header like "
            "'client_id path sentence up_votes down_votes age gender accents variant locale segment'."
        )
    records = []
    for row in rows[1:]:
        if not any(cell.strip() for cell in row):
            continue
        row = [_clean(cell) for cell in row] + [""] * (len(header) - len(row))
        records.append(dict(zip(header, row)))
    return records


def find_cv_folder(root: Path) -> Path | None:
    """The folder holding ``train.tsv`` at or below ``root`` (an unpacked release nests it as cv-corpus-*/xx)."""
    if (root / "train.tsv").is_file():
        return root
    found = sorted(p.parent for p in root.rglob("train.tsv"))
    return found[0] if found else None


def _cv_split(folder: Path, names: tuple[str, ...]) -> Dataset:
    audio, sentences = [], []
    for name in names:
        if not (folder / f"{name}.tsv").is_file():
            continue
        for record in read_cv_tsv(folder / f"{name}.tsv"):
            clip = record["path"]
            # Rows naming a missing clip are kept here and counted as "file not found" in preprocessing.
            audio.append(str(folder / "clips" / clip) if clip else "")
            sentences.append(record["sentence"])
    return Dataset.from_dict({"audio": audio, "sentence": sentences}).cast_column("audio", Audio(decode=False))


def load_cv_folder(folder: Path) -> DatasetDict:
    """Load a Common Voice release locale folder: train = train.tsv + dev.tsv, test = test.tsv."""
    found = find_cv_folder(folder)
    if found is None:
        raise DataSourceError(
            f"{folder} holds no train.tsv; expected a Common Voice locale folder with clips/, train.tsv, "
            "dev.tsv and test.tsv (e.g. cv-corpus-*/dv after unpacking the MDC download)."
        )
    if not (found / "test.tsv").is_file():
        raise DataSourceError(f"{found} has train.tsv but no test.tsv; the test split is needed for evaluation.")
    return DatasetDict(train=_cv_split(found, ("train", "dev")), test=_cv_split(found, ("test",)))


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


def _train_test(splits: DatasetDict, where: str, seed: int) -> DatasetDict:
    names = set(splits)
    if "train" not in names:
        raise DataSourceError(f"{where} has splits {sorted(names)}; expected at least 'train'.")
    train = [splits["train"]] + [splits[n] for n in ("validation", "dev", "valid") if n in names]
    train = concatenate_datasets([_keep_audio_and_sentence(d, where) for d in train])
    if "test" in names:
        return DatasetDict(train=train, test=_keep_audio_and_sentence(splits["test"], where))
    print(f"{where} has no test split: holding out 10% of train as test (seed {seed}).")
    held = train.train_test_split(test_size=0.1, seed=seed)
    return DatasetDict(train=held["train"], test=held["test"])


def load_audiofolder(folder: Path, seed: int = 42) -> DatasetDict:
    """Load an ``audiofolder`` (``metadata.csv`` with ``file_name`` and a transcript column)."""
    from datasets import load_dataset

    return _train_test(load_dataset("audiofolder", data_dir=str(folder)), str(folder), seed)


def load_from_mdc(dataset_id: str, download_dir: str | None = None) -> DatasetDict:
    """Download (once) a Common Voice release from the Mozilla Data Collective and load its folder."""
    if not os.environ.get("MDC_API_KEY"):
        raise DataSourceError(
            "Loading from the Mozilla Data Collective needs an API key in the MDC_API_KEY environment variable "
            "(create one at https://mozilladatacollective.com, then accept the dataset's terms)."
        )
    from datacollective import download_dataset

    extracted = download_dataset(dataset_id, download_directory=download_dir, extract=True)
    return load_cv_folder(Path(extracted))


def load_from_hub(dataset_id: str, seed: int = 42) -> DatasetDict:
    """Load a Hub dataset (``owner/name`` or ``owner/name:config``) with the same train/test shape."""
    from datasets import load_dataset

    name, _, config = dataset_id.partition(":")
    try:
        splits = load_dataset(name, config or None)
    except Exception as error:
        raise DataSourceError(f"Could not load the Hub dataset {dataset_id!r}: {error}") from error
    return _train_test(splits, dataset_id, seed)


def load_common_voice(source: str | Path, seed: int = 42) -> DatasetDict:
    """Load ``source`` (a local release folder, an audiofolder, ``mdc:<id>`` or a Hub id) as train/test.

    >>> splits = load_common_voice("data/cv-mini/si")        # doctest: +SKIP
    >>> splits["train"].column_names
    ['audio', 'sentence']
    """
    text = str(source)
    if text.startswith("mdc:"):
        return load_from_mdc(text[4:])
    path = Path(text).expanduser()
    if path.is_dir():
        if find_cv_folder(path) is not None:
            return load_cv_folder(path)
        if any(path.rglob("metadata.csv")) or any(path.rglob("metadata.jsonl")):
            return load_audiofolder(path, seed)
        raise DataSourceError(
            f"{path} is neither a Common Voice folder (clips/ + train.tsv, dev.tsv, test.tsv) nor an audiofolder "
            "(audio files + metadata.csv)."
        )
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise DataSourceError(
            f"Data source {text!r} was not found. Expected a Common Voice folder, an audiofolder, "
            "'mdc:<dataset-id>' or a Hub dataset id 'owner/name'."
        )
    return load_from_hub(text, seed)
