"""LoRA for Whisper through PEFT: a bigger model on the same GPU, and a model anyone can load afterwards.

Full fine-tuning keeps fp32 weights, their gradients and two AdamW moments for every parameter: about
16 bytes each, which is why a T4 (16 GB) stops at whisper-small. LoRA freezes the model and trains two
small matrices beside chosen linear layers (``W x + (alpha / r) B A x``), so gradients and optimizer
state exist only for them; an 8-bit base (bitsandbytes, CUDA only) halves the frozen weights' memory again.

Whisper's traps, handled here:

* No seq2seq ``task_type``: ``PeftModelForSeq2SeqLM`` passes ``input_ids`` to the model, and Whisper's
  forward takes ``input_features``. The plain ``PeftModel`` hands every argument through unchanged.
* Gradient checkpointing with frozen inputs: with re-entrant checkpointing (transformers 4's default,
  and what ``prepare_model_for_kbit_training`` asks for), a checkpointed block whose inputs do not require
  grad gets no gradient at all, so LoRA in the encoder would silently never learn. The encoder's input
  is ``conv1``'s output (log-mel in, frozen weights), the decoder's the token embeddings: both are made to
  require grad (:func:`make_inputs_require_grad`).

Saving (:func:`merge_and_save`) gives the adapter alone (``adapter_model.safetensors``, megabytes) and a
merged model: an ordinary Whisper folder that ``from_pretrained`` and ``pipeline`` load without PEFT.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import (
    BitsAndBytesConfig,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    set_seed,
)

from helpers.config import CourseConfig
from helpers.runtime.errors import CourseError

# The LoRA paper (Hu et al. 2021, section 7.1) found adapting the query and value projections the best use
# of a fixed budget of trainable parameters, and PEFT's Whisper example (int8 whisper-large-v2 on Common
# Voice) uses the same with r=32, alpha=64, dropout 0.05. In Whisper the names match the encoder's
# self-attention and both the decoder's self- and cross-attention. k_proj, out_proj, fc1 and fc2 can be
# added with --lora-target-modules.
DEFAULT_TARGET_MODULES = ("q_proj", "v_proj")
DEFAULT_RANK, DEFAULT_ALPHA, DEFAULT_DROPOUT = 32, 64, 0.05
METHODS = ("lora",)


def parse_target_modules(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"q_proj, v_proj"`` or ``["q_proj", "v_proj"]`` -> ``("q_proj", "v_proj")``."""
    names = text.split(",") if isinstance(text, str) else list(text)
    modules = tuple(name.strip() for name in names if name.strip())
    if not modules:
        raise CourseError("--lora-target-modules names no module; e.g. q_proj,v_proj.")
    return modules


def check_peft(method: str | None) -> None:
    """Refuse a PEFT method we do not support, or one whose library is not installed, in one sentence."""
    if method is not None and method not in METHODS:
        raise CourseError(f"Unknown PEFT method {method!r}; use {', '.join(METHODS)} (or none for full fine-tuning).")
    if method is not None and importlib.util.find_spec("peft") is None:
        raise CourseError("LoRA needs peft, an extra: pip install 'whisper-course-helpers[lora]' (pip install -e "
                          "'.[lora]' in a clone; notebook 04's set-up cell installs it).")


def make_inputs_require_grad(model: torch.nn.Module) -> list:
    """Make the encoder's and the decoder's inputs require grad, so checkpointed frozen blocks pass gradients.

    ``enable_input_require_grads`` hooks every input embedding transformers knows (the decoder's tokens and,
    since transformers 5, the encoder's ``conv1``); the encoder's ``conv1`` is hooked here if it did not.
    Returns the hooks added here (empty when transformers covered both).
    """
    base = _whisper(model)
    base.enable_input_require_grads()
    conv1 = base.model.encoder.conv1
    if conv1._forward_hooks:
        return []
    return [conv1.register_forward_hook(lambda module, inputs, output: output.requires_grad_(True))]


def apply_lora(
    model: WhisperForConditionalGeneration,
    rank: int = DEFAULT_RANK,
    alpha: int = DEFAULT_ALPHA,
    dropout: float = DEFAULT_DROPOUT,
    target_modules: str | Sequence[str] = DEFAULT_TARGET_MODULES,
    gradient_checkpointing: bool = False,
):
    """Wrap ``model`` in a ``PeftModel`` whose only trainable parameters are LoRA matrices on ``target_modules``.

    A base loaded in 8 bits (:func:`load_base_in_8bit`) is first prepared with ``prepare_model_for_kbit_training``
    (layer norms in fp32, checkpointing on). ``gradient_checkpointing`` makes the encoder's and decoder's
    inputs require grad (see the module docstring); the trainer switches checkpointing itself on.
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    modules = parse_target_modules(target_modules)
    names = [name for name, _ in model.named_modules()]
    # PEFT matches a target against the end of each module's dotted name, as here.
    unknown = [m for m in modules if not any(name == m or name.endswith("." + m) for name in names)]
    if unknown:
        raise CourseError(f"Whisper has no module named {', '.join(unknown)}; LoRA can target q_proj, k_proj, "
                          "v_proj, out_proj, fc1 or fc2.")
    if rank < 1:
        raise CourseError(f"--lora-rank must be at least 1 (got {rank}).")
    if is_quantized(model):
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    # No task_type (see the module docstring); bias stays frozen, so merging changes only the targeted weights.
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(modules), bias="none")
    peft_model = get_peft_model(model, config)
    if gradient_checkpointing:
        make_inputs_require_grad(peft_model)
    return peft_model


def lora_from_config(model: WhisperForConditionalGeneration, config: CourseConfig):
    """:func:`apply_lora` with ``config``'s settings (``model`` as ``load_model_and_processor`` gave it); prints
    what trains. With ``config.load_in_8bit`` the base is first loaded again in 8 bits (:func:`load_base_in_8bit`).

    The adapter's A matrices start random: seeded with ``config.seed`` here (the trainer seeds only later),
    so the same command starts from the same adapter in any process, as a resumed run's reference must.
    """
    check_peft(config.peft)
    if not config.peft:
        raise CourseError("LoRA needs peft='lora' (--peft lora).")
    if config.load_in_8bit:
        model = load_base_in_8bit(config.model, like=model)
    set_seed(config.seed)
    peft_model = apply_lora(model, config.lora_rank, config.lora_alpha, config.lora_dropout,
                            config.lora_target_modules, gradient_checkpointing=config.gradient_checkpointing)
    trainable, total, share = trainable_share(peft_model)
    print(f"LoRA rank {config.lora_rank} (alpha {config.lora_alpha}) on "
          f"{', '.join(parse_target_modules(config.lora_target_modules))}: {trainable:,} trainable parameters of "
          f"{total:,} ({share:.2%})" + (", base weights in 8 bits" if is_quantized(model) else ""))
    return peft_model


def load_base_in_8bit(model_id: str, like: WhisperForConditionalGeneration | None = None):
    """``model_id`` with its linear layers in 8 bits (bitsandbytes), on this process's GPU; CUDA only.

    transformers 5 removed ``from_pretrained(load_in_8bit=True)``: the setting goes in a ``BitsAndBytesConfig``.
    ``like``'s generation config (language and task, set by ``load_model_and_processor``) is copied over.
    """
    if not torch.cuda.is_available():
        raise CourseError("8-bit base weights (--load-in-8bit) need a CUDA GPU (bitsandbytes); on this machine "
                          "use LoRA without it.")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as error:
        raise CourseError("8-bit base weights need bitsandbytes: pip install 'whisper-course-helpers[int8]' "
                          "(or pip install bitsandbytes).") from error
    model = WhisperForConditionalGeneration.from_pretrained(
        model_id, quantization_config=BitsAndBytesConfig(load_in_8bit=True), dtype=torch.float16,
        device_map={"": int(os.environ.get("LOCAL_RANK", "0"))},  # one whole copy per process
    )
    if like is not None:
        model.generation_config = copy.deepcopy(like.generation_config)
    return model


def is_quantized(model: torch.nn.Module) -> bool:
    """Whether ``model`` (or the model a ``PeftModel`` wraps) holds 8- or 4-bit weights."""
    base = _whisper(model)
    return bool(getattr(base, "is_loaded_in_8bit", False) or getattr(base, "is_loaded_in_4bit", False))


def trainable_share(model: torch.nn.Module) -> tuple[int, int, float]:
    """``(trainable, total, trainable / total)`` parameters of ``model``, tied weights counted once."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total, trainable / total


def _whisper(model: torch.nn.Module) -> WhisperForConditionalGeneration:
    """The ``WhisperForConditionalGeneration`` inside a ``PeftModel`` (or ``model`` itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def merge_and_save(model, processor: WhisperProcessor, model_dir: str | Path,
                   adapter_dir: str | Path | None = None) -> WhisperForConditionalGeneration:
    """Save the adapter alone to ``adapter_dir`` (if given) and the merged model with ``processor`` to ``model_dir``.

    The merged folder is a plain Whisper checkpoint (``W + (alpha / r) B A`` written into each targeted
    weight): ``from_pretrained`` and ``pipeline`` load it without PEFT. Returns the merged model. Merging
    rewrites ``model``'s base weights in place: use the returned model, not ``model``, afterwards. An 8-bit
    base is not merged into (its rounding would change the weights); the base is loaded again in full
    precision and the adapter merged into that.
    """
    model_dir = Path(model_dir)
    if adapter_dir is not None:
        model.save_pretrained(str(adapter_dir))  # adapter_config.json + adapter_model.safetensors
    if is_quantized(model):
        merged = _merge_into_full_precision(model, adapter_dir)
    else:
        merged = model.merge_and_unload()
    merged.config.use_cache = True  # training switched it off for checkpointing; generation wants it
    merged.save_pretrained(str(model_dir))
    processor.save_pretrained(str(model_dir))
    return merged


def _merge_into_full_precision(model, adapter_dir: str | Path | None) -> WhisperForConditionalGeneration:
    from peft import PeftModel

    if adapter_dir is None:
        raise CourseError("Merging an 8-bit model needs the adapter saved first: pass adapter_dir.")
    base_id = model.peft_config["default"].base_model_name_or_path
    base = WhisperForConditionalGeneration.from_pretrained(base_id, dtype=torch.float32)
    base.generation_config = copy.deepcopy(_whisper(model).generation_config)
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()


def _safetensors_parameters(path: Path) -> int:
    """Number of values in a safetensors file, read from its header alone."""
    with open(path, "rb") as handle:
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    count = 0
    for name, tensor in header.items():
        if name != "__metadata__":
            size = 1
            for dim in tensor["shape"]:
                size *= dim
            count += size
    return count


def training_method(model_dir: str | Path, adapter_dir: str | Path | None = None) -> dict[str, str]:
    """How the model in ``model_dir`` was trained, for the model card, from the saved files alone.

    With ``adapter_dir`` (the run used LoRA): rank, alpha and modules from ``adapter_config.json``, the
    trainable share (adapter parameters over base plus adapter, as PEFT counts it) and the adapter's size.
    Without: full fine-tuning, every parameter trained.
    """
    weights = sorted(Path(model_dir).glob("model*.safetensors"))
    base = sum(_safetensors_parameters(path) for path in weights)
    if adapter_dir is None:
        return {"method": "full fine-tuning", "trainable parameters": f"100 % ({base / 1e6:.1f} M)"}
    adapter_dir = Path(adapter_dir)
    settings = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    adapter_file = adapter_dir / "adapter_model.safetensors"
    adapter = _safetensors_parameters(adapter_file)
    modules = settings.get("target_modules") or []
    modules = sorted(modules) if isinstance(modules, list) else [str(modules)]
    return {
        "method": f"LoRA (PEFT), rank {settings['r']}, alpha {settings['lora_alpha']}, dropout "
                  f"{settings.get('lora_dropout', 0)}, on {', '.join(modules)}; merged into the base weights",
        "trainable parameters": f"{adapter / (base + adapter):.2%} "
                                f"({adapter / 1e6:.2f} M of {(base + adapter) / 1e6:.1f} M)",
        "adapter size": f"{adapter_file.stat().st_size / 1e6:.1f} MB (adapter_model.safetensors)",
    }
