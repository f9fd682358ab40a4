"""Sharing the fine-tuned model (notebook 06): its card, the push to the Hub after a local save, the export
folder, a long recording for the pipeline, and the optional Gradio demo.

The token is looked up when the push needs it (:func:`helpers.services.hub.find_token`) and handed straight to
``huggingface_hub``: never printed, logged or written to a file of ours.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from huggingface_hub.errors import HfHubHTTPError
from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

from helpers.config import CourseConfig
from helpers.extras.lora import training_method
from helpers.runtime.errors import CourseError, first_line
from helpers.runtime.secrets import SecretNotGranted
from helpers.services.hub import find_token, redact
from helpers.services.hub_errors import explain_hub_error, transport_errors


def card_language(config: CourseConfig) -> str | None:
    """The dataset's language code for the model card: the locale at the end of the data source, if any.

    Common Voice names folders and ids by locale ('.../dv', 'common-voice:dv'); Whisper's own language can
    differ (the course transcribes Dhivehi as 'sinhalese'), so the data source is asked first.
    """
    tail = str(config.data).rstrip("/").replace("\\", "/").split("/")[-1].split(":")[-1].split("-")[-1]
    if tail.isalpha() and 2 <= len(tail) <= 3:
        return tail.lower()
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


def model_card(
    repo_id: str,
    base_model: str,
    dataset_name: str,
    language: str | None,
    scores: dict | None,
    training: dict,
    method: dict | None = None,
) -> ModelCard:
    """A model card with the base model, dataset, language, WER results and training settings.

    ``method`` (``helpers.extras.lora.training_method``: full fine-tuning, or LoRA with its rank and modules; the
    trainable-parameter share; the adapter's size) adds a "Training method" section.
    """
    # Both normalised WERs, each named: the course's 14 % is wer (BasicTextNormalizer), not wer_words.
    named = {"wer": "WER (the course's normaliser, BasicTextNormalizer)", "wer_words": "WER (words kept whole)"}
    eval_results = [
        EvalResult(
            task_type="automatic-speech-recognition",
            dataset_type=dataset_name,
            dataset_name=dataset_name,
            metric_type="wer",
            metric_name=name,
            metric_value=scores[key],
        )
        for key, name in named.items()
        if scores and key in scores and scores[key] == scores[key]  # skip missing and NaN
    ]
    data = ModelCardData(
        language=language,
        license="apache-2.0",
        base_model=base_model,
        datasets=[dataset_name],
        metrics=["wer"],
        model_name=repo_id,
        pipeline_tag="automatic-speech-recognition",
        library_name="transformers",
        tags=["whisper", "hf-asr-leaderboard", "generated_from_trainer",
              *(["lora", "peft"] if method and "LoRA" in method.get("method", "") else [])],
        eval_results=eval_results or None,
    )
    rows = "\n".join(f"| {k} | {v} |" for k, v in training.items())
    how = "\n".join(f"| {k} | {v} |" for k, v in (method or {}).items())
    how = f"\n## Training method\n\n| | |\n|---|---|\n{how}\n" if method else ""
    labels = {"wer_ortho": "WER, orthographic (raw text)",
              "wer": "WER, the course's normaliser (BasicTextNormalizer)",
              "wer_words": "WER, case and punctuation removed, vowel marks kept", "cer_words": "CER, as wer_words",
              "n": "clips scored"}
    results = "\n".join(f"| `{k}`: {labels.get(k, k)} | {v} |" for k, v in (scores or {}).items())
    text = f"""---
{data.to_yaml()}
---

# {repo_id}

{base_model} fine-tuned for speech recognition on {dataset_name}, following the Hugging Face Audio
course's "fine-tune Whisper" unit.

## Results on the test split

| metric | value |
|---|---|
{results}

`wer` is the course's normalised WER (Whisper's `BasicTextNormalizer`, which splits words at vowel
marks, so it runs far below the others on Thaana); `wer_words` removes case and punctuation but keeps the
marks, so words stay whole (it chose the checkpoint); `wer_ortho` is on the raw text. Compare a figure only
with one of the same name.
{how}
## Training settings

| setting | value |
|---|---|
{rows}

## Use

```python
from transformers import pipeline
asr = pipeline("automatic-speech-recognition", model="{repo_id}")
asr("clip.mp3")
```
"""
    return ModelCard(text)


class PushError(CourseError):
    """A push that did not happen; the message says where the model is and how to push it later."""


def push_later_command(model_dir: Path, repo_id: str) -> str:
    """The command that pushes ``model_dir`` once the network or the token is back."""
    return f"python -m helpers push --model-dir {model_dir} --repo-id {repo_id}"


def push_model(model_dir: Path, repo_id: str, token: str | None = None, private: bool = False,
               raise_on_failure: bool = False) -> str:
    """Upload a saved model folder; on failure the local copy stays and the message says how to retry.

    Call it only after the model is saved locally: nothing here writes to ``model_dir``, so a failed
    push (no network, bad token, no permission) cannot damage it. The token goes to ``huggingface_hub``
    and nowhere else; error messages name the error's type, what it means, and its first line with
    anything that looks like a token masked (a Hub error may quote the request, headers included).
    With ``raise_on_failure`` a failure raises ``PushError`` instead of returning the message.
    """
    model_dir = Path(model_dir)
    try:
        token = token or find_token()
    except SecretNotGranted as error:
        token, refused = None, error
    else:
        refused = None
    if not (model_dir / "config.json").is_file():
        message = f"{model_dir} holds no saved model (no config.json); nothing was pushed."
    elif refused is not None:
        message = f"{refused} The model stays in {model_dir}; push it later with `{push_later_command(model_dir, repo_id)}`."
    elif not token:
        message = (
            f"No Hub token: the model stays in {model_dir}. Log in (notebook 00, `hf auth login` or HF_TOKEN), "
            f"then push with `{push_later_command(model_dir, repo_id)}`."
        )
    else:
        try:
            api = HfApi(token=token)
            url = api.create_repo(repo_id, exist_ok=True, private=private)
            api.upload_folder(folder_path=str(model_dir), repo_id=repo_id, commit_message="Fine-tuned Whisper")
            return f"Pushed to {url}"
        # Network, token, permission, rate limits, an invalid repo id: all leave the model as it is.
        except (HfHubHTTPError, OSError, ValueError, *transport_errors()) as error:
            why = explain_hub_error(error, repo_id, downloading=False) or first_line(error)
            message = (
                f"Push failed ({type(error).__name__}): {redact(why, token)}; the model is safe in {model_dir}. "
                f"Push it later with `{push_later_command(model_dir, repo_id)}`."
            )
    if raise_on_failure:
        raise PushError(message)
    return message
