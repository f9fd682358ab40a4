"""Out of GPU memory: the error a learner meets first on a T4, turned into advice with the run's own numbers.

A CUDA out-of-memory error inside :func:`explain_oom` becomes :class:`OutOfMemory`, a ``CourseError`` whose
sentence names the flags that help, filled in with the run's batch size and settings so they can be copied.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import torch

from .config import CourseError

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
