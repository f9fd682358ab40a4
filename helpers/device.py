"""Where inference runs: one decision for every evaluation path (CLI, notebooks 05 and 06, the pipeline).

Training leaves placement to ``Seq2SeqTrainer`` (CUDA when there is one, fp16 when ``config.fp16``).
Everything that only transcribes asks :func:`inference_placement`, so the zero-shot and fine-tuned passes
over the test split run on the GPU in fp16, as the course's ``fp16_full_eval``, and not in fp32 on
Colab's two vCPUs (hours instead of minutes for whisper-small).
"""

from __future__ import annotations

import copy

import torch


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
