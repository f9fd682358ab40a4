"""The t4 profile's cuts (issue 24 §2): SDPA attention with the course's loss, a zero-shot pass that stops
looping, one evaluation at step 500, beam search on request. Real smoke model, real tokenizer, bundled clips."""

from __future__ import annotations

import pytest
import torch
from transformers import WhisperForConditionalGeneration

from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding
from helpers.config import SMOKE_MODEL_DIR, get_config
from helpers.evaluation import (
    RepeatedTail,
    bootstrap_interval,
    evaluate_zero_shot,
    predictions_record,
    transcribe_ids,
    zero_shot_indices,
    zero_shot_max_length,
)
from helpers.model import load_model_and_processor


def _loss_and_grads(attention: str, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration.from_pretrained(str(SMOKE_MODEL_DIR), attn_implementation=attention)
    model.train()
    model.config.dropout = model.config.attention_dropout = 0.0  # the same arithmetic on both sides
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_training_loads_sdpa_and_its_loss_and_gradients_are_eager_attentions(processor, prepared):
    """The attention we train with gives the course's eager attention's loss and gradients on a real batch."""
    model, _ = load_model_and_processor(str(SMOKE_MODEL_DIR), "sinhalese", "transcribe")
    assert model.config._attn_implementation == "sdpa"
    _, data, _ = prepared
    collator = DataCollatorSpeechSeq2SeqWithPadding(processor, model.config.decoder_start_token_id)
    rows = [data["train"][i] for i in range(4)]
    batch = collator(rows)
    assert (batch["labels"] == -100).any()  # padded labels: the mask path is exercised too
    batch.pop("attention_mask", None)
    sdpa_loss, sdpa_grads = _loss_and_grads("sdpa", batch)
    eager_loss, eager_grads = _loss_and_grads("eager", batch)
    assert torch.isfinite(sdpa_loss) and sdpa_loss.item() > 0
    torch.testing.assert_close(sdpa_loss, eager_loss, rtol=1e-5, atol=1e-5)
    assert sdpa_grads.keys() == eager_grads.keys() and len(sdpa_grads) > 10
    for name in sdpa_grads:
        torch.testing.assert_close(sdpa_grads[name], eager_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_repeated_tail_stops_a_loop_and_nothing_else():
    stop = RepeatedTail(repeats=4)
    looping = [50258, 50322, 50359, 50363] + [11, 12, 13] * 4           # one piece said four times
    doubled = [50258, 50322, 50359, 50363, 7, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]   # a doubled token is a word, not a loop
    three = [50258, 50322, 50359, 50363, 4, 5, 6] + [11, 12, 13] * 3
    single = [50258, 50322, 50359, 50363, 1, 2, 3, 4] + [9] * 8                     # one token needs 8 in a row
    done = stop(torch.tensor([looping, doubled, three, single]))
    assert done.tolist() == [True, False, False, True]
    assert not RepeatedTail(repeats=0)(torch.tensor([looping])).any()   # 0: the course's way, never stops
    assert not stop(torch.tensor([[1, 2, 3]])).any()                    # shorter than any repeated tail


def test_a_loop_stops_early_and_a_transcript_that_ends_is_untouched(processor, prepared):
    """The random smoke model never emits an end of text: it runs to the limit unless its tail repeats."""
    _, data, _ = prepared
    model, _ = load_model_and_processor(str(SMOKE_MODEL_DIR), "sinhalese", "transcribe")
    test = data["test"].select(range(4))
    free = transcribe_ids(model, processor, test, batch_size=4, max_length=40)
    stopped = transcribe_ids(model, processor, test, batch_size=4, max_length=40, stop_repeats=4)
    for full, cut in zip(free, stopped):
        assert full[: len(cut)] == cut  # greedy: the same tokens up to where it stopped
        if len(cut) < len(full):        # stopped: its tail is one piece repeated
            assert RepeatedTail(4)(torch.tensor([cut])).item()
    assert sum(map(len, stopped)) < sum(map(len, free))  # the random model loops: some row stopped early


def test_zero_shot_is_capped_by_the_references_and_sampled_with_a_stated_interval(processor, prepared):
    _, data, _ = prepared
    test = data["test"]
    longest = max(sum(t not in set(processor.tokenizer.all_special_ids) for t in ids) for ids in test["labels"])
    assert zero_shot_max_length(test, processor, 225, 16) == longest + 1 + 16
    assert zero_shot_max_length(test, processor, 20, 16) == 20  # never above generation_max_length
    assert zero_shot_indices(10, None, 42) == list(range(10)) == zero_shot_indices(10, 50, 42)
    sample = zero_shot_indices(2212, 400, 42)
    assert len(set(sample)) == 400 and sample == sorted(sample) and sample == zero_shot_indices(2212, 400, 42)

    config = get_config("smoke", zero_shot_samples=3, generation_max_length=64, eval_batch_size=8)
    model, _ = load_model_and_processor(config.model, config.language, config.task)
    result = evaluate_zero_shot(model, processor, test, config)
    assert result["scores"]["n"] == len(result["predictions"]) == 3
    info = result["sample"]
    assert info["of"] == len(test) and len(info["indices"]) == 3
    assert info["max_length"] == min(64, zero_shot_max_length(test.select(info["indices"]), processor, 225, 16))
    low, high = info["interval_95"]["wer"]
    assert low <= result["scores"]["wer"] <= high or result["scores"]["wer"] == pytest.approx(low, abs=1)
    # predictions.json keeps clip for clip: the clips the sample left out hold None
    fine = {"predictions": ["x"] * len(test), "references": ["y"] * len(test)}
    aligned = predictions_record(result, fine)["zero_shot"]
    assert [aligned[i] for i in info["indices"]] == result["predictions"]
    assert sum(text is None for text in aligned) == len(test) - 3


def test_bootstrap_interval_brackets_a_corpus_wer():
    references = ["a b c d"] * 10 + ["e f"] * 10
    predictions = ["a b c x"] * 10 + ["x y"] * 10  # 1 of 4 wrong, 2 of 2 wrong: corpus WER 50 %
    interval = bootstrap_interval(predictions, references, rounds=500)
    assert interval["wer"][0] < 50 < interval["wer"][1] <= 100
    same = bootstrap_interval(["a b"] * 5, ["a b"] * 5)
    assert same["wer"] == [0.0, 0.0] and same["wer_words"] == [0.0, 0.0]


def test_t4_evaluates_once_at_step_500_saves_every_100_and_beams_on_request():
    t4 = get_config("t4")
    assert (t4.max_steps, t4.eval_steps, t4.save_steps) == (500, 500, 100)
    assert t4.load_best_model_at_end is False  # a save without an evaluation cannot be chosen: none is
    assert t4.eval_num_beams == 1 and get_config("t4", eval_num_beams=5).eval_num_beams == 5
    assert t4.zero_shot_samples and t4.zero_shot_samples < 2212 and t4.stop_repeats > 1
    for profile in ("smoke", "offline", "cpu"):  # the same code paths: values only
        config = get_config(profile)
        assert config.stop_repeats == t4.stop_repeats
        assert config.save_steps % config.eval_steps == 0 or not config.load_best_model_at_end
