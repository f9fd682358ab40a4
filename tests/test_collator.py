"""The collator: the feature extractor's own log-mel, labels padded with -100, and one start token, not two.

Examples are three bundled Common Voice clips stored as our preprocessing stores them (FLAC); the
reference is ``WhisperFeatureExtractor`` itself, and the course's side is the course's own
``prepare_dataset`` and collator, verbatim, from ``benchmarks/recipe.py``.
"""

import copy
import csv

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers.models.whisper.modeling_whisper import shift_tokens_right

from benchmarks import recipe
from helpers.audio import from_int16, load_audio, to_flac
from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding, log_mel_batch

SOT = 50258
# Measured: 0 on the bundled clips, 1.2e-7 (one float32 rounding) on some odd lengths; docs/benchmarks.md quotes this.
FEATURE_TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def clips(corpus):
    """(clip path, sentence) of the first three test clips of the bundled corpus."""
    with open(corpus / "test.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[:3]
    return [(corpus / "clips" / row["path"], row["sentence"]) for row in rows]


@pytest.fixture
def examples(processor, clips):
    """The clips as our preprocessing stores them: FLAC audio and token ids (different lengths each)."""
    rows = [{"audio_16k": to_flac(load_audio(path)), "labels": processor.tokenizer(text).input_ids}
            for path, text in clips]
    assert len({len(row["labels"]) for row in rows}) > 1 and len({len(row["audio_16k"]) for row in rows}) == 3
    return rows


@pytest.fixture
def course_rows(processor, examples, clips, tmp_path):
    """What the course's ``prepare_dataset`` stores for the very samples our collator reads back.

    It decodes with ``librosa.load``; a float WAV of our samples makes it see them exactly.
    """
    pytest.importorskip("librosa", reason="the course's recipe decodes with librosa (pip install -e .[dev])")
    rows = []
    for index, (example, (_, text)) in enumerate(zip(examples, clips)):
        path = tmp_path / f"{index}.wav"
        sf.write(path, from_int16(example["audio_16k"]), 16000, subtype="FLOAT")
        rows.append(recipe.prepare_dataset({"audio": {"path": str(path)}, "sentence": text}, processor))
    return rows


def test_features_equal_the_feature_extractor_s_own(processor, examples):
    batch = DataCollatorSpeechSeq2SeqWithPadding(processor, decoder_start_token_id=SOT)(examples)
    waves = [from_int16(example["audio_16k"]) for example in examples]
    reference = processor.feature_extractor(waves, sampling_rate=16000, return_tensors="np").input_features
    assert batch["input_features"].shape == reference.shape == (3, 80, 3000)
    assert batch["input_features"].dtype == torch.float32
    np.testing.assert_allclose(batch["input_features"].numpy(), reference, atol=FEATURE_TOLERANCE, rtol=0)


def test_same_batch_as_the_course_recipe_less_the_doubled_start_token(processor, examples, course_rows):
    ours = DataCollatorSpeechSeq2SeqWithPadding(processor, decoder_start_token_id=SOT)(examples)
    course = recipe.DataCollatorSpeechSeq2SeqWithPadding(processor)(course_rows)
    np.testing.assert_allclose(ours["input_features"].numpy(), course["input_features"].numpy(),
                               atol=FEATURE_TOLERANCE, rtol=0)
    assert (course["labels"][:, 0] == SOT).all()  # the course keeps <|startoftranscript|> ...
    assert torch.equal(ours["labels"], course["labels"][:, 1:])  # ... ours strips it; the rest is the same


def test_shapes_padding_and_minus_100(processor, examples):
    labels = DataCollatorSpeechSeq2SeqWithPadding(processor, decoder_start_token_id=SOT)(examples)["labels"]
    lengths = [len(e["labels"]) - 1 for e in examples]  # the start token is stripped
    assert labels.shape == (3, max(lengths))
    for row, example, length in zip(labels, examples, lengths):
        assert row[:length].tolist() == example["labels"][1:]
        assert (row[length:] == -100).all()
    assert labels[0, 0].item() == processor.tokenizer.convert_tokens_to_ids("<|si|>")


def test_model_sees_exactly_one_start_token(processor, examples):
    """After the model's own right-shift, decoder inputs start with one <|startoftranscript|>, not two."""
    labels = DataCollatorSpeechSeq2SeqWithPadding(processor, decoder_start_token_id=SOT)(examples)["labels"]
    decoder_inputs = shift_tokens_right(labels, processor.tokenizer.pad_token_id, SOT)
    assert (decoder_inputs[:, 0] == SOT).all()
    assert (decoder_inputs[:, 1] != SOT).all()
    assert (decoder_inputs[:, 1:4] == torch.tensor([50322, 50359, 50363])).all()


def test_course_collator_never_strips_the_start_token(processor, course_rows):
    """The course compares with bos_token_id (<|endoftext|>): its strip never fires on Whisper labels."""
    assert processor.tokenizer.bos_token_id != SOT
    labels = recipe.DataCollatorSpeechSeq2SeqWithPadding(processor)(course_rows)["labels"]
    decoder_inputs = shift_tokens_right(labels, processor.tokenizer.pad_token_id, SOT)
    assert (decoder_inputs[:, :2] == SOT).all()  # twice: the model learns to predict the start token


@pytest.mark.parametrize(
    "lengths",
    [[16000, 48000, 1], [0, 5], [480000], [480001, 100], [479999], [1120, 1121], [16000 * 29 + 399]],
)
def test_log_mel_batch_equals_the_feature_extractor(processor, lengths):
    """The trimmed STFT gives the extractor's padded 30 s features: short, empty, exact and over-long clips."""
    rng = np.random.default_rng(1)
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]
    reference = processor.feature_extractor(waves, sampling_rate=16000, return_tensors="np").input_features
    ours = log_mel_batch(waves, processor.feature_extractor)
    assert ours.shape == reference.shape == (len(lengths), 80, 3000)
    np.testing.assert_allclose(ours.numpy(), reference, atol=FEATURE_TOLERANCE, rtol=0)


def test_log_mel_batch_keeps_the_extractor_path_when_dithering(processor):
    extractor = copy.deepcopy(processor.feature_extractor)
    extractor.dither = 1e-3  # noise on the padding too: the trimmed STFT would not be the same
    wave = np.full(16000, 0.01, np.float32)
    torch.manual_seed(0)
    ours = log_mel_batch([wave], extractor)
    padding = ours[0, :, 200:]
    assert padding.std() > 0  # dithered padding varies, unlike the constant fill of the trimmed path
