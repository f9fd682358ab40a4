"""Batched generation without the two notices transformers printed on every evaluation (issue 13).

"The attention mask is not set ..." came from ``Seq2SeqTrainer``'s evaluation, which hands the collator's
batch to ``generate``: the collator now gives an all-ones mask (what Whisper attends to anyway). "Passing
`generation_config` together with generation-related arguments ..." comes from transformers' own Whisper
``generate``, whatever we pass: ``transcribe`` filters exactly that notice while it runs.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding

MASK_NOTICE = "The attention mask is not set"
CONFIG_NOTICE = "Passing `generation_config` together with generation-related arguments"


@contextmanager
def transformers_log():
    """Every record transformers logs inside the block, at warning verbosity, ``warning_once`` forgotten."""
    from transformers.utils import logging as hf_logging

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    logging.Logger.warning_once.cache_clear()  # an earlier test's notice would otherwise not be logged again
    handler = Keep()
    logging.getLogger("transformers").addHandler(handler)
    try:
        yield records
    finally:
        logging.getLogger("transformers").removeHandler(handler)
        hf_logging.set_verbosity(level)


@pytest.fixture(scope="module")
def smoke():
    from helpers.config import SMOKE_MODEL_DIR
    from helpers.model import load_model_and_processor

    model, processor = load_model_and_processor(str(SMOKE_MODEL_DIR), "sinhalese", "transcribe")
    return model, processor


def test_transcribe_prints_neither_notice_and_the_filter_is_narrow(smoke, prepared):
    from helpers.evaluation import _WhisperSuppressTokensNotice, transcribe

    model, processor = smoke
    test = prepared[1]["test"].select(range(4))
    collator = DataCollatorSpeechSeq2SeqWithPadding(processor, model.config.decoder_start_token_id)
    features = collator.features([test[i] for i in range(4)])
    with transformers_log() as records, torch.inference_mode():
        plain = model.generate(input_features=features, max_length=8)  # no mask, no filter: both notices
    assert any(CONFIG_NOTICE in r for r in records) and any(MASK_NOTICE in r for r in records)
    with transformers_log() as records:
        texts = transcribe(model, processor, test, batch_size=4, max_length=8, sort_by_length=False)
    assert not [r for r in records if CONFIG_NOTICE in r or MASK_NOTICE in r], records
    # The mask changes nothing: the same transcripts as the call without one.
    assert texts == [t.strip() for t in processor.tokenizer.batch_decode(plain, skip_special_tokens=True)]

    def passes(arguments: str) -> bool:
        record = logging.LogRecord("transformers.generation.utils", logging.WARNING, __file__, 1,
                                   f"{CONFIG_NOTICE}=({arguments}) is deprecated ...", None, None)
        return _WhisperSuppressTokensNotice().filter(record)

    assert not passes("{'suppress_tokens', 'begin_suppress_tokens'}")
    assert not passes("{'begin_suppress_tokens', 'suppress_tokens'}")
    assert passes("{'suppress_tokens', 'begin_suppress_tokens', 'max_length'}")  # ours would show
    assert passes("{'num_beams'}")


def test_trainer_evaluation_gets_a_mask_and_training_is_unchanged(smoke, prepared, tmp_path):
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    model, processor = smoke
    rows = prepared[1]["train"].select(range(4))
    collator = DataCollatorSpeechSeq2SeqWithPadding(processor, model.config.decoder_start_token_id)
    batch = collator([rows[i] for i in range(4)])
    assert batch["attention_mask"].shape == (4, 3000) and bool(batch["attention_mask"].eq(1).all())

    # With SpecAugment on (the one place Whisper's forward reads the mask), the same seed gives the same loss
    # and gradients with the mask as without it.
    saved = model.config.apply_spec_augment, model.config.mask_time_prob
    model.config.apply_spec_augment, model.config.mask_time_prob = True, 0.5
    model.train()
    try:
        results = []
        for inputs in (batch, {k: v for k, v in batch.items() if k != "attention_mask"}):
            np.random.seed(0)  # SpecAugment draws its masks with numpy
            model.zero_grad()
            loss = model(**inputs).loss
            loss.backward()
            results.append((loss.item(), model.proj_out.weight.grad.clone()))
        assert results[0][0] == results[1][0]
        assert torch.equal(results[0][1], results[1][1])
    finally:
        model.config.apply_spec_augment, model.config.mask_time_prob = saved
        model.zero_grad(set_to_none=True)
        model.eval()

    # The course's evaluation: Seq2SeqTrainer generates from the collator's batches (given compute_metrics).
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=4, predict_with_generate=True,
                                    generation_max_length=8, report_to=[], use_cpu=True,
                                    remove_unused_columns=False)  # the collator needs audio_16k
    predictions, notices = [], []
    for with_mask in (False, True):
        def collate(examples, with_mask=with_mask):
            out = collator(examples)
            return out if with_mask else {k: v for k, v in out.items() if k != "attention_mask"}

        trainer = Seq2SeqTrainer(model=model, args=args, data_collator=collate, eval_dataset=rows,
                                 compute_metrics=lambda p: {"n": len(p.predictions)})
        with transformers_log() as records:
            predictions.append(trainer.predict(rows).predictions)
        notices.append(any(MASK_NOTICE in r for r in records))
    assert notices == [True, False]
    np.testing.assert_array_equal(predictions[0], predictions[1])
