"""Every private API this project leans on, listed in one place; the Trainer's three are wrapped here.

A private name may change in any release of its library without notice, so each one below has a test that
fails, naming it, when its library changes it; moving the version pins (``scripts/try_newest.sh``) runs those
tests first. Everything not listed here goes through public API (``train(resume_from_checkpoint=...)``,
``evaluate``/``predict`` and their generation arguments, ``evaluation_loop``, ``trainer.state``, ``datasets``'
``map``/``Hasher``, IPython's ``set_custom_exc``...).

transformers' ``Trainer`` (wrapped below; guarded by ``tests/test_trainer_internals.py``):

- ``Trainer._load_from_checkpoint(folder)``: a checkpoint's weights (full model or LoRA adapter) into the
  trainer's model. Used when a finished run is run again (:func:`helpers.training.train`): resuming it
  through ``train()`` would train one step more and evaluate again.
- ``Trainer._load_best_model()``: the weights of ``state.best_model_checkpoint``, as ``train()`` does at
  its end with ``load_best_model_at_end``; same case.
- ``Trainer.gather_function``: how ``evaluation_loop`` gathers predictions across processes.
  ``Seq2SeqTrainer.evaluate``/``predict`` set it to ``Accelerator.gather``, which keeps the clips the
  distributed sampler repeats; :class:`helpers.runtime.distributed.ExactEvalSeq2SeqTrainer` sets it back to
  ``gather_for_metrics`` (what ``Trainer.__init__`` sets), which drops them.

Used where they are needed (guarded by ``tests/test_private_apis.py``):

- ``Trainer._save_checkpoint`` writes ``trainer_state.json`` after the weights, optimizer, scheduler and RNG
  states: :func:`helpers.runtime.checkpoints.checkpoint_is_complete` reads a folder without a whole state
  file as a save cut short, and the Drive mirror (:mod:`helpers.runtime.mirror`) copies the state last.
- ``datasets.Dataset._fingerprint``: the identity of a dataset's content and history, part of the cache key of
  :func:`helpers.preparation.prepare_split` (``datasets`` exposes no public name for it).
- ``torch.nn.Module._forward_hooks`` of Whisper's ``encoder.conv1``: whether transformers'
  ``enable_input_require_grads`` already hooked it (:func:`helpers.extras.lora.make_inputs_require_grad`).
- IPython's ``InteractiveShell._showtraceback(etype, evalue, stb)``: a ``CourseError`` shown as the cell's
  error in one line (:func:`helpers.runtime.colab.short_course_errors`); ipykernel's shell sends it to the
  notebook as the cell's error output, which nbmake then fails on.
- Whisper's prompt-length rule, copied as ``helpers.evaluation.StaticDecoding.PROMPT_TOKENS``: ``generate``
  counts ``max_length`` after a decoder prompt of four tokens (``WhisperGenerationMixin``), so a static cache
  needs that many positions more.
- pytest-xdist's ``LoadScopeScheduling._split_scope(nodeid)``, ``_assign_work_unit(node)`` and ``workqueue``:
  the root ``conftest.py`` groups a file's tests, and all the notebooks, each on one worker, and starts the
  longest units first;
  ``--dist loadfile`` would scatter the notebooks, which hand their workspace on from one to the next
  (docs/developing.md says what was measured).
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
