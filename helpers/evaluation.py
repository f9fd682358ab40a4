"""Scoring a Whisper model on the test split: batched transcription, the four error rates, results files.

Every pass runs where :func:`helpers.device.inference_placement` says (CUDA in fp16 on a T4, else the CPU),
with the model's own generation config (language and task set by ``load_model_and_processor``). A zero-shot
score is kept with a key of everything it depends on (:func:`evaluation_key`), so the CLI and notebook 05
compute it once per model, data and generation settings, not on every run.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from pathlib import Path

import torch
from datasets import Dataset
from transformers import WhisperForConditionalGeneration, WhisperProcessor
from transformers.utils.logging import tqdm  # unlike tqdm.auto, silenced with transformers' progress bars

from .collator import DataCollatorSpeechSeq2SeqWithPadding, full_attention_mask
from .config import CourseConfig
from .device import inference_placement, model_for_inference
from .metrics import wer_scores
from .files import read_json, write_json
from .memory import explain_oom


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


def transcribe(
    model: WhisperForConditionalGeneration,
    processor: WhisperProcessor,
    dataset: Dataset,
    batch_size: int = 16,
    max_length: int = 225,
    sort_by_length: bool = True,
    placement: tuple[torch.device, torch.dtype] | None = None,
) -> list[str]:
    """Transcribe every prepared example, batched; returns texts in ``dataset`` order.

    Features go to ``placement`` (``(device, dtype)``; by default the model's own). Sorting by duration
    puts clips of similar length together, so batches stop generating together. Language and task come
    from ``model.generation_config`` (set by ``load_model_and_processor``).
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
    generation.max_length = max_length
    texts: dict[int, str] = {}
    model.eval()
    notice, generation_log = _WhisperSuppressTokensNotice(), logging.getLogger("transformers.generation.utils")
    generation_log.addFilter(notice)  # only while we generate: see the filter's docstring
    try:
        for start in tqdm(range(0, len(order), batch_size), desc="Transcribing", unit="batch"):
            indices = order[start : start + batch_size]
            features = collator.features([dataset[i] for i in indices]).to(device=device, dtype=dtype)
            mask = full_attention_mask(features)  # Whisper attends to every frame; generate() asks to be told
            with torch.inference_mode(), explain_oom("evaluating", batch_size=batch_size):
                ids = model.generate(input_features=features, attention_mask=mask, generation_config=generation).cpu()
            for i, text in zip(indices, processor.tokenizer.batch_decode(ids, skip_special_tokens=True)):
                texts[i] = text.strip()
    finally:
        generation_log.removeFilter(notice)
    return [texts[i] for i in range(len(dataset))]


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
) -> dict:
    """Scores (``wer_ortho``, ``wer``, ``wer_basic``, ``cer``, ``n``) plus predictions and references.

    The model runs where :func:`helpers.device.inference_placement` says (fp16 on CUDA when ``fp16``); the
    caller's model is left as it was when that needs a converted copy.
    """
    placement = inference_placement(fp16)
    runner = model_for_inference(model, fp16)
    predictions = transcribe(runner, processor, dataset, batch_size, max_length, placement=placement)
    references = references_of(dataset, processor)
    return {"scores": wer_scores(predictions, references), "predictions": predictions, "references": references}


def evaluation_key(config: CourseConfig, model: str, dataset: Dataset, processor: WhisperProcessor) -> dict:
    """What a score depends on: model, data, language, task, generation settings and the clips themselves."""
    clips = hashlib.sha256(json.dumps(references_of(dataset, processor), ensure_ascii=False).encode()).hexdigest()
    return {"model": str(model), "data": config.data, "language": config.language, "task": config.task,
            "generation_max_length": config.generation_max_length, "n": len(dataset), "clips": clips[:16],
            "fp16": config.fp16 and torch.cuda.is_available()}


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


def results_record(config: CourseConfig, baseline: dict, finetuned: dict) -> dict:
    """What ``results.json`` holds, from the CLI and notebook 05 alike: both sides' scores and the run."""
    return {"baseline": baseline, "finetuned": finetuned, "model": config.model, "data": config.data,
            "language": config.language, "task": config.task, "max_steps": config.max_steps}


def predictions_record(zero_shot: dict, fine_tuned: dict) -> dict:
    """What ``predictions.json`` holds, from the CLI and notebook 05 alike: the references and both models'
    transcripts, clip for clip (``zero_shot`` and ``fine_tuned`` as :func:`evaluate_model` returns them)."""
    return {"references": fine_tuned["references"], "zero_shot": zero_shot["predictions"],
            "fine_tuned": fine_tuned["predictions"]}
