"""The Hugging Face Audio course's Whisper preprocessing and collator, as written, for comparison.

Only two things differ from the course's code, both forced by the machine, not chosen for speed:

* Rows come from the Common Voice release's tsv files (Common Voice left the Hub), read the way the
  Hub's Common Voice loading script read them, instead of ``load_dataset("mozilla-foundation/...")``.
* ``cast_column("audio", Audio(sampling_rate=16000))`` decodes through torchcodec, which does not load
  beside a CPU-only torch; ``librosa.load(path, sr=16000)`` (what ``datasets`` < 4 used) stands in.

Everything else is the course's: one example per call, ``processor(audio=..., text=...)`` giving a float32
80 x 3000 log-mel matrix per clip however short, ``map(num_proc=1)``, the 30 s filter on train, and the
collator that pads the stored features and (because it compares with ``bos_token_id``) never strips the
start token.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Audio, Dataset, DatasetDict, concatenate_datasets

MAX_INPUT_LENGTH = 30.0


def load_tsv_split(folder: Path, split: str) -> Dataset:
    """One Common Voice split with all its tsv columns; ``audio`` holds the clip's path."""
    with open(folder / f"{split}.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    columns = {name: [row[name] for row in rows] for name in (rows[0] if rows else ["path", "sentence"])}
    columns["audio"] = [str(folder / "clips" / row["path"]) for row in rows]
    return Dataset.from_dict(columns)


def load_common_voice_recipe(folder: Path) -> DatasetDict:
    """The course's ``train = train+validation``, ``test = test``, then ``select_columns``."""
    common_voice = DatasetDict()
    common_voice["train"] = concatenate_datasets([load_tsv_split(folder, "train"), load_tsv_split(folder, "dev")])
    common_voice["test"] = load_tsv_split(folder, "test")
    common_voice = common_voice.select_columns(["audio", "sentence"])
    # decode=False: torchcodec cannot decode here; librosa does it in prepare_dataset below.
    return common_voice.cast_column("audio", Audio(sampling_rate=16000, decode=False))


def prepare_dataset(example: dict, processor: Any) -> dict:
    """The course's ``prepare_dataset``, with ``librosa.load`` decoding in place of the Audio feature."""
    import librosa

    array, sampling_rate = librosa.load(example["audio"]["path"], sr=16000)
    audio = {"array": array, "sampling_rate": sampling_rate}
    example = processor(audio=audio["array"], sampling_rate=audio["sampling_rate"], text=example["sentence"])
    # compute input length of audio sample in seconds
    example["input_length"] = len(audio["array"]) / audio["sampling_rate"]
    return example


def is_audio_in_length_range(length: float) -> bool:
    return length < MAX_INPUT_LENGTH


def map_dataset(folder: Path, processor: Any, num_proc: int = 1) -> DatasetDict:
    """Load and preprocess as the course does: ``map(prepare_dataset, num_proc=1)``."""
    common_voice = load_common_voice_recipe(folder)
    return common_voice.map(
        prepare_dataset,
        fn_kwargs={"processor": processor},
        remove_columns=common_voice.column_names["train"],
        num_proc=num_proc,
    )


def filter_train(common_voice: DatasetDict) -> DatasetDict:
    """The course's filter: drop training clips of 30 s or more."""
    common_voice["train"] = common_voice["train"].filter(is_audio_in_length_range, input_columns=["input_length"])
    return common_voice


def preprocess(folder: Path, processor: Any, num_proc: int = 1) -> DatasetDict:
    """The course's whole preprocessing: :func:`map_dataset` then :func:`filter_train`."""
    return filter_train(map_dataset(folder, processor, num_proc))


@dataclass
class DataCollatorSpeechSeq2SeqWithPadding:
    """The course's collator, verbatim."""

    processor: Any

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        # split inputs and labels since they have to be of different lengths and need different padding methods
        # first treat the audio inputs by simply returning torch tensors
        input_features = [{"input_features": feature["input_features"][0]} for feature in features]
        batch = self.processor.feature_extractor.pad(input_features, return_tensors="pt")

        # get the tokenized label sequences
        label_features = [{"input_ids": feature["labels"]} for feature in features]
        # pad the labels to max length
        labels_batch = self.processor.tokenizer.pad(label_features, return_tensors="pt")

        # replace padding with -100 to ignore loss correctly
        labels = labels_batch["input_ids"].masked_fill(labels_batch.attention_mask.ne(1), -100)

        # if bos token is appended in previous tokenization step,
        # cut bos token here as it's append later anyways
        if (labels[:, 0] == self.processor.tokenizer.bos_token_id).all().cpu().item():
            labels = labels[:, 1:]

        batch["labels"] = labels

        return batch
