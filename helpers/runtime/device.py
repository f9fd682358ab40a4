"""Where a model runs, and what to do when it does not fit.

Where inference runs: one decision for every evaluation path (CLI, notebooks 05 and 06, the pipeline).

Training leaves placement to ``Seq2SeqTrainer`` (CUDA when there is one, fp16 when ``config.fp16``).
Everything that only transcribes asks :func:`inference_placement`, so the zero-shot and fine-tuned passes
over the test split run on the GPU in fp16, as the course's ``fp16_full_eval``, and not in fp32 on
Colab's two vCPUs (hours instead of minutes for whisper-small).

Out of GPU memory: the error a learner meets first on a T4, turned into advice with the run's own numbers.

A CUDA out-of-memory error inside :func:`explain_oom` becomes :class:`OutOfMemory`, a ``CourseError`` whose
sentence names the flags that help, filled in with the run's batch size and settings so they can be copied.
"""

from __future__ import annotations

import copy
import re
from contextlib import contextmanager

import torch

from helpers.runtime.errors import CourseError


def inference_placement(fp16: bool) -> tuple[torch.device, torch.dtype]:
    """``(device, dtype)`` for inference: CUDA in fp16 when ``fp16`` (else fp32), or the CPU in fp32.

    fp16 on the CPU is slower than fp32 and some kernels lack it, so the CPU always gets fp32.
    """
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.float16 if fp16 else torch.float32
    return torch.device("cpu"), torch.float32


def model_for_inference(model: torch.nn.Module, fp16: bool) -> torch.nn.Module:
    """``model`` on the inference device in the inference dtype; a converted copy if the dtype differs.

    A copy, because the caller's fp32 weights may still be trained (the CLI scores the zero-shot model,
    then fine-tunes it): converting them to fp16 and back would lose precision.
    """
    device, dtype = inference_placement(fp16)
    if next(model.parameters()).dtype != dtype:
        model = copy.deepcopy(model)
    return model.to(device=device, dtype=dtype)


def pipeline_placement(fp16: bool) -> dict:
    """Keyword arguments placing ``transformers.pipeline(...)`` where :func:`inference_placement` says."""
    device, dtype = inference_placement(fp16)
    return {"device": device, "dtype": dtype}


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
