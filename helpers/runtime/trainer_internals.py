"""The three private parts of transformers' ``Trainer`` this project uses, where no public API does the job.

Everything else goes through public API (``train(resume_from_checkpoint=...)``, ``evaluate``/``predict``
and their generation arguments, ``evaluation_loop``, ``trainer.state``). These three are private, so any
transformers release may rename or change them; ``tests/test_trainer_internals.py`` checks that each still
exists and still does what we rely on, and fails naming it when it does not. Moving the version pins
(``scripts/try_newest.sh``) runs that test first.

- ``Trainer._load_from_checkpoint(folder)``: a checkpoint's weights (full model or LoRA adapter) into the
  trainer's model. Used when a finished run is run again (:func:`helpers.training.train`): resuming it
  through ``train()`` would train one step more and evaluate again.
- ``Trainer._load_best_model()``: the weights of ``state.best_model_checkpoint``, as ``train()`` does at
  its end with ``load_best_model_at_end``; same case.
- ``Trainer.gather_function``: how ``evaluation_loop`` gathers predictions across processes.
  ``Seq2SeqTrainer.evaluate``/``predict`` set it to ``Accelerator.gather``, which keeps the clips the
  distributed sampler repeats; :class:`helpers.runtime.distributed.ExactEvalSeq2SeqTrainer` sets it back to
  ``gather_for_metrics`` (what ``Trainer.__init__`` sets), which drops them.
"""

from __future__ import annotations

import functools
from pathlib import Path

from transformers import Trainer


def load_checkpoint_weights(trainer: Trainer, checkpoint: str | Path) -> None:
    """Load the model weights (or the LoRA adapter) saved in ``checkpoint`` into ``trainer.model``."""
    trainer._load_from_checkpoint(str(checkpoint))


def load_best_model(trainer: Trainer) -> None:
    """Load the weights of ``trainer.state.best_model_checkpoint`` into ``trainer.model``."""
    trainer._load_best_model()


def gather_for_metrics(trainer: Trainer) -> None:
    """Make the next ``evaluation_loop`` gather with ``Accelerator.gather_for_metrics`` (repeats dropped)."""
    trainer.gather_function = functools.partial(
        trainer.accelerator.gather_for_metrics, use_gather_object=trainer.args.eval_use_gather_object
    )
