"""The t4 profile's training arguments as a T4 gets them, and best-model selection by the lowest WER."""

import json

import pytest
import torch
from transformers.trainer_utils import IntervalStrategy, SchedulerType

from helpers.config import get_config
from helpers.runtime.errors import CourseError
from helpers.training import build_trainer, train, training_arguments


@pytest.fixture
def simulated_cuda(monkeypatch):
    """Enough of CUDA for ``TrainingArguments`` to set itself up as on a T4 (nothing runs on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)


def test_t4_arguments_field_by_field(simulated_cuda, tmp_path):
    args = training_arguments(get_config("t4"), tmp_path)
    expected = dict(
        per_device_train_batch_size=16, gradient_accumulation_steps=1, learning_rate=1e-5, warmup_steps=50,
        lr_scheduler_type=SchedulerType.CONSTANT_WITH_WARMUP, max_steps=500, gradient_checkpointing=True,
        fp16=True, fp16_full_eval=True, eval_strategy=IntervalStrategy.STEPS, per_device_eval_batch_size=16,
        predict_with_generate=True, generation_max_length=225, save_steps=100, eval_steps=500,
        logging_steps=25, save_total_limit=2, load_best_model_at_end=False, metric_for_best_model="wer_words",
        greater_is_better=False, push_to_hub=False, remove_unused_columns=False, use_cpu=False,
    )
    assert {name: getattr(args, name) for name in expected} == expected
    # Saves for disconnects between the course's one evaluation, at 500: nothing to choose, as in the course.
    assert args.max_steps % args.eval_steps == 0 and args.eval_steps % args.save_steps == 0
    assert str(args.device).startswith("cuda")


def test_without_cuda_the_same_run_goes_in_fp32_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = training_arguments(get_config("t4"), tmp_path)
    assert not args.fp16 and not args.fp16_full_eval and args.use_cpu


def test_no_test_clip_is_seen_before_the_final_score(prepared, tmp_path):
    """Training and the evaluations that choose the checkpoint see train and validation clips only.

    A spy around the real collator records every clip the trainer batches while it trains and evaluates.
    """
    from helpers.model import load_model_and_processor

    _, data, _ = prepared
    config = get_config("smoke", max_steps=4, eval_steps=2, save_steps=2, train_batch_size=4, eval_batch_size=8,
                        generation_max_length=4)
    model, processor = load_model_and_processor(config.model, config.language, config.task)
    trainer = build_trainer(model, processor, data, config, tmp_path)
    seen, collate = [], trainer.data_collator
    trainer.data_collator = lambda rows: seen.extend(bytes(row["audio_16k"]) for row in rows) or collate(rows)
    train(trainer, resume=False)
    clips = {name: {bytes(audio) for audio in data[name]["audio_16k"]} for name in ("train", "validation", "test")}
    assert not clips["train"] & clips["validation"] and not clips["test"] & (clips["train"] | clips["validation"])
    assert set(seen) <= clips["train"] | clips["validation"] and not set(seen) & clips["test"]
    assert clips["validation"] <= set(seen)  # every validation clip scored each checkpoint
    assert trainer.eval_dataset is data["validation"]


def test_prepared_data_without_a_validation_split_says_to_prepare_again(prepared, tmp_path):
    from helpers.model import load_model_and_processor
    from helpers.runtime.errors import CourseError

    _, data, _ = prepared
    config = get_config("smoke")
    model, processor = load_model_and_processor(config.model, config.language, config.task)
    with pytest.raises(CourseError, match="no validation split .* again"):
        build_trainer(model, processor, {"train": data["train"], "test": data["test"]}, config, tmp_path)


def test_the_best_checkpoint_is_the_one_with_the_lowest_wer(prepared, tmp_path):
    """Three evaluations with known WERs (30 at the second): the trainer must keep that checkpoint.

    The WERs are scripted so that the choice is unambiguous; a flipped ``greater_is_better`` would keep step
    2 (WER 50), a ``metric_for_best_model`` other than WER would keep whatever that metric prefers.
    """
    from helpers.model import load_model_and_processor

    _, data, _ = prepared
    small = {"train": data["train"].select(range(4)), "validation": data["validation"].select(range(2))}
    config = get_config("smoke", max_steps=6, eval_steps=2, save_steps=2, train_batch_size=2,
                        generation_max_length=4, save_total_limit=5)
    model, processor = load_model_and_processor(config.model, config.language, config.task)
    trainer = build_trainer(model, processor, small, config, tmp_path)
    scripted = iter([50.0, 30.0, 40.0])
    trainer.compute_metrics = lambda prediction: {"wer_words": next(scripted)}
    train(trainer, resume=False)
    history = {e["step"]: e["eval_wer_words"] for e in trainer.state.log_history if "eval_wer_words" in e}
    assert history == {2: 50.0, 4: 30.0, 6: 40.0}
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-4")
    assert trainer.state.best_metric == 30.0

    # Run again, it finds the run finished. From before the metrics took the course's names (our whole-word
    # WER logged as eval_wer), the same checkpoints are refused rather than resumed under the wrong names.
    assert train(trainer, resume=True) is None
    state_file = tmp_path / "checkpoint-6" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["log_history"] = [{("eval_wer" if key == "eval_wer_words" else key): value for key, value in entry.items()}
                            for entry in state["log_history"]]
    state_file.write_text(json.dumps(state))
    with pytest.raises(CourseError, match="RESUME = False"):
        train(trainer, resume=True)

def test_starting_over_deletes_an_earlier_runs_checkpoints_and_drive_copies(prepared, tmp_path, capsys):
    """RESUME = False (--no-resume): an earlier, longer run's checkpoint-6, left on the runtime's disk and on
    Drive, would outlive the new run's checkpoint-2 in the Trainer's rotation and be what a resume continues."""
    from helpers.model import load_model_and_processor
    from helpers.runtime.mirror import CheckpointMirror

    _, data, _ = prepared
    small = {"train": data["train"].select(range(4)), "validation": data["validation"].select(range(2)),
             "test": data["test"].select(range(2))}
    config = get_config("smoke", max_steps=2, eval_steps=2, save_steps=2, train_batch_size=2, generation_max_length=4,
                        save_total_limit=2)  # the t4 profile's
    output, drive = tmp_path / "runtime", tmp_path / "drive"
    for folder in (output, drive):
        (folder / "checkpoint-6").mkdir(parents=True)
        (folder / "checkpoint-6" / "trainer_state.json").write_text("{}")
    model, processor = load_model_and_processor(config.model, config.language, config.task)
    trainer = build_trainer(model, processor, small, config, output, callbacks=[CheckpointMirror(drive)])
    train(trainer, resume=False)
    assert sorted(p.name for p in output.glob("checkpoint-*")) == ["checkpoint-2"]
    assert sorted(p.name for p in drive.glob("checkpoint-*")) == ["checkpoint-2"]
    out = capsys.readouterr().out
    assert f"deleted 1 checkpoint(s) of an earlier run from {output}" in out and str(drive) in out


def test_freeze_encoder_trains_the_decoder_only(prepared, tmp_path):
    """``freeze_encoder`` (the offline and cpu profiles) through the Trainer: two real optimizer steps leave
    every encoder weight as it was, change the decoder's, and give the optimizer no encoder parameter."""
    from helpers.model import load_model_and_processor

    _, data, _ = prepared
    small = {"train": data["train"].select(range(4)), "validation": data["validation"].select(range(2)),
             "test": data["test"].select(range(2))}
    config = get_config("smoke", max_steps=2, eval_steps=2, save_steps=2, train_batch_size=2, freeze_encoder=True)
    model, processor = load_model_and_processor(config.model, config.language, config.task)
    encoder = {name: p.detach().clone() for name, p in model.model.encoder.named_parameters()}
    decoder = {name: p.detach().clone() for name, p in model.model.decoder.named_parameters()}
    trainer = build_trainer(model, processor, small, config, tmp_path)
    train(trainer, resume=False)
    assert all(torch.equal(p, encoder[name]) for name, p in trainer.model.model.encoder.named_parameters())
    assert any(not torch.equal(p, decoder[name]) for name, p in trainer.model.model.decoder.named_parameters())
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in trainer.model.model.encoder.parameters()}
