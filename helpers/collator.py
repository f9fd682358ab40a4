"""Batching for Whisper fine-tuning: log-mel features padded to 30 s, labels padded with -100."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import WhisperFeatureExtractor, WhisperProcessor

from helpers.audio import SAMPLING_RATE, from_int16


def log_mel_batch(waves: list[np.ndarray], extractor: WhisperFeatureExtractor) -> torch.Tensor:
    """``extractor(waves, sampling_rate=16000).input_features`` as a tensor, computed only where there is audio.

    The extractor pads every clip with zeros to 30 s and transforms all of it, though every frame whose
    window holds only padding comes out as the same value: log10 of the 1e-10 floor, raised to the
    clip's own maximum minus 8. So the STFT runs over the batch's longest clip plus one window (bit for bit
    the same frames, as the reflection at the cut end only reflects zeros), and the rest is filled in.
    The result equals the extractor's to within 1e-6 (``tests/test_collator.py``) in about 7x less time
    for a batch of 8 clips of 7.4 s on average (``benchmarks/``: 6.8x in docs/benchmarks.md); the shorter
    the clips, the larger the gain. Extractors that dither (add noise to the padding too) take the
    extractor's own path.
    """
    n_samples, hop, n_fft = extractor.n_samples, extractor.hop_length, extractor.n_fft
    if getattr(extractor, "dither", 0.0) != 0.0:
        return torch.from_numpy(extractor(waves, sampling_rate=SAMPLING_RATE, return_tensors="np").input_features)
    longest = min(n_samples, max(len(w) for w in waves))
    # A whole number of hops, and at least one window of zeros after the longest clip (see above).
    length = min(n_samples, -(-(longest + n_fft) // hop) * hop)
    batch = torch.zeros(len(waves), length)
    for row, wave in zip(batch, waves):
        clip = torch.as_tensor(np.asarray(wave, dtype=np.float32)[:length])
        row[: len(clip)] = clip
    stft = torch.stft(batch, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True)
    power = (stft[..., :-1].abs() ** 2).contiguous()  # the extractor drops the last frame too
    mel = torch.from_numpy(extractor.mel_filters).to(torch.float32).T @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    # The clamp keeps every value >= -10 (an all-zero frame's), so the computed frames hold the clip's peak.
    peak = log_spec.amax(dim=(1, 2), keepdim=True)
    out = (peak - 8.0).clamp(min=-10.0).expand(-1, log_spec.shape[1], n_samples // hop).clone()
    out[..., : log_spec.shape[2]] = torch.maximum(log_spec, peak - 8.0)
    return (out + 4.0) / 4.0


def full_attention_mask(features: torch.Tensor) -> torch.Tensor:
    """An all-ones ``attention_mask`` for a log-mel batch: (batch, frames), on the features' device.

    Whisper's encoder takes no mask and attends to all 3000 frames, padding included: that is how it was
    trained. Saying so explicitly is what ``generate`` asks for: given batched features without a mask it warns
    "The attention mask is not set ..." (``Seq2SeqTrainer``'s evaluation passes the collator's batch to it).
    The model's forward reads the mask only for SpecAugment, where all ones means what no mask means, so
    training computes exactly what it did without one (``tests/test_eval_warnings.py``).
    """
    return torch.ones(features.shape[0], features.shape[-1], dtype=torch.long, device=features.device)


@dataclass
class DataCollatorSpeechSeq2SeqWithPadding:
    """Turn prepared examples into ``input_features`` (batch, 80, 3000) and ``labels`` (batch, length).

    Examples carry either stored ``input_features``, one (80, 3000) matrix each, or ``audio_16k`` (ours),
    from which the whole batch's features are computed at once. (The course's ``prepare_dataset`` stores a
    batch of one, (1, 80, 3000), which its own collator unwraps with ``[0]`` and this one does not.) Label
    padding becomes -100 so the loss ignores it. The tokenizer starts every label with
    ``<|startoftranscript|>``, and the model prepends ``decoder_start_token_id`` (the same token) when it
    shifts labels right; so when every row starts with it we strip it, or the model would see it twice and
    learn to predict it. (The course compares with ``bos_token_id``, which is ``<|endoftext|>`` for
    Whisper, so its strip never fires.)
    """

    processor: WhisperProcessor
    decoder_start_token_id: int

    def features(self, examples: list[dict]) -> torch.Tensor:
        """The padded log-mel batch for ``examples``."""
        extractor = self.processor.feature_extractor
        if "input_features" in examples[0]:
            batch = extractor.pad([{"input_features": e["input_features"]} for e in examples], return_tensors="pt")
        else:
            return log_mel_batch([from_int16(e["audio_16k"]) for e in examples], extractor)
        return batch["input_features"]

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        features = self.features(examples)
        batch = {"input_features": features, "attention_mask": full_attention_mask(features)}
        if "labels" in examples[0]:
            padded = self.processor.tokenizer.pad({"input_ids": [e["labels"] for e in examples]}, return_tensors="pt")
            labels = padded["input_ids"].masked_fill(padded["attention_mask"].ne(1), -100)
            if (labels[:, 0] == self.decoder_start_token_id).all():
                labels = labels[:, 1:]
            batch["labels"] = labels
        return batch
