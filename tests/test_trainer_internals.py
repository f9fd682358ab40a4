"""The private parts of transformers' Trainer that helpers/runtime/trainer_internals.py relies on still exist and still
do what we use them for. A transformers release that changes one fails here, naming it, rather than in a
learner's notebook (scripts/try_newest.sh runs this file first)."""

from __future__ import annotations

import inspect
from contextlib import contextmanager

import pytest
import torch
import transformers
from transformers import Seq2SeqTrainer, Trainer

from helpers.config import get_config
from helpers.model import load_model_and_processor
from helpers.runtime import trainer_internals
from helpers.training import build_trainer


@contextmanager
def private_api(name: str):
    """Turn a missing or re-shaped private name into one sentence saying what changed and where it is used."""
    try:
        yield
    except (AttributeError, TypeError) as error:
        pytest.fail(f"transformers {transformers.__version__} changed {name} ({type(error).__name__}: {error}); "
                    "helpers/runtime/trainer_internals.py uses it: adapt it there before moving the pins.")


@pytest.fixture
def trainer(prepared, tmp_path):
    _, data, _ = prepared
    small = {"train": data["train"].select(range(2)), "validation": data["validation"].select(range(3)),
             "test": data["test"].select(range(3))}
    config = get_config("smoke", max_steps=2, eval_batch_size=2, generation_max_length=4)
    model, processor = load_model_and_processor(config.model, config.language, config.task)
    return build_trainer(model, processor, small, config, tmp_path / "out", report_to=[])  # no runs/ folder here


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def perturb(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)


def test_the_private_names_and_their_arguments_are_still_there():
    with private_api("Trainer._load_from_checkpoint"):
        assert list(inspect.signature(Trainer._load_from_checkpoint).parameters)[:2] == ["self",
                                                                                          "resume_from_checkpoint"]
    with private_api("Trainer._load_best_model"):
        assert list(inspect.signature(Trainer._load_best_model).parameters) == ["self"]


def test_checkpoint_and_best_model_weights_are_loaded_into_the_trainers_model(trainer, tmp_path):
    saved = weights(trainer.model)
    trainer.save_model(str(tmp_path / "checkpoint-2"))  # model.safetensors + config, as a checkpoint holds them
    perturb(trainer.model)
    assert not torch.equal(trainer.model.proj_out.weight, saved["proj_out.weight"])
    with private_api("Trainer._load_from_checkpoint"):
        trainer_internals.load_checkpoint_weights(trainer, tmp_path / "checkpoint-2")
    assert all(torch.equal(tensor, saved[name]) for name, tensor in trainer.model.state_dict().items())

    perturb(trainer.model)
    trainer.state.best_model_checkpoint = str(tmp_path / "checkpoint-2")
    with private_api("Trainer._load_best_model"):
        trainer_internals.load_best_model(trainer)
    assert all(torch.equal(tensor, saved[name]) for name, tensor in trainer.model.state_dict().items())


def recorded_gather_for_metrics(trainer: Trainer) -> list[int]:
    """Count the calls of the trainer's ``Accelerator.gather_for_metrics`` (the real one still does the work)."""
    calls, real = [], trainer.accelerator.gather_for_metrics

    def recording(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    trainer.accelerator.gather_for_metrics = recording
    return calls


def test_seq2seq_evaluation_gathers_through_gather_function_and_ours_drops_repeats(trainer):
    """``evaluation_loop`` gathers with ``self.gather_function``; Seq2SeqTrainer sets it to plain ``gather``
    (which keeps the sampler's repeated clips), and ExactEvalSeq2SeqTrainer sets it back."""
    calls = recorded_gather_for_metrics(trainer)
    with private_api("Trainer.gather_function"):
        metrics = trainer.evaluate()
    assert "eval_wer" in metrics
    assert calls, ("evaluation_loop no longer gathers through Trainer.gather_function: the exact-once scoring of "
                   "helpers.runtime.distributed.ExactEvalSeq2SeqTrainer (helpers/runtime/trainer_internals.py) needs another way")

    plain = Seq2SeqTrainer(model=trainer.model, args=trainer.args, eval_dataset=trainer.eval_dataset,
                           data_collator=trainer.data_collator, compute_metrics=trainer.compute_metrics,
                           processing_class=trainer.processing_class)
    calls = recorded_gather_for_metrics(plain)
    plain.evaluate()
    assert not calls, ("Seq2SeqTrainer.evaluate now gathers with gather_for_metrics itself (transformers PR #27025 "
                       "undone): helpers.runtime.distributed.ExactEvalSeq2SeqTrainer may no longer be needed")
