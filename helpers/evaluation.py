"""Scoring a Whisper model on the test split: batched transcription, the four error rates, results files.

Every pass runs where :func:`helpers.runtime.device.inference_placement` says (CUDA in fp16 on a T4, else the CPU),
with the model's own generation config (language and task set by ``load_model_and_processor``). A zero-shot
score is kept with a key of everything it depends on (:func:`evaluation_key`), so the CLI and notebook 05
compute it once per model, data and generation settings, not on every run.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import WhisperForConditionalGeneration, WhisperProcessor
from transformers.cache_utils import EncoderDecoderCache, StaticCache
from transformers.utils.logging import tqdm  # unlike tqdm.auto, silenced with transformers' progress bars

from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding, full_attention_mask
from helpers.config import CourseConfig
from helpers.metrics import SCORE_NAMES, wer_scores
from helpers.runtime.device import explain_oom, inference_placement, model_for_inference
from helpers.runtime.errors import CourseError
from helpers.runtime.workspace import language_token, read_json, write_json


class _WhisperSuppressTokensNotice(logging.Filter):
    """Drops transformers' deprecation notice about its own Whisper call, and nothing else.

    ``WhisperGenerationMixin.generate`` hands ``suppress_tokens`` and ``begin_suppress_tokens`` to
    ``GenerationMixin.generate`` beside a ``generation_config`` (a workaround, transformers PR #48108), which
    then warns "Passing `generation_config` together with generation-related arguments=(...) is deprecated".
    It does so whatever the caller passes (a config alone, keyword arguments alone, or neither; checked with
    transformers 5.24), so no call of ours can avoid it and it says nothing about our call. A notice naming
    any other argument still passes.
    """

    PREFIX = "Passing `generation_config` together with generation-related arguments=("
    ARGUMENTS = frozenset({"suppress_tokens", "begin_suppress_tokens"})

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(self.PREFIX):
            return True
        named = message[len(self.PREFIX) : message.find(")", len(self.PREFIX))].strip("{}")
        return {name.strip(" '\"") for name in named.split(",")} != self.ARGUMENTS


# A pass of fewer batches decodes eagerly on a GPU too: compiling the decoder step takes about a minute (an
# estimate: benchmarks/gpu_eval.py measures it) and saves a few seconds a batch (45 ms a step eagerly).
FAST_GENERATE_MIN_BATCHES = 20


def choose_decoding(fast: bool | None, device: torch.device | str, batches: int) -> tuple[bool, str]:
    """``(fast, why)``: whether a pass of ``batches`` batches on ``device`` decodes with a static KV cache.

    ``fast`` is ``config.fast_generate``: ``True`` or ``False`` is the caller's choice; ``None`` chooses.
    On CUDA, transformers compiles the decoder step of a static-cache ``generate`` (``torch.compile`` in
    "reduce-overhead" mode: CUDA graphs), which replaces about 45 ms of kernel launches a step by one graph
    replay; a short pass does not earn the compilation back. On the CPU nothing is compiled (transformers
    compiles on accelerators only) and a static cache only adds work: each step attends to every slot up
    to ``max_length`` instead of to the tokens so far.
    """
    if fast is not None:
        return fast, f"fast_generate={fast} was set"
    if torch.device(device).type != "cuda":
        return False, "on the CPU a static cache is not compiled and only adds work (fast_generate=True forces it)"
    if batches < FAST_GENERATE_MIN_BATCHES:
        return False, (f"{batches} batches are too few to earn back compiling the decoder step "
                       f"(fewer than {FAST_GENERATE_MIN_BATCHES}; fast_generate=True forces it)")
    return True, "a CUDA GPU: static KV cache, decoder step compiled with CUDA graphs (fast_generate=False turns it off)"


class StaticDecoding:
    """One static KV cache for every batch of a pass, and every batch padded to the same number of rows.

    Same shapes at every call let the compiled decoder step (and its CUDA graphs) be reused from batch to
    batch; a new cache per call (``cache_implementation="static"``) would give the graphs new addresses
    every batch. The last, shorter batch is padded with copies of its last clip, which stop where it stops.
    """

    # Whisper's generate() counts max_length after its decoder prompt: <|startoftranscript|>, language, task
    # and <|notimestamps|> come on top (WhisperGenerationMixin._set_max_new_tokens_and_length).
    PROMPT_TOKENS = 4

    def __init__(self, model: WhisperForConditionalGeneration, rows: int, max_length: int) -> None:
        config = model.config
        self.rows = rows
        length = min(max_length + self.PROMPT_TOKENS, config.max_target_positions)
        self.cache = EncoderDecoderCache(StaticCache(config=config, max_cache_len=length),
                                         StaticCache(config=config, max_cache_len=config.max_source_positions))

    def pad(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` with copies of its last row appended up to ``rows``; the cache emptied for a new batch."""
        self.cache.reset()  # keeps its tensors (and their addresses), zeroes what they hold
        missing = self.rows - features.shape[0]
        return torch.cat([features, features[-1:].expand(missing, *features.shape[1:])]) if missing > 0 else features


def transcribe_ids(
    model: WhisperForConditionalGeneration,
    processor: WhisperProcessor,
    dataset: Dataset,
    batch_size: int = 16,
    max_length: int = 225,
    sort_by_length: bool = True,
    placement: tuple[torch.device, torch.dtype] | None = None,
    num_beams: int = 1,
    fast: bool = False,
) -> list[list[int]]:
    """Generate every prepared example's token ids, batched; returns them in ``dataset`` order.

    Each list holds the ids after the decoder prompt, up to its end of text (excluded). Features go to
    ``placement`` (``(device, dtype)``; by default the model's own). Sorting by duration puts clips of
    similar length together, so batches stop generating together. Language and task come from
    ``model.generation_config`` (set by ``load_model_and_processor``); ``num_beams`` 1 is greedy, as the
    course. ``fast`` decodes with a static KV cache (:class:`StaticDecoding`; see :func:`choose_decoding`).
    """
    collator = DataCollatorSpeechSeq2SeqWithPadding(processor, model.config.decoder_start_token_id)
    order = list(range(len(dataset)))
    if sort_by_length and "duration" in dataset.column_names:
        durations = dataset["duration"]  # one column read; dataset[i] would decode every row's audio too
        order.sort(key=lambda i: durations[i])
    parameter = next(model.parameters())
    device, dtype = placement or (parameter.device, parameter.dtype)
    # One generation config with every setting (passing max_length beside it is deprecated).
    generation = copy.deepcopy(model.generation_config)
    generation.max_length, generation.num_beams = max_length, num_beams
    static = StaticDecoding(model, batch_size * num_beams, max_length) if fast else None
    end = generation.eos_token_id
    end = set(end if isinstance(end, list) else [end])
    generated: dict[int, list[int]] = {}
    model.eval()
    notice, generation_log = _WhisperSuppressTokensNotice(), logging.getLogger("transformers.generation.utils")
    generation_log.addFilter(notice)  # only while we generate: see the filter's docstring
    try:
        for start in tqdm(range(0, len(order), batch_size), desc="Transcribing", unit="batch"):
            indices = order[start : start + batch_size]
            features = collator.features([dataset[i] for i in indices]).to(device=device, dtype=dtype)
            with torch.inference_mode(), explain_oom("evaluating", batch_size=batch_size):
                cache = {}
                if static:
                    features, cache = static.pad(features), {"cache": static.cache}
                mask = full_attention_mask(features)  # Whisper attends to every frame; generate() asks to be told
                ids = model.generate(input_features=features, attention_mask=mask, generation_config=generation,
                                     **cache).cpu()
            for i, row in zip(indices, ids.tolist()):
                generated[i] = next((row[:k] for k, token in enumerate(row) if token in end), row)
    finally:
        generation_log.removeFilter(notice)
    return [generated[i] for i in range(len(dataset))]


def transcribe(
    model: WhisperForConditionalGeneration,
    processor: WhisperProcessor,
    dataset: Dataset,
    batch_size: int = 16,
    max_length: int = 225,
    sort_by_length: bool = True,
    placement: tuple[torch.device, torch.dtype] | None = None,
    num_beams: int = 1,
    fast: bool = False,
) -> list[str]:
    """Transcribe every prepared example (:func:`transcribe_ids`, the same arguments); texts in ``dataset`` order."""
    ids = transcribe_ids(model, processor, dataset, batch_size, max_length, sort_by_length, placement, num_beams, fast)
    return [text.strip() for text in processor.tokenizer.batch_decode(ids, skip_special_tokens=True)]


def references_of(dataset: Dataset, processor: WhisperProcessor) -> list[str]:
    """The test split's reference transcripts: the sentences, or the labels decoded when there are none."""
    if "sentence" in dataset.column_names:
        return [s.strip() for s in dataset["sentence"]]
    return [processor.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in dataset["labels"]]


def evaluate_model(
    model: WhisperForConditionalGeneration,
    processor: WhisperProcessor,
    dataset: Dataset,
    batch_size: int = 16,
    max_length: int = 225,
    fp16: bool = False,
    num_beams: int = 1,
    fast: bool | None = None,
) -> dict:
    """Scores (``wer_ortho``, ``wer``, ``wer_words``, ``cer_words``, ``n``) plus predictions, references and seconds.

    The model runs where :func:`helpers.runtime.device.inference_placement` says (fp16 on CUDA when ``fp16``); the
    caller's model is left as it was when that needs a converted copy. ``num_beams`` 1 is greedy decoding,
    the course's; ``fast`` is ``config.fast_generate`` (:func:`choose_decoding` says which way and why).
    """
    placement = inference_placement(fp16)
    fast, why = choose_decoding(fast, placement[0], math.ceil(len(dataset) / batch_size))
    print(f"Decoding {'with a static KV cache' if fast else 'eagerly'}"
          f"{f', {num_beams} beams' if num_beams > 1 else ' (greedy)'}: {why}.")
    started = time.perf_counter()
    runner = model_for_inference(model, fp16)
    predictions = transcribe(runner, processor, dataset, batch_size, max_length, placement=placement,
                             num_beams=num_beams, fast=fast)
    references = references_of(dataset, processor)
    return {"scores": wer_scores(predictions, references), "predictions": predictions, "references": references,
            "seconds": round(time.perf_counter() - started, 1)}


def evaluation_key(config: CourseConfig, model: str, dataset: Dataset, processor: WhisperProcessor) -> dict:
    """What a score depends on: model, data, language (as Whisper's token: any spelling of it), task,
    generation settings, the clips themselves, and the names of the scores (a baseline saved when ``wer``
    meant another metric is computed again)."""
    clips = hashlib.sha256(json.dumps(references_of(dataset, processor), ensure_ascii=False).encode()).hexdigest()
    return {"model": str(model), "data": config.data, "language": language_token(config.language),
            "task": config.task, "generation_max_length": config.generation_max_length, "n": len(dataset),
            "clips": clips[:16],
            "fp16": config.fp16 and torch.cuda.is_available(), "metrics": list(SCORE_NAMES)}


def reuse_or_evaluate(path: str | Path, key: dict, evaluate) -> tuple[dict, bool]:
    """The evaluation saved in ``path`` when its key equals ``key``; else ``evaluate()``, saved with ``key``.

    Returns ``(result, reused)``. ``result`` has ``scores``, ``predictions`` and ``references``.
    """
    saved = read_json(path)
    if isinstance(saved, dict) and saved.get("key") == key and "scores" in saved:
        return saved, True
    result = evaluate()
    write_json(path, {"key": key, **result})
    return result, False


def results_record(config: CourseConfig, baseline: dict, finetuned: dict, beam_search: dict | None = None) -> dict:
    """What ``results.json`` holds, from the CLI and notebook 05 alike: both sides' scores and the run.

    ``metrics`` names the scores, so that :func:`read_results` can refuse a file from before the course's
    names meant the course's metrics (there ``wer`` was ours, now ``wer_words``). ``beam_search``
    (:func:`beam_search_record`), when given, is the fine-tuned model's beam-search score beside
    ``finetuned``, the greedy one, which is what the course's WER measures.
    """
    record = {"baseline": baseline, "finetuned": finetuned, "metrics": list(SCORE_NAMES), "model": config.model,
              "data": config.data, "language": config.language, "task": config.task, "max_steps": config.max_steps}
    if beam_search is not None:
        record["finetuned_beam_search"] = beam_search
    return record


def read_results(path: str | Path) -> dict:
    """``results.json`` as :func:`results_record` wrote it, or a ``CourseError`` if its scores are named otherwise."""
    record = read_json(path)
    if not isinstance(record, dict) or record.get("metrics") != list(SCORE_NAMES):
        raise CourseError(f"{path} names its scores differently from this version (its 'wer' may be another "
                          "metric): run 05_evaluate.ipynb (or python -m helpers run) again to rewrite it.")
    return record


def beam_search_record(greedy: dict, beams: dict, num_beams: int) -> dict:
    """The beam-search pass's scores, named, with both passes' seconds (what the beams cost on this machine)."""
    return {"num_beams": num_beams, "scores": beams["scores"], "seconds": beams.get("seconds"),
            "greedy_seconds": greedy.get("seconds"),
            "note": "finetuned holds the greedy score, the one that compares with the course's WER"}


def predictions_record(zero_shot: dict, fine_tuned: dict) -> dict:
    """What ``predictions.json`` holds, from the CLI and notebook 05 alike: the references and both models'
    transcripts, clip for clip (``zero_shot`` and ``fine_tuned`` as :func:`evaluate_model` returns them)."""
    return {"references": fine_tuned["references"], "zero_shot": zero_shot["predictions"],
            "fine_tuned": fine_tuned["predictions"]}
