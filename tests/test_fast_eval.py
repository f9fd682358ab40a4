"""The fast evaluation path (a static KV cache reused across batches) gives the eager path's ids exactly.

On real OpenAI weights (``tools/pretrained_whisper``: tiny.en and multilingual base) and the bundled speech:
greedy and beam-search ids with ``fast=True`` must equal those of the default dynamic cache, with a last
batch that is padded, rows that end at different steps, and rows that run to ``max_length`` (base loops on
some Sinhala clips). On the CPU transformers does not compile the decoder step, so these tests check the
cache and the batching; compiling it (what a GPU gets) is checked by the gpu tier (tests/test_gpu.py):
inductor needs minutes of two shared cores for one Whisper decoder, too much for CI.
"""

from __future__ import annotations

import csv

import pytest
import torch
from datasets import Dataset

from helpers.audio import load_audio, to_flac
from helpers.config import BUNDLED_CORPUS, get_config
from helpers.evaluation import (
    FAST_GENERATE_MIN_BATCHES,
    choose_decoding,
    transcribe,
    transcribe_ids,
)
from tests.support import pretrained_model


def clips(english: bool, n: int) -> Dataset:
    """``n`` bundled clips (English or Sinhala), stored as preprocessing stores them, with label ids."""
    with open(BUNDLED_CORPUS / "validated.tsv", encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["sentence"].isascii() == english][:n]
    audio = [load_audio(BUNDLED_CORPUS / "clips" / r["path"]) for r in rows]
    return Dataset.from_dict({"audio_16k": [to_flac(a) for a in audio], "duration": [len(a) / 16000 for a in audio],
                              "sentence": [r["sentence"] for r in rows]})


@pytest.fixture(scope="module")
def tiny_en():
    from helpers.model import load_model_and_processor

    return load_model_and_processor(str(pretrained_model("tiny.en")), None, None)


@pytest.fixture(scope="module")
def base():
    from helpers.model import load_model_and_processor

    return load_model_and_processor(str(pretrained_model("base")), "sinhalese", "transcribe")


def both_ways(model, processor, data, **kwargs) -> tuple[list[list[int]], list[list[int]]]:
    torch.manual_seed(0)
    eager = transcribe_ids(model, processor, data, fast=False, **kwargs)
    fast = transcribe_ids(model, processor, data, fast=True, **kwargs)
    return eager, fast


def test_tiny_en_greedy_ids_equal_with_a_padded_last_batch(tiny_en):
    model, processor = tiny_en
    data = clips(english=True, n=5)  # batches of 2, 2 and 1: the last one padded with a copy
    eager, fast = both_ways(model, processor, data, batch_size=2, max_length=48)
    assert fast == eager
    assert all(len(ids) >= 3 for ids in eager)  # speech, transcribed: equal because empty would prove nothing
    assert len({len(ids) for ids in eager}) > 1, "rows ending at different steps are part of the check"


def test_base_greedy_ids_equal_when_rows_run_to_max_length(base):
    model, processor = base
    data = clips(english=False, n=3)
    eager, fast = both_ways(model, processor, data, batch_size=2, max_length=32)
    assert fast == eager
    # Whisper counts max_length after its 4-token prompt: a row that loops fills the cache to its last slot.
    assert max(len(ids) for ids in eager) == 32, [len(ids) for ids in eager]


def test_tiny_en_beam_search_ids_equal(tiny_en):
    model, processor = tiny_en
    data = clips(english=True, n=3)
    eager, fast = both_ways(model, processor, data, batch_size=2, max_length=30, num_beams=2)
    assert fast == eager
    greedy = transcribe(model, processor, data, batch_size=2, max_length=30)
    assert all(text for text in greedy)


def test_the_trainer_evaluates_with_the_static_cache_and_the_same_predictions(tiny_en, tmp_path, capsys):
    """``build_trainer`` puts the static cache into every ``evaluate``/``predict`` (its public gen_kwargs)."""
    from helpers.training import build_trainer

    model, processor = tiny_en
    data = clips(english=True, n=3)
    data = data.add_column("labels", [processor.tokenizer(s).input_ids for s in data["sentence"]])
    caches = set()

    def on_decoder_step(module, args, kwargs):
        if kwargs.get("cache") is not None:  # generate's steps (the loss's forward has none)
            caches.add(type(kwargs["cache"].self_attention_cache).__name__)

    hook = model.model.decoder.register_forward_pre_hook(on_decoder_step, with_kwargs=True)
    predictions = {}
    try:
        for fast in (False, True):
            config = get_config("smoke", model=str(pretrained_model("tiny.en")), language=None, task=None,
                                eval_batch_size=2, generation_max_length=40, fast_generate=fast)
            trainer = build_trainer(model, processor, {"train": data, "validation": data, "test": data}, config, tmp_path / str(fast))
            assert f"decodes {'with a static KV cache' if fast else 'eagerly'}" in capsys.readouterr().out
            caches.clear()
            predictions[fast] = trainer.predict(data).predictions  # batches of 2 clips, then 1
            assert caches == {"StaticCache" if fast else "DynamicCache"}
    finally:
        hook.remove()
    assert (predictions[True] == predictions[False]).all()


def test_the_choice_follows_the_machine_and_the_pass(monkeypatch):
    assert choose_decoding(None, "cpu", 1000) == (False, choose_decoding(None, "cpu", 1)[1])
    assert "CPU" in choose_decoding(None, "cpu", 1000)[1]
    fast, why = choose_decoding(None, "cuda", FAST_GENERATE_MIN_BATCHES - 1)
    assert not fast and "too few" in why
    assert choose_decoding(None, "cuda", FAST_GENERATE_MIN_BATCHES)[0]
    assert choose_decoding(True, "cpu", 1) == (True, "fast_generate=True was set")
    assert choose_decoding(False, "cuda", 10**6)[0] is False
