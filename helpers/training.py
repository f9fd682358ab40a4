"""Training with ``Seq2SeqTrainer`` on today's API (scoring lives in :mod:`helpers.evaluation`).

Built for sessions that die (Colab disconnects, a killed process): ``train`` resumes from the newest
*complete* checkpoint in the output folder (:func:`helpers.runtime.checkpoints.last_checkpoint` skips one whose save was cut off), or from
the small copies a :class:`~helpers.runtime.mirror.CheckpointMirror` keeps on Drive, and checkpoints rotate
(``save_total_limit``). A CUDA out-of-memory
error becomes ``OutOfMemory`` (:mod:`helpers.runtime.device`), a ``CourseError`` naming the settings that help.
"""

from __future__ import annotations

import math
import shutil
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

from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding
from helpers.config import CourseConfig
from helpers.evaluation import choose_decoding
from helpers.metrics import CHECKPOINT_METRIC, make_compute_metrics
from helpers.runtime.checkpoints import STATE, checkpoint_is_complete, last_checkpoint
from helpers.runtime.device import explain_oom
from helpers.runtime.distributed import ExactEvalSeq2SeqTrainer
from helpers.runtime.errors import CourseError, DiskError, check_writable, explain_disk_error
from helpers.runtime.mirror import find_mirror, save_costs
from helpers.runtime.trainer_internals import load_best_model, load_checkpoint_weights

# transformers renamed gradient_checkpointing to activation_checkpointing (the old name warns until v6).
_CHECKPOINTING = (
    "activation_checkpointing"
    if "activation_checkpointing" in Seq2SeqTrainingArguments.__dataclass_fields__
    else "gradient_checkpointing"
)

# The course's Seq2SeqTrainingArguments as its page writes them (chapter 5, "Define the Training Configuration"),
# under its names: 04 shows them beside this run's values. transformers has renamed two of them since.
COURSE_TRAINING_ARGUMENTS: dict[str, object] = dict(
    output_dir="./whisper-small-dv", per_device_train_batch_size=16, gradient_accumulation_steps=1,
    learning_rate=1e-5, lr_scheduler_type="constant_with_warmup", warmup_steps=50, max_steps=500,
    gradient_checkpointing=True, fp16=True, fp16_full_eval=True, evaluation_strategy="steps",
    per_device_eval_batch_size=16, predict_with_generate=True, generation_max_length=225, save_steps=500,
    eval_steps=500, logging_steps=25, report_to=["tensorboard"], load_best_model_at_end=True,
    metric_for_best_model="wer", greater_is_better=False, push_to_hub=True,
)
RENAMED_ARGUMENTS = {"evaluation_strategy": "eval_strategy", "gradient_checkpointing": _CHECKPOINTING}


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
        # Off where a profile saves more often than it evaluates (t4: saves every 100 steps, one evaluation at
        # 500, as the course's; transformers needs every save evaluated to choose): the model is the last step's.
        load_best_model_at_end=config.load_best_model_at_end,
        metric_for_best_model=CHECKPOINT_METRIC,  # wer_words: see helpers.metrics
        greater_is_better=False,
        push_to_hub=False,  # pushing is a separate, token-safe step (helpers.extras.sharing)
        remove_unused_columns=False,  # the collator needs audio_16k, which the model does not take
        dataloader_num_workers=config.dataloader_num_workers,
        seed=config.seed,
        use_cpu=not cuda,
        # Move each batch's generated ids off the GPU at once: evaluation then holds one batch's worth.
        eval_accumulation_steps=1,
    )
    args.update(extra)
    return Seq2SeqTrainingArguments(**args)


def validation_split(prepared: DatasetDict) -> Dataset:
    """The split that chooses the best checkpoint: ``prepared['validation']`` (a seeded slice of dev, see
    :mod:`helpers.data`), never the test split that scores the chosen model at the end."""
    if "validation" not in prepared:
        raise CourseError(f"The prepared data has no validation split (only {', '.join(prepared)}): it was made "
                          "before the best checkpoint was chosen on a slice of dev; run the load and preprocess "
                          "stages (01 and 02, or `python -m helpers prepare`) again.")
    return prepared["validation"]


class CourseSeq2SeqTrainer(ExactEvalSeq2SeqTrainer):
    """The trainer of the CLI and :func:`build_trainer`: ``Seq2SeqTrainer`` with two fixes.

    Several processes score each clip once (:class:`~helpers.runtime.distributed.ExactEvalSeq2SeqTrainer`). And
    ``evaluate()`` and ``predict()`` run outside training with ``fp16_full_eval`` (the course's setting):
    there the Trainer casts the model to float16, but the collator's log-mel features stay float32 and
    Whisper's first convolution stops with "Input type (float) and bias type (c10::Half) should be the
    same" (transformers issue #30673). The features are cast to the model's dtype first; where they have
    it already (training, whose weights stay float32 under fp16 autocast), nothing changes.

    ``generate_kwargs`` go to ``generate`` at every evaluation and prediction, through the public
    ``gen_kwargs`` of ``evaluate`` and ``predict`` (a keyword the caller passes wins): :func:`build_trainer`
    puts the static KV cache there when :func:`helpers.evaluation.choose_decoding` says so.
    """

    generate_kwargs: dict = {}

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval", **gen_kwargs):
        return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix, **{**self.generate_kwargs, **gen_kwargs})

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix: str = "test", **gen_kwargs):
        return super().predict(test_dataset, ignore_keys, metric_key_prefix, **{**self.generate_kwargs, **gen_kwargs})

    def prediction_step(self, model, inputs, *args, **kwargs):
        dtype = next(model.parameters()).dtype
        features = inputs.get("input_features")
        if features is not None and features.is_floating_point() and features.dtype != dtype:
            inputs = {**inputs, "input_features": features.to(dtype)}
        return super().prediction_step(model, inputs, *args, **kwargs)


def build_trainer(
    model: WhisperForConditionalGeneration,
    processor: WhisperProcessor,
    prepared: DatasetDict,
    config: CourseConfig,
    output_dir: str | Path,
    callbacks: list | None = None,
    **training_args,
) -> Seq2SeqTrainer:
    """A ``Seq2SeqTrainer`` that trains on ``prepared['train']`` and chooses its best checkpoint by the WER on
    ``prepared['validation']`` (:func:`validation_split`); the test split is left for the final score. With
    ``config.freeze_encoder`` only the decoder trains."""
    if config.gradient_checkpointing:
        model.config.use_cache = False  # the cache is useless during training and clashes with checkpointing
    if config.freeze_encoder:
        model.freeze_encoder()  # the Trainer's optimizer then holds the decoder's parameters only
    collator = DataCollatorSpeechSeq2SeqWithPadding(
        processor=processor, decoder_start_token_id=model.config.decoder_start_token_id
    )
    subset = validation_split(prepared)
    trainer = CourseSeq2SeqTrainer(
        model=model,
        args=training_arguments(config, output_dir, **training_args),
        train_dataset=prepared["train"],
        eval_dataset=subset,
        data_collator=collator,
        compute_metrics=make_compute_metrics(processor.tokenizer),
        processing_class=processor,
        callbacks=callbacks,
    )
    # The decoder step is compiled once for the whole run, so every evaluation's batches count towards it.
    batches = math.ceil(len(subset) / config.eval_batch_size) * max(1, config.max_steps // config.eval_steps)
    fast, why = choose_decoding(config.fast_generate, trainer.args.device, batches)
    if fast:
        # A new static cache per batch (the Trainer's last batch is shorter; StaticDecoding cannot pad it here).
        trainer.generate_kwargs = {"cache_implementation": "static"}
    print(f"Evaluation during training decodes {'with a static KV cache' if fast else 'eagerly'}: {why}.")
    return trainer




def train(trainer: Seq2SeqTrainer, resume: bool = True):
    """Train, resuming from the last complete checkpoint in the output folder when ``resume`` and one exists.

    Optimizer, scheduler, RNG states and the step counter come back from the checkpoint, so the run goes
    on as if it had never stopped. When the trainer has a :class:`~helpers.runtime.mirror.CheckpointMirror` (the
    small copies on Drive) and its output folder has nothing as new (a new Colab runtime), the copies are
    restored first; then AdamW's moments start again. Resuming another run's copies (another method, language,
    model...: their stamp says) stops with ``RunMismatch``, naming what differs. Without ``resume`` the run
    starts over, and an earlier run's checkpoints and Drive copies are deleted first: left there, the
    Trainer's rotation would keep the higher-numbered old ones and delete the new, and a later resume would
    continue the old run. A CUDA out-of-memory error becomes ``OutOfMemory``.
    """
    full_save = None
    if trainer.is_world_process_zero():
        mirror = find_mirror(trainer)
        model = trainer.model
        cost = save_costs(sum(p.numel() for p in model.parameters()),
                          sum(p.numel() for p in model.parameters() if p.requires_grad))
        full_save = cost["full"]
        # Before the first step, not at the first save minutes later: a read-only or full folder stops here.
        check_writable(trainer.args.output_dir, full_save, "a checkpoint", "then run this again")
        if mirror:
            check_writable(mirror.folder, cost["mirror"], "a copy of a checkpoint", "then run this again")
        if not resume:
            _remove_earlier_checkpoints([Path(trainer.args.output_dir)] + ([mirror.folder] if mirror else []))
        if mirror:  # another run's checkpoints stop a resume here, where RESUME is known; starting over restamps
            mirror.claim(resume, trainer.args.output_dir)
        note = mirror.restore(trainer.args.output_dir) if mirror and resume else None
        if note:
            print(note)
    checkpoint = last_checkpoint(trainer.args.output_dir) if resume else None
    if checkpoint:
        _check_metric_names(checkpoint, trainer.args.metric_for_best_model)
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
        try:
            return trainer.train(resume_from_checkpoint=checkpoint)
        except Exception as error:
            # A save that filled the disk says "unexpected pos" (torch.save) or "I/O error" (safetensors).
            sentence = explain_disk_error(error, args.output_dir, full_save,
                                          "then run this again: it resumes from the last complete checkpoint "
                                          "(the save that was cut short is skipped)")
            if sentence is None:
                raise
            raise DiskError(sentence) from error


def _remove_earlier_checkpoints(folders: list[Path]) -> None:
    """Delete the ``checkpoint-*`` folders in ``folders``, saying how many went from where."""
    for folder in folders:
        old = [path for path in folder.glob("checkpoint-*") if path.is_dir()]
        for path in old:
            shutil.rmtree(path)
        if old:
            print(f"Starting over: deleted {len(old)} checkpoint(s) of an earlier run from {folder}.")


def _check_metric_names(checkpoint: str, metric: str | None) -> None:
    """Stop before resuming a run whose evaluations never logged ``metric`` under that name.

    Checkpoints saved before the metrics took the course's names logged our whole-word WER as ``eval_wer``
    (now ``eval_wer_words``) and the course's as ``eval_wer_basic`` (now ``eval_wer``): resumed, the best
    checkpoint would be chosen and the tables and plots drawn from numbers under the wrong names.
    """
    state = TrainerState.load_from_json(str(Path(checkpoint) / STATE))
    evaluations = [entry for entry in state.log_history if "eval_loss" in entry]
    if metric and evaluations and not any(f"eval_{metric}" in entry for entry in evaluations):
        raise CourseError(f"The checkpoints in {Path(checkpoint).parent} logged no '{metric}' (they were saved "
                          "when the error rates had other names): start over with RESUME = False in 04, or "
                          "--no-resume on the command line.")


def _finished(trainer: Seq2SeqTrainer, checkpoint: str) -> bool:
    """If ``checkpoint`` is already at ``max_steps``, load its state and final weights instead of training.

    Resuming a finished run would otherwise train one step more and evaluate again (re-running the train
    notebook, or the same command twice). The Trainer has no public call for this, so its own loaders are used
    (:mod:`helpers.runtime.trainer_internals`).
    """
    state = TrainerState.load_from_json(str(Path(checkpoint) / STATE))
    if state.global_step < trainer.args.max_steps:
        return False
    trainer.state = state
    best = state.best_model_checkpoint
    if trainer.args.load_best_model_at_end and best and checkpoint_is_complete(best):
        load_best_model(trainer)
    else:
        load_checkpoint_weights(trainer, checkpoint)
    print(f"Training already finished at step {state.global_step} ({checkpoint}); loaded "
          f"{best if trainer.args.load_best_model_at_end and best else 'its'} weights.")
    return True

