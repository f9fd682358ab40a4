"""The collator pads features and labels, masks label padding with -100, and strips the start token."""

import numpy as np
import pytest
import torch
from transformers.models.whisper.modeling_whisper import shift_tokens_right

from helpers.audio import to_int16
from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding

SOT = 50258


@pytest.fixture
def examples(processor):
    rng = np.random.default_rng(0)
    texts = ["ආයුබෝවන්", "ඔබට කොහොමද මම හොඳින් ඉන්නවා", "hello"]
    return [
        {"audio_16k": to_int16(0.1 * rng.standard_normal(16000 * (i + 1))), "labels": processor.tokenizer(t).input_ids}
        for i, t in enumerate(texts)
    ]


def test_shapes_padding_and_minus_100(processor, examples):
    batch = DataCollatorSpeechSeq2SeqWithPadding(processor, decoder_start_token_id=SOT)(examples)
    assert batch["input_features"].shape == (3, 80, 3000)
    assert batch["input_features"].dtype == torch.float32
    labels = batch["labels"]
    lengths = [len(e["labels"]) - 1 for e in examples]  # the start token is stripped
    assert labels.shape == (3, max(lengths))
    for row, length in zip(labels, lengths):
        assert (row[length:] == -100).all() and (row[:length] != -100).all()
    assert labels[0, 0].item() == processor.tokenizer.convert_tokens_to_ids("<|si|>")


def test_model_sees_exactly_one_start_token(processor, examples):
    """After the model's own right-shift, decoder inputs start with one <|startoftranscript|>, not two."""
    labels = DataCollatorSpeechSeq2SeqWithPadding(processor, decoder_start_token_id=SOT)(examples)["labels"]
    decoder_inputs = shift_tokens_right(labels, processor.tokenizer.pad_token_id, SOT)
    assert (decoder_inputs[:, 0] == SOT).all()
    assert (decoder_inputs[:, 1] != SOT).all()
    assert (decoder_inputs[:, 1:4] == torch.tensor([50322, 50359, 50363])).all()


def test_course_bos_comparison_would_not_strip(processor, examples):
    """The course compares with bos_token_id (<|endoftext|>): its strip never fires on Whisper labels."""
    bos = processor.tokenizer.bos_token_id
    labels = DataCollatorSpeechSeq2SeqWithPadding(processor, decoder_start_token_id=bos)(examples)["labels"]
    decoder_inputs = shift_tokens_right(labels, processor.tokenizer.pad_token_id, SOT)
    assert (decoder_inputs[:, 1] == SOT).all()  # the model would learn to predict the start token


def test_stored_features_and_audio_give_the_same_batch(processor, examples):
    collator = DataCollatorSpeechSeq2SeqWithPadding(processor, decoder_start_token_id=SOT)
    from_audio = collator(examples)
    stored = [
        {"input_features": collator.features([e])[0].numpy(), "labels": e["labels"]} for e in examples
    ]
    from_features = collator(stored)
    torch.testing.assert_close(from_audio["input_features"], from_features["input_features"])
    assert torch.equal(from_audio["labels"], from_features["labels"])


@pytest.mark.parametrize(
    "lengths",
    [[16000, 48000, 1], [0, 5], [480000], [480001, 100], [479999], [1120, 1121], [16000 * 29 + 399]],
)
def test_log_mel_batch_equals_the_feature_extractor(processor, lengths):
    """The trimmed STFT gives the extractor's padded 30 s features: short, empty, exact and over-long clips."""
    from helpers.collator import log_mel_batch

    rng = np.random.default_rng(1)
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]
    reference = processor.feature_extractor(waves, sampling_rate=16000, return_tensors="np").input_features
    ours = log_mel_batch(waves, processor.feature_extractor)
    assert ours.shape == reference.shape == (len(lengths), 80, 3000)
    np.testing.assert_allclose(ours.numpy(), reference, atol=1e-5, rtol=0)


def test_log_mel_batch_keeps_the_extractor_path_when_dithering(processor):
    import copy

    from helpers.collator import log_mel_batch

    extractor = copy.deepcopy(processor.feature_extractor)
    extractor.dither = 1e-3  # noise on the padding too: the trimmed STFT would not be the same
    wave = np.full(16000, 0.01, np.float32)
    torch.manual_seed(0)
    ours = log_mel_batch([wave], extractor)
    padding = ours[0, :, 200:]
    assert padding.std() > 0  # dithered padding varies, unlike the constant fill of the trimmed path
