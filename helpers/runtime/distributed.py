"""Runs in several processes (``torchrun``, ``accelerate launch``): which process writes, where the others
wait, and evaluation during training that scores every clip exactly once.

Every function here also works in a plain single process, where it is the main one and nothing waits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TypeVar

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

from helpers.runtime.trainer_internals import gather_for_metrics

T = TypeVar("T")

# The CLI needs the process group before the Trainer exists (preprocessing and the zero-shot pass come
# first); the Trainer then reuses it, so it must have the timeout the Trainer would have given it.
_TIMEOUT = timedelta(seconds=Seq2SeqTrainingArguments.__dataclass_fields__["ddp_timeout"].default)


def process_state() -> PartialState:
    """accelerate's shared process state; under a launcher, the first call starts the process group.

    It is started as ``TrainingArguments`` would start it (on the CPU when there is no GPU, the Trainer's
    default ``ddp_timeout``), because the Trainer made later reuses the group instead of starting its own.
    A process waiting for the main one gives up after that timeout (30 minutes).
    """
    # Once set up (by an earlier call, or by TrainingArguments), PartialState ignores these arguments.
    return PartialState(cpu=not torch.cuda.is_available(), timeout=_TIMEOUT)


def is_main_process() -> bool:
    """Whether this process is the one that scores, prints and writes files (always true in one process)."""
    return process_state().is_main_process


def wait_for_everyone() -> None:
    """Wait until every process gets here (a barrier); returns at once in a single process."""
    process_state().wait_for_everyone()


@contextmanager
def local_main_process_first() -> Iterator[None]:
    """Run the block in each machine's main process first, then in the others (which then find its caches)."""
    with process_state().local_main_process_first():
        yield


def from_main_process(value: T) -> T:
    """The main process's ``value``, in every process (the others pass anything, e.g. ``None``)."""
    return broadcast_object_list([value])[0]


class ExactEvalSeq2SeqTrainer(Seq2SeqTrainer):
    """A ``Seq2SeqTrainer`` whose evaluation scores every clip exactly once when several processes evaluate.

    The distributed sampler evens out the last batch by repeating clips. ``Trainer.evaluation_loop``
    gathers with ``Accelerator.gather_for_metrics``, which drops those repeats, but
    ``Seq2SeqTrainer.evaluate`` and ``predict`` swap it for plain ``Accelerator.gather``, which keeps them
    (transformers PR #27025: with ``num_return_sequences > 1`` a batch holds more sequences than clips, and
    trimming by clip count would cut real ones). Whisper generates one sequence per clip, so the trimming
    is right here and the repeats would be scored: 32 clips instead of 24 with 2 processes and batch 16.
    """

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval", **gen_kwargs):
        self._exact_eval_gen_kwargs = gen_kwargs  # the trainer's own evaluations during training come here too
        return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix,
                                **gen_kwargs)

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix="test", **gen_kwargs):
        self._exact_eval_gen_kwargs = gen_kwargs
        return super().predict(test_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix,
                               **gen_kwargs)

    def evaluation_loop(self, *args, **kwargs):
        if self._sequences_per_input() == 1:
            gather_for_metrics(self)  # after Seq2SeqTrainer.evaluate/predict chose plain gather
        return super().evaluation_loop(*args, **kwargs)

    def _sequences_per_input(self) -> int:
        gen_kwargs = getattr(self, "_exact_eval_gen_kwargs", None) or {}
        configured = getattr(getattr(self.model, "generation_config", None), "num_return_sequences", None)
        return int(gen_kwargs.get("num_return_sequences") or configured or 1)
