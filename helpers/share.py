"""Sharing the fine-tuned model (notebook 06): what goes on its card, the export folder, a long recording
for the pipeline, and the optional Gradio demo.

The card itself and the push are :mod:`helpers.hub` (the token stays there).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .config import CourseConfig


def card_language(config: CourseConfig) -> str | None:
    """The dataset's language code for the model card: the locale at the end of the data source, if any.

    Common Voice names folders and ids by locale ('.../dv', 'common-voice:dv'); Whisper's own language can
    differ (the course transcribes Dhivehi as 'sinhalese'), so the data source is asked first.
    """
    tail = str(config.data).rstrip("/").replace("\\", "/").split("/")[-1].split(":")[-1].split("-")[-1]
    if tail.isalpha() and 2 <= len(tail) <= 3:
        return tail.lower()
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    return TO_LANGUAGE_CODE.get((config.language or "").lower(), config.language)


def source_label(source: str, keep: int = 2) -> str:
    """A model or data source fit for a model card: a Hub id as is, a local folder as its last ``keep`` parts.

    A card must not carry the full local path (it names the machine's user and folders).
    """
    text = str(source)
    path = Path(text).expanduser()
    if path.is_absolute() or path.exists():
        return "/".join(path.resolve().parts[-keep:])
    return text.removeprefix("mdc:")


def training_summary(config: CourseConfig) -> dict[str, Any]:
    """The training settings worth putting in a model card."""
    fields = ("max_steps", "train_batch_size", "gradient_accumulation_steps", "learning_rate", "warmup_steps",
              "gradient_checkpointing", "fp16", "seed")
    summary = {name: getattr(config, name) for name in fields}
    summary.update(language=config.language, task=config.task)
    return summary


def course_model_card(config: CourseConfig, repo_id: str, scores: dict | None, model_dir: Path,
                      adapter_dir: Path | None = None):
    """The model card 06 shows and ``python -m helpers run --push-to`` publishes, from the run's config, its
    fine-tuned ``scores`` and the saved model (with ``adapter_dir`` when only a LoRA adapter trained)."""
    from .hub import model_card
    from .lora import training_method

    return model_card(repo_id, base_model=source_label(config.model, keep=1), dataset_name=source_label(config.data),
                      language=card_language(config), scores=scores, training=training_summary(config),
                      method=training_method(model_dir, adapter_dir))


def export_model(model_dir: Path, card, destination: Path) -> Path:
    """Copy the saved model and processor to ``destination`` with ``card`` as its README.md."""
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(model_dir, destination)
    card.save(str(destination / "README.md"))
    return destination


def long_recording(waves: list[np.ndarray], seconds: float = 40.0, sampling_rate: int = 16000,
                   gap: float = 0.5) -> tuple[np.ndarray, int]:
    """Clips joined with ``gap`` seconds of silence until the recording passes ``seconds``: Whisper's 30 s
    window cannot hold it, so it shows what ``chunk_length_s`` does. Returns the audio and the clips used."""
    silence = np.zeros(int(gap * sampling_rate), dtype=np.float32)
    parts, used = [], 0
    while sum(len(p) for p in parts) < seconds * sampling_rate:
        parts += [np.asarray(waves[used % len(waves)], dtype=np.float32), silence]
        used += 1
    return np.concatenate(parts), used


def gradio_demo(asr) -> Any:
    """A small Gradio app around an ASR ``pipeline``: record or upload a clip, read the transcript."""
    import gradio as gr  # installed by the optional cell in Colab; not a dependency of the course

    def transcribe(path: str | None) -> str:
        return asr(path, chunk_length_s=30)["text"] if path else ""

    return gr.Interface(
        fn=transcribe,
        inputs=gr.Audio(sources=["microphone", "upload"], type="filepath"),
        outputs="text",
        title="Fine-tuned Whisper",
        description="Record or upload a clip; the fine-tuned model transcribes it.",
    )
