"""Batching for Whisper fine-tuning: log-mel features padded to 30 s, labels padded with -100."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import WhisperProcessor

from .audio import SAMPLING_RATE, from_int16


@dataclass
class DataCollatorSpeechSeq2SeqWithPadding:
    """Turn prepared examples into ``input_features`` (batch, 80, 3000) and ``labels`` (batch, length).

    Examples carry either stored ``input_features`` (the course's recipe) or ``audio_16k`` (ours), from
    which the whole batch's features are computed at once. Label padding becomes -100 so the loss ignores
    it. The tokenizer starts every label with ``<|startoftranscript|>``, and the model prepends
    ``decoder_start_token_id`` (the same token) when it shifts labels right; so when every row starts
    with it we strip it, or the model would see it twice and learn to predict it. (The course compares
    with ``bos_token_id``, which is ``<|endoftext|>`` for Whisper, so its strip never fires.)
    """

    processor: WhisperProcessor
    decoder_start_token_id: int

    def features(self, examples: list[dict]) -> torch.Tensor:
        """The padded log-mel batch for ``examples``."""
        extractor = self.processor.feature_extractor
        if "input_features" in examples[0]:
            batch = extractor.pad([{"input_features": e["input_features"]} for e in examples], return_tensors="pt")
        else:
            waves = [from_int16(e["audio_16k"]) for e in examples]
            batch = extractor(waves, sampling_rate=SAMPLING_RATE, return_tensors="pt")
        return batch["input_features"]

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        batch = {"input_features": self.features(examples)}
        if "labels" in examples[0]:
            padded = self.processor.tokenizer.pad({"input_ids": [e["labels"] for e in examples]}, return_tensors="pt")
            labels = padded["input_ids"].masked_fill(padded["attention_mask"].ne(1), -100)
            if (labels[:, 0] == self.decoder_start_token_id).all():
                labels = labels[:, 1:]
            batch["labels"] = labels
        return batch
