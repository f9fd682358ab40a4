"""Scoring a Whisper model on the test split: batched transcription, the four error rates, results files.

The zero-shot baseline (:func:`evaluate_zero_shot`) never decodes to the length limit: a zero-shot Whisper
loops on Dhivehi, so its transcripts stop at a repeated tail (:class:`RepeatedTail`) and at the longest
reference's length plus a margin, and the ``t4`` profile transcribes a seeded sample of the test split
(``config.zero_shot_samples``), whose uncertainty comes with the scores. The fine-tuned model's score is
the course's: greedy, up to ``generation_max_length``, on every test clip.

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

import jiwer
import numpy as np
import torch
from datasets import Dataset
from transformers import (
    StoppingCriteria,
    StoppingCriteriaList,
    WhisperForConditionalGeneration,
    WhisperProcessor,
)
from transformers.cache_utils import EncoderDecoderCache, StaticCache
from transformers.utils.logging import (
    tqdm,  # unlike tqdm.auto, silenced with transformers' progress bars
)

from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding, full_attention_mask
from helpers.config import CourseConfig
from helpers.metrics import (
    SCORE_NAMES,
    basic_normalize,
    left_out_note,
    normalize,
    scored_pairs,
    wer_scores,
)
from helpers.runtime.device import explain_oom, inference_placement, model_for_inference
from helpers.runtime.errors import CourseError
from helpers.runtime.workspace import artifact_path, language_token, read_json, stamp, write_json


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


class RepeatedTail(StoppingCriteria):
    """Stops a row whose newest tokens are one piece said ``repeats`` times over (a decoding loop).

    A piece is 1 to ``longest_piece`` tokens; a piece of few tokens must repeat until the repeated tail is
    ``shortest_tail`` tokens long, so a doubled letter or "..." never stops a transcript. The row keeps
    what it generated up to there (the repeats are the model's transcript and are scored as such); it only
    stops spending decoder steps on more of the same. Everything stays on the device: no synchronisation.
    """

    def __init__(self, repeats: int = 4, longest_piece: int = 24, shortest_tail: int = 8) -> None:
        self.repeats, self.longest_piece, self.shortest_tail = repeats, longest_piece, shortest_tail

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if self.repeats < 2:
            return done
        for piece in range(1, self.longest_piece + 1):
            times = max(self.repeats, math.ceil(self.shortest_tail / piece))
            if piece * times > input_ids.shape[1]:
                break
            tail = input_ids[:, -piece * times:].reshape(-1, times, piece)
            done |= (tail == tail[:, -1:]).all(dim=2).all(dim=1)
        return done


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
    stop_repeats: int = 0,
) -> list[list[int]]:
    """Generate every prepared example's token ids, batched; returns them in ``dataset`` order.

    Each list holds the ids after the decoder prompt, up to its end of text (excluded). Features go to
    ``placement`` (``(device, dtype)``; by default the model's own). Sorting by duration puts clips of
    similar length together, so batches stop generating together. Language and task come from
    ``model.generation_config`` (set by ``load_model_and_processor``); ``num_beams`` 1 is greedy, as the
    course. ``fast`` decodes with a static KV cache (:class:`StaticDecoding`; see :func:`choose_decoding`).
    ``stop_repeats`` > 1 stops a transcript whose tail repeats that many times (:class:`RepeatedTail`).
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
    stopping = StoppingCriteriaList([RepeatedTail(stop_repeats)] if stop_repeats > 1 else [])
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
                                     stopping_criteria=stopping, **cache).cpu()
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
    stop_repeats: int = 0,
) -> list[str]:
    """Transcribe every prepared example (:func:`transcribe_ids`, the same arguments); texts in ``dataset`` order."""
    ids = transcribe_ids(model, processor, dataset, batch_size, max_length, sort_by_length, placement, num_beams, fast,
                         stop_repeats)
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
    stop_repeats: int = 0,
) -> dict:
    """Scores (``wer_ortho``, ``wer``, ``wer_words``, ``cer_words``, ``n``) plus predictions, references and seconds.

    The model runs where :func:`helpers.runtime.device.inference_placement` says (fp16 on CUDA when ``fp16``); the
    caller's model is left as it was when that needs a converted copy. ``num_beams`` 1 is greedy decoding,
    the course's; ``fast`` is ``config.fast_generate`` (:func:`choose_decoding` says which way and why);
    ``stop_repeats`` stops looping transcripts (:class:`RepeatedTail`; 0, the course's way, never).
    """
    placement = inference_placement(fp16)
    fast, why = choose_decoding(fast, placement[0], math.ceil(len(dataset) / batch_size))
    print(f"Decoding {'with a static KV cache' if fast else 'eagerly'}"
          f"{f', {num_beams} beams' if num_beams > 1 else ' (greedy)'}: {why}.")
    started = time.perf_counter()
    runner = model_for_inference(model, fp16)
    predictions = transcribe(runner, processor, dataset, batch_size, max_length, placement=placement,
                             num_beams=num_beams, fast=fast, stop_repeats=stop_repeats)
    references = references_of(dataset, processor)
    note = left_out_note(references)
    if note:
        print(note)
    return {"scores": wer_scores(predictions, references), "predictions": predictions, "references": references,
            "seconds": round(time.perf_counter() - started, 1)}


def zero_shot_indices(size: int, samples: int | None, seed: int) -> list[int]:
    """The test clips the zero-shot baseline transcribes: all ``size``, or a seeded sample of ``samples``, in order."""
    if samples is None or samples >= size:
        return list(range(size))
    return sorted(np.random.default_rng(seed).choice(size, size=samples, replace=False).tolist())


def zero_shot_max_length(dataset: Dataset, processor: WhisperProcessor, generation_max_length: int, margin: int) -> int:
    """Tokens a zero-shot transcript may take: the longest reference's text tokens and its end, plus ``margin``,
    at most ``generation_max_length`` (what Whisper's ``generate`` counts after its decoder prompt)."""
    special = set(processor.tokenizer.all_special_ids)
    longest = max((sum(token not in special for token in ids) for ids in dataset["labels"]), default=0)
    return max(1, min(generation_max_length, longest + 1 + margin))


def bootstrap_interval(predictions: list[str], references: list[str], rounds: int = 1000, seed: int = 0) -> dict:
    """95 % intervals of ``wer`` and ``wer_words`` over clips resampled with replacement (what a sample's
    score could have been with other clips of the same split); clip-level errors over reference words."""
    keep = scored_pairs(predictions, references)
    rng = np.random.default_rng(seed)
    out = {}
    for name, clean in (("wer", basic_normalize), ("wer_words", normalize)):
        errors, words = np.zeros(len(keep)), np.zeros(len(keep))
        for row, i in enumerate(keep):
            reference, prediction = clean(references[i]), clean(predictions[i])
            words[row] = len(reference.split())
            if words[row]:
                counts = jiwer.process_words(reference, prediction)
                errors[row] = counts.substitutions + counts.deletions + counts.insertions
            else:
                errors[row] = len(prediction.split())
        if not keep or not words.sum():
            out[name] = None
            continue
        picks = rng.integers(0, len(keep), size=(rounds, len(keep)))
        rates = 100 * errors[picks].sum(axis=1) / np.maximum(words[picks].sum(axis=1), 1)
        out[name] = [round(float(x), 1) for x in np.percentile(rates, [2.5, 97.5])]
    return out


def evaluate_zero_shot(model: WhisperForConditionalGeneration, processor: WhisperProcessor, test: Dataset,
                       config: CourseConfig) -> dict:
    """The zero-shot baseline, as :func:`evaluate_model` returns it, at a fraction of a whole pass's cost.

    ``config.zero_shot_samples`` test clips (a seeded sample; all with ``None``), each transcript stopped at
    a repeated tail (``config.stop_repeats``) and at the longest of those references plus
    ``config.zero_shot_token_margin`` tokens. ``sample`` says which clips (``indices``), of how many, the
    token limit, and the 95 % bootstrap intervals of ``wer`` and ``wer_words``. A zero-shot Whisper sits
    far above 100 % on Dhivehi either way; these only stop it spending decoder steps on loops.
    """
    indices = zero_shot_indices(len(test), config.zero_shot_samples, config.seed)
    clips = test.select(indices) if len(indices) < len(test) else test
    limit = zero_shot_max_length(clips, processor, config.generation_max_length, config.zero_shot_token_margin)
    result = evaluate_model(model, processor, clips, config.eval_batch_size, limit, fp16=config.fp16,
                            fast=config.fast_generate, stop_repeats=config.stop_repeats)
    result["sample"] = {"indices": indices, "of": len(test), "max_length": limit, "stop_repeats": config.stop_repeats,
                        "interval_95": bootstrap_interval(result["predictions"], result["references"])}
    return result


def describe_zero_shot(result: dict) -> str:
    """One line on what the zero-shot score covers: all clips or a sample, with its 95 % interval."""
    sample = result.get("sample") or {}
    n, of = len(sample.get("indices", result.get("predictions", []))), sample.get("of")
    interval = (sample.get("interval_95") or {}).get("wer")
    spread = f"; 95 % interval of wer {interval[0]:.0f}-{interval[1]:.0f} %" if interval else ""
    covered = f"a seeded sample of {n} of the {of} test clips" if of and n < of else f"all {n} test clips"
    limit = f", transcripts stopped at a repeated tail or {sample['max_length']} tokens" if sample else ""
    return f"Zero-shot: {covered}{limit}{spread}."


def evaluation_key(config: CourseConfig, model: str, dataset: Dataset, processor: WhisperProcessor) -> dict:
    """What a score depends on: model, data, language (as Whisper's token: any spelling of it), task, generation
    settings (the zero-shot pass's sample and stopping included), the clips themselves, and the names of the
    scores (a baseline saved when ``wer`` meant another metric is computed again)."""
    clips = hashlib.sha256(json.dumps(references_of(dataset, processor), ensure_ascii=False).encode()).hexdigest()
    return {"model": str(model), "data": config.data, "language": language_token(config.language),
            "task": config.task, "generation_max_length": config.generation_max_length, "n": len(dataset),
            "clips": clips[:16],
            "fp16": config.fp16 and torch.cuda.is_available(), "metrics": list(SCORE_NAMES),
            "zero_shot": {"samples": config.zero_shot_samples, "seed": config.seed, "stop_repeats": config.stop_repeats,
                          "token_margin": config.zero_shot_token_margin}}


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


def evaluate_once(name: str, key: dict, evaluate, processor=None) -> tuple[dict, bool]:
    """:func:`reuse_or_evaluate` on the workspace's artifact ``name`` (``baseline``, ``results``), stamped with
    this run: ``(result, reused)``."""
    result = reuse_or_evaluate(artifact_path(name), key, evaluate)
    stamp(name, processor)
    return result


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
    transcripts, clip for clip (``zero_shot`` as :func:`evaluate_zero_shot` and ``fine_tuned`` as
    :func:`evaluate_model` return them). Where the zero-shot pass transcribed a sample, the clips it left out
    hold ``None``."""
    indices = (zero_shot.get("sample") or {}).get("indices") or range(len(zero_shot["predictions"]))
    aligned: list[str | None] = [None] * len(fine_tuned["predictions"])
    for i, text in zip(indices, zero_shot["predictions"]):
        aligned[i] = text
    return {"references": fine_tuned["references"], "zero_shot": aligned, "fine_tuned": fine_tuned["predictions"]}
