"""The Hugging Face Hub: finding a token safely, the model card, and pushing after a local save.

The token is looked up when needed (``HF_TOKEN``, a Colab secret, or the login cache) and handed
straight to ``huggingface_hub``: never to ``TrainingArguments`` (pickled into every checkpoint), never
printed, logged or written to a file of ours.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from huggingface_hub import get_token as _cached_token

from .config import CourseError


def find_token() -> str | None:
    """The Hub token from ``HF_TOKEN``, a Colab secret named ``HF_TOKEN``, or ``huggingface-cli login``."""
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    try:
        from google.colab import userdata  # type: ignore[import-not-found]

        return userdata.get("HF_TOKEN")
    except Exception:  # not in Colab, or no such secret, or access not granted
        pass
    return _cached_token()


_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+(:[\w.-]+)?")


def hub_reachable(timeout: float = 1.5) -> bool:
    """Whether the Hub's endpoint (``HF_ENDPOINT``, else huggingface.co) accepts a connection within ``timeout``."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=timeout).close()
        return True
    except OSError:
        return False


def use_cache_only_if_unreachable(*sources: str | None) -> str | None:
    """Switch to offline mode when some source is a Hub id and the Hub cannot be reached; return a note.

    Unreachable, ``huggingface_hub`` retries every request with back-off, which turns "this model is not
    here" into minutes of "Retrying in 8s" lines. In offline mode a model or dataset already in the local
    cache still loads, and one that is not fails at once with one clear sentence.
    """
    hub_ids = [s for s in sources if s and _HUB_ID.fullmatch(str(s)) and not Path(str(s)).expanduser().exists()]
    if not hub_ids or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on") or hub_reachable():
        return None
    os.environ["HF_HUB_OFFLINE"] = "1"  # for what imports huggingface_hub later, and for child processes
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True  # for what already has (transformers asks it on every call)
    if "datasets.config" in sys.modules:
        sys.modules["datasets.config"].HF_HUB_OFFLINE = True
    return (
        f"Note: the Hugging Face Hub cannot be reached, so {', '.join(hub_ids)} can only come from the local "
        "cache (offline mode)."
    )


def who_am_i(token: str | None = None) -> str | None:
    """The logged-in user's name, or ``None`` when there is no valid token or no network."""
    token = token or find_token()
    if not token:
        return None
    try:
        return HfApi().whoami(token=token)["name"]
    except Exception:
        return None


def login_status() -> str:
    """One sentence for learners: who is logged in, or that pushing will be skipped."""
    token = find_token()
    if not token:
        return "Not logged in: training and evaluation work as usual; pushing to the Hub will be skipped."
    user = who_am_i(token)
    if user is None:
        return "A token was found but the Hub did not accept it (offline or invalid): pushing will be skipped."
    return f"Logged in to the Hugging Face Hub as {user}."


def model_card(
    repo_id: str,
    base_model: str,
    dataset_name: str,
    language: str | None,
    scores: dict | None,
    training: dict,
) -> ModelCard:
    """A model card with the base model, dataset, language, WER results and training settings."""
    eval_results = []
    if scores and scores.get("wer") == scores.get("wer"):  # skip NaN
        eval_results = [
            EvalResult(
                task_type="automatic-speech-recognition",
                dataset_type=dataset_name,
                dataset_name=dataset_name,
                metric_type="wer",
                metric_name="WER (normalised)",
                metric_value=scores["wer"],
            )
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
        tags=["whisper", "hf-asr-leaderboard", "generated_from_trainer"],
        eval_results=eval_results or None,
    )
    rows = "\n".join(f"| {k} | {v} |" for k, v in training.items())
    results = "\n".join(f"| {k} | {v} |" for k, v in (scores or {}).items())
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

`wer` is computed after lower-casing and removing punctuation while keeping combining marks;
`wer_basic` after Whisper's `BasicTextNormalizer`, as in the course; `wer_ortho` on raw text.

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
    and nowhere else; error messages name the error's type, never its text, which may quote a request.
    With ``raise_on_failure`` a failure raises ``PushError`` instead of returning the message.
    """
    model_dir = Path(model_dir)
    token = token or find_token()
    if not (model_dir / "config.json").is_file():
        message = f"{model_dir} holds no saved model (no config.json); nothing was pushed."
    elif not token:
        message = (
            f"No Hub token: the model stays in {model_dir}. Log in (notebook 00, `hf auth login` or HF_TOKEN), "
            f"then push with `{push_later_command(model_dir, repo_id)}`."
        )
    else:
        try:
            api = HfApi(token=token)
            api.create_repo(repo_id, exist_ok=True, private=private)
            api.upload_folder(folder_path=str(model_dir), repo_id=repo_id, commit_message="Fine-tuned Whisper")
            return f"Pushed to https://huggingface.co/{repo_id}"
        except Exception as error:  # network, authentication, permission, rate limits: all leave the model as is
            message = (
                f"Push failed ({type(error).__name__}); the model is safe in {model_dir}. Push it later with "
                f"`{push_later_command(model_dir, repo_id)}`."
            )
    if raise_on_failure:
        raise PushError(message)
    return message
