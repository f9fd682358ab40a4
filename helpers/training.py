"""Training with ``Seq2SeqTrainer`` on today's API, and batched evaluation of any Whisper model."""

from __future__ import annotations

from pathlib import Path

import torch
from datasets import Dataset, DatasetDict
from tqdm.auto import tqdm
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, WhisperForConditionalGeneration, WhisperProcessor
from transformers.trainer_utils import get_last_checkpoint

from .collator import DataCollatorSpeechSeq2SeqWithPadding
from .config import CourseConfig
from .metrics import make_compute_metrics, wer_scores

OOM_ADVICE = (
    "CUDA ran out of GPU memory. What helps, in order: halve --batch-size and double "
    "--gradient-accumulation-steps (same effective batch), keep gradient checkpointing and fp16 on, pass "
    "--auto-find-batch-size to let the trainer search a batch size that fits, or use a smaller model "
    "(openai/whisper-base)."
)


# transformers renamed gradient_checkpointing to activation_checkpointing (the old name warns until v6).
_CHECKPOINTING = (
    "activation_checkpointing"
    if "activation_checkpointing" in Seq2SeqTrainingArguments.__dataclass_fields__
    else "gradient_checkpointing"
)


def training_arguments(config: CourseConfig, output_dir: str | Path, **extra) -> Seq2SeqTrainingArguments:
    """The course's ``Seq2SeqTrainingArguments``, from ``config``; ``extra`` overrides any of them.

    No Hub token goes in here: training arguments are pickled into every checkpoint (training_args.bin).
    """
    cuda = torch.cuda.is_available()
    args = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=config.train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps,
        max_steps=config.max_steps,
        **{_CHECKPOINTING: config.gradient_checkpointing},
        fp16=config.fp16 and cuda,  # fp16 needs a GPU; on a CPU the same run goes in fp32
        eval_strategy="steps",
        per_device_eval_batch_size=config.eval_batch_size,
        predict_with_generate=True,
        generation_max_length=config.generation_max_length,
        save_steps=config.save_steps,
        eval_steps=config.eval_steps,
        logging_steps=config.logging_steps,
        save_total_limit=config.save_total_limit,
        report_to=["tensorboard"],
        load_best_model_at_end=True,
        metric_for_best_model="wer",
        greater_is_better=False,
        push_to_hub=False,  # pushing is a separate, token-safe step (helpers.hub)
        remove_unused_columns=False,  # the collator needs audio_16k, which the model does not take
        dataloader_num_workers=config.dataloader_num_workers,
        seed=config.seed,
        use_cpu=not cuda,
    )
    args.update(extra)
    return Seq2SeqTrainingArguments(**args)


def build_trainer(
    model: WhisperForConditionalGeneration,
    processor: WhisperProcessor,
    prepared: DatasetDict,
    config: CourseConfig,
    output_dir: str | Path,
    **training_args,
) -> Seq2SeqTrainer:
    """A ``Seq2SeqTrainer`` that trains on ``prepared['train']`` and evaluates WER on ``prepared['test']``."""
    if config.gradient_checkpointing:
        model.config.use_cache = False  # the cache is useless during training and clashes with checkpointing
    collator = DataCollatorSpeechSeq2SeqWithPadding(
        processor=processor, decoder_start_token_id=model.config.decoder_start_token_id
    )
    return Seq2SeqTrainer(
        model=model,
        args=training_arguments(config, output_dir, **training_args),
        train_dataset=prepared["train"],
        eval_dataset=prepared["test"],
        data_collator=collator,
        compute_metrics=make_compute_metrics(processor.tokenizer),
        processing_class=processor,
    )


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-*`` folder in ``output_dir`` that holds a complete save, or ``None``."""
    if not Path(output_dir).is_dir():
        return None
    return get_last_checkpoint(str(output_dir))


def train(trainer: Seq2SeqTrainer, resume: bool = True):
    """Train, resuming from the last checkpoint in the output folder when ``resume`` and one exists."""
    checkpoint = last_checkpoint(trainer.args.output_dir) if resume else None
    if checkpoint:
        print(f"Resuming from {checkpoint}")
    try:
        return trainer.train(resume_from_checkpoint=checkpoint)
    except torch.cuda.OutOfMemoryError as error:
        raise RuntimeError(OOM_ADVICE) from error


def transcribe(
    model: WhisperForConditionalGeneration,
    processor: WhisperProcessor,
    dataset: Dataset,
    batch_size: int = 16,
    max_length: int = 225,
    sort_by_length: bool = True,
) -> list[str]:
    """Transcribe every prepared example, batched; returns texts in ``dataset`` order.

    Sorting by duration puts clips of similar length together, so batches stop generating together.
    Language and task come from ``model.generation_config`` (set by ``load_model_and_processor``).
    """
    collator = DataCollatorSpeechSeq2SeqWithPadding(processor, model.config.decoder_start_token_id)
    order = list(range(len(dataset)))
    if sort_by_length:
        order.sort(key=lambda i: dataset[i]["duration"] if "duration" in dataset.column_names else 0.0)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    texts: dict[int, str] = {}
    model.eval()
    for start in tqdm(range(0, len(order), batch_size), desc="Transcribing", unit="batch"):
        indices = order[start : start + batch_size]
        features = collator.features([dataset[i] for i in indices]).to(device, dtype)
        with torch.inference_mode():
            ids = model.generate(input_features=features, max_length=max_length)
        for i, text in zip(indices, processor.tokenizer.batch_decode(ids, skip_special_tokens=True)):
            texts[i] = text.strip()
    return [texts[i] for i in range(len(dataset))]


def evaluate_model(
    model: WhisperForConditionalGeneration,
    processor: WhisperProcessor,
    dataset: Dataset,
    batch_size: int = 16,
    max_length: int = 225,
) -> dict:
    """Scores (``wer_ortho``, ``wer``, ``wer_basic``, ``cer``, ``n``) plus predictions and references."""
    predictions = transcribe(model, processor, dataset, batch_size, max_length)
    if "sentence" in dataset.column_names:
        references = [s.strip() for s in dataset["sentence"]]
    else:
        references = [processor.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in dataset["labels"]]
    return {"scores": wer_scores(predictions, references), "predictions": predictions, "references": references}
