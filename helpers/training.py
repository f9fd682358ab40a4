"""Training with ``Seq2SeqTrainer`` on today's API, and batched evaluation of any Whisper model.

Built for sessions that die (Colab disconnects, a killed process): ``train`` resumes from the newest
*complete* checkpoint in the output folder (``last_checkpoint`` skips one whose save was cut off),
checkpoints rotate (``save_total_limit``) so a Drive or Colab disk does not fill up, and small results
files are written atomically (``write_json``). A CUDA out-of-memory error becomes ``OutOfMemory``, a
``CourseError`` naming the settings that help; evaluation holds one batch on the GPU at a time.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from contextlib import contextmanager
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict
from transformers import (
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    TrainerState,
    WhisperForConditionalGeneration,
    WhisperProcessor,
)
from transformers.utils.logging import tqdm  # unlike tqdm.auto, silenced with transformers' progress bars

from .collator import DataCollatorSpeechSeq2SeqWithPadding
from .config import CourseConfig, CourseError
from .metrics import make_compute_metrics, wer_scores

OOM_ADVICE = (
    "CUDA ran out of GPU memory{where}. What helps, most effective first: halve the batch size and double "
    "gradient accumulation, which keeps the effective batch (--batch-size {half} "
    "--gradient-accumulation-steps {double}); keep gradient checkpointing on{checkpointing}; keep fp16 "
    "on{fp16}; pass --auto-find-batch-size to let the trainer halve the batch until a step fits; lower "
    "--eval-batch-size if it failed while evaluating; or use a smaller model (openai/whisper-base)."
)
OOM_EVAL_ADVICE = (
    "CUDA ran out of GPU memory while evaluating. What helps: a smaller --eval-batch-size (try {half}), "
    "a shorter --generation-max-length, or a smaller model (openai/whisper-base); fp16 weights halve the "
    "memory too."
)


class OutOfMemory(CourseError):
    """The GPU ran out of memory; the message names the settings that help (see ``OOM_ADVICE``)."""


def oom_message(batch_size: int = 16, accumulation: int = 1, checkpointing: bool = True, fp16: bool = True,
                where: str = "training") -> str:
    """The advice for an out-of-memory error, filled in with the run's settings so flags can be copied."""
    if where == "evaluating":
        return OOM_EVAL_ADVICE.format(half=max(1, batch_size // 2))
    return OOM_ADVICE.format(
        where=f" while {where}" if where else "",
        half=max(1, batch_size // 2),
        double=accumulation * 2 if batch_size > 1 else accumulation,
        checkpointing="" if checkpointing else " (it is off: drop --no-gradient-checkpointing)",
        fp16="" if fp16 else " (it is off: drop --no-fp16)",
    )


def _is_oom(error: BaseException) -> bool:
    # Older stacks raise a plain RuntimeError ("CUDA error: out of memory", cuBLAS alloc failures).
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and re.search(r"out of memory|ALLOC_FAILED|No executable batch size found", str(error)) is not None
    )


@contextmanager
def explain_oom(where: str = "", **settings):
    """Turn a CUDA out-of-memory error inside the block into ``OutOfMemory`` with ``oom_message(**settings)``."""
    try:
        yield
    except RuntimeError as error:
        if not _is_oom(error):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise OutOfMemory(oom_message(where=where, **settings)) from error


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
        lr_scheduler_type=config.lr_scheduler_type,
        max_steps=config.max_steps,
        **{_CHECKPOINTING: config.gradient_checkpointing},
        fp16=config.fp16 and cuda,  # fp16 needs a GPU; on a CPU the same run goes in fp32
        fp16_full_eval=config.fp16 and cuda,  # as the course: evaluation in fp16 halves its memory
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
        # Move each batch's generated ids off the GPU at once: evaluation then holds one batch's worth.
        eval_accumulation_steps=1,
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


_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
            "adapter_model.safetensors")


def _file_is_whole(path: Path) -> bool:
    """Whether a checkpoint file holds all the bytes its own format says it has (read from its ends only).

    ``torch.save`` writes zip archives, whose directory is at the very end; a safetensors file starts
    with its header's length and the header gives every tensor's end offset. A copy cut short, as a
    Drive upload interrupted by a disconnect leaves it, fails these checks; a complete file passes them
    without being loaded.
    """
    try:
        size = path.stat().st_size
        if size == 0:
            return False
        with open(path, "rb") as handle:
            start = handle.read(8)
            if path.suffix in (".pt", ".pth", ".bin") and start[:4] == b"PK\x03\x04":
                return zipfile.is_zipfile(path)
            if path.suffix == ".safetensors":
                header_size = int.from_bytes(start, "little")
                header = json.loads(handle.read(header_size))
                ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
                return size == 8 + header_size + max(ends, default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False
    return True


def checkpoint_is_complete(folder: str | Path) -> bool:
    """Whether a checkpoint folder was saved to the end and can be resumed from.

    ``Trainer._save_checkpoint`` writes the weights, then optimizer, scheduler and RNG states, and
    ``trainer_state.json`` last, straight into ``checkpoint-N`` (transformers 5 uses no temporary folder).
    A kill during saving therefore leaves ``trainer_state.json`` missing or cut off. A readable state,
    weights, and every file whole (a Drive folder synced up to a disconnect may hold cut or empty
    copies; see ``_file_is_whole``) mean complete.
    """
    folder = Path(folder)
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        files = [p for p in folder.iterdir() if p.is_file()]
    except (OSError, ValueError):
        return False
    if not isinstance(state, dict) or "global_step" not in state:
        return False
    if not any((folder / name).is_file() for name in _WEIGHTS):
        return False
    return all(_file_is_whole(p) for p in files)


def last_checkpoint(output_dir: str | Path, verbose: bool = True) -> str | None:
    """The newest *complete* ``checkpoint-N`` folder in ``output_dir``, or ``None``.

    transformers' ``get_last_checkpoint`` takes the highest N even when its save was cut off, and resuming
    from it fails or silently restarts the optimizer; here such a folder is skipped (and left in place:
    the trainer overwrites it when it reaches that step again).
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    found = sorted(
        ((int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))),
        reverse=True,
    )
    for _, folder in found:
        if checkpoint_is_complete(folder):
            return str(folder)
        if verbose:
            print(f"Skipping {folder}: its save was interrupted (a file is missing or cut short).")
    return None


def train(trainer: Seq2SeqTrainer, resume: bool = True):
    """Train, resuming from the last complete checkpoint in the output folder when ``resume`` and one exists.

    Optimizer, scheduler, RNG states and the step counter come back from the checkpoint, so the run goes
    on as if it had never stopped. A CUDA out-of-memory error becomes ``OutOfMemory`` with advice.
    """
    checkpoint = last_checkpoint(trainer.args.output_dir) if resume else None
    if checkpoint and _finished(trainer, checkpoint):
        return None
    if checkpoint:
        print(f"Resuming from {checkpoint}")
    args = trainer.args
    with explain_oom(
        "training",
        batch_size=args.per_device_train_batch_size,
        accumulation=args.gradient_accumulation_steps,
        checkpointing=bool(getattr(args, _CHECKPOINTING, False)),
        fp16=bool(args.fp16 or args.bf16),
    ):
        return trainer.train(resume_from_checkpoint=checkpoint)


def _finished(trainer: Seq2SeqTrainer, checkpoint: str) -> bool:
    """If ``checkpoint`` is already at ``max_steps``, load its state and final weights instead of training.

    Resuming a finished run would otherwise train one step more and evaluate again (re-running the train
    notebook, or the same command twice). The Trainer has no public call for this, so its own loaders are used.
    """
    state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    if state.global_step < trainer.args.max_steps:
        return False
    trainer.state = state
    best = state.best_model_checkpoint
    if trainer.args.load_best_model_at_end and best and checkpoint_is_complete(best):
        trainer._load_best_model()
    else:
        trainer._load_from_checkpoint(checkpoint)
    print(f"Training already finished at step {state.global_step} ({checkpoint}); loaded "
          f"{best if trainer.args.load_best_model_at_end and best else 'its'} weights.")
    return True


def write_json(path: str | Path, data) -> None:
    """Write ``data`` as JSON atomically: a kill mid-write leaves the old file (or none), never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(temporary, path)  # atomic on POSIX and Windows when both are on the same file system


def results_record(config: CourseConfig, baseline: dict, finetuned: dict) -> dict:
    """What ``results.json`` holds, from the CLI and notebook 05 alike: both sides' scores and the run."""
    return {"baseline": baseline, "finetuned": finetuned, "model": config.model, "data": config.data,
            "language": config.language, "task": config.task, "max_steps": config.max_steps}


def read_json(path: str | Path):
    """The JSON in ``path``, or ``None`` when it is missing or unreadable (then it is simply recomputed)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


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
    if sort_by_length and "duration" in dataset.column_names:
        durations = dataset["duration"]  # one column read; dataset[i] would decode every row's audio too
        order.sort(key=lambda i: durations[i])
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    texts: dict[int, str] = {}
    model.eval()
    for start in tqdm(range(0, len(order), batch_size), desc="Transcribing", unit="batch"):
        indices = order[start : start + batch_size]
        features = collator.features([dataset[i] for i in indices]).to(device, dtype)
        with torch.inference_mode(), explain_oom("evaluating", batch_size=batch_size):
            ids = model.generate(input_features=features, max_length=max_length).cpu()
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
