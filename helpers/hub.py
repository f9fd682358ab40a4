"""The Hugging Face Hub: finding a token safely, the model card, and pushing after a local save.

The token is looked up when needed (``HF_TOKEN``, a Colab secret, or the login cache) and handed
straight to ``huggingface_hub``: never to ``TrainingArguments`` (pickled into every checkpoint), never
printed, logged or written to a file of ours.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from huggingface_hub import get_token as _cached_token
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
)

from .config import CourseError, can_connect, error_chain, first_line


def find_token() -> str | None:
    """The Hub token from ``HF_TOKEN``, a ``hf auth login``, or a Colab secret named ``HF_TOKEN``.

    Raises ``SecretNotGranted`` (a ``CourseError``) when the only token is a Colab secret this notebook has
    not been given access to.
    """
    from .colab import colab_secret

    # huggingface_hub's own lookup: HF_TOKEN, then the login cache (and, in Colab's kernel, the secret too,
    # but a refused one only as a warning, hence ours after it).
    return _cached_token() or colab_secret("HF_TOKEN")


_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+(:[\w.-]+)?")


def hub_reachable(timeout: float = 1.5) -> bool:
    """Whether the Hub can be used: offline mode is off and its endpoint accepts a connection within ``timeout``.

    The endpoint probed is ``huggingface_hub``'s own (``HF_ENDPOINT`` when it was set, else huggingface.co),
    so a mirror or a local stand-in counts as the Hub exactly when the client would talk to it.
    """
    from huggingface_hub import constants

    return not constants.HF_HUB_OFFLINE and can_connect(constants.ENDPOINT, timeout)


def use_cache_only_if_unreachable(*sources: str | None) -> str | None:
    """Switch to offline mode when some source is a Hub id and the Hub cannot be reached; return a note.

    Unreachable, ``huggingface_hub`` retries every request with back-off, which turns "this model is not
    here" into minutes of "Retrying in 8s" lines. In offline mode a model or dataset already in the local
    cache still loads, and one that is not fails at once with one clear sentence.
    """
    hub_ids = [s for s in sources if s and _HUB_ID.fullmatch(str(s)) and not Path(str(s)).expanduser().exists()]
    from huggingface_hub import constants

    if not hub_ids or constants.HF_HUB_OFFLINE or hub_reachable():
        return None
    os.environ["HF_HUB_OFFLINE"] = "1"  # for what imports huggingface_hub later, and for child processes
    constants.HF_HUB_OFFLINE = True  # for what already has (transformers asks it on every call)
    if "datasets.config" in sys.modules:
        sys.modules["datasets.config"].HF_HUB_OFFLINE = True
    return (
        f"Note: the Hugging Face Hub cannot be reached, so {', '.join(hub_ids)} can only come from the local "
        "cache (offline mode)."
    )


def transport_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean the Hub could not be reached at all, for whichever HTTP client is installed.

    huggingface_hub 1.x talks through ``httpx`` (2.x through ``httpx2``), ``datasets`` turns what it cannot
    reach into ``ConnectionError``, older stacks used ``requests``; offline mode raises ``OfflineModeIsEnabled``.
    """
    found: list[type[BaseException]] = [ConnectionError, TimeoutError, OfflineModeIsEnabled]
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            pass
    try:
        import requests

        found += [requests.ConnectionError, requests.Timeout]
    except ImportError:
        pass
    return tuple(found)


# What each kind of Hub failure means for the learner; {repo} and {url} are filled in.
HUB_PROBLEMS = {
    "gated": "{repo} is gated: open {url}, accept its conditions while logged in, and use a token of that account",
    "not_found": "{repo} was not found on the Hub (check the spelling; a private repo needs a token that can read it)",
    "unauthorized": "the Hub rejected the token (401 Unauthorized): it is mistyped, expired or revoked; create one at "
    "https://huggingface.co/settings/tokens and log in again",
    "forbidden": "the token is valid but not allowed to do this (403 Forbidden): it may be read-only or limited to "
    "other repos; use a token with the needed permission",
    "rate_limited": "the Hub is limiting requests (429 Too Many Requests): wait a few minutes and try again",
    "server": "the Hub answered with an error (HTTP {status}); try again later",
    "unreachable": "the Hub could not be reached (no network, or offline mode)",
}


def _status(error: BaseException) -> int | None:
    return getattr(getattr(error, "response", None), "status_code", None)


def hub_problem(error: BaseException) -> tuple[str, BaseException] | None:
    """``(kind, culprit)`` when a Hub failure is behind ``error``: kind is a key of ``HUB_PROBLEMS``, culprit
    the error in the chain that says so; ``None`` for anything else (a broken file, a bug of ours).

    transformers and datasets re-raise the Hub's typed errors as ``OSError``/``FileNotFoundError`` with the
    original as their cause, so the whole chain is searched, most specific kind first.
    """
    chain = error_chain(error)
    for wanted, kind in ((GatedRepoError, "gated"), (RepositoryNotFoundError, "not_found")):
        culprit = next((e for e in chain if isinstance(e, wanted)), None)
        if culprit is not None:
            return kind, culprit
    for culprit in chain:
        if isinstance(culprit, HfHubHTTPError):
            status = _status(culprit)
            kinds = {401: "unauthorized", 403: "forbidden", 404: "not_found", 429: "rate_limited"}
            return kinds.get(status, "server"), culprit
    # datasets raises its own DatasetNotFoundError, often with the Hub's error suppressed ("from None").
    for culprit in chain:
        if any(kind.__name__ == "DatasetNotFoundError" for kind in type(culprit).__mro__):
            return ("gated" if "gated" in str(culprit) else "not_found"), culprit
    culprit = next((e for e in chain if isinstance(e, (LocalEntryNotFoundError, *transport_errors()))), None)
    return ("unreachable", culprit) if culprit is not None else None


def explain_hub_error(error: BaseException, repo_id: str, repo_type: str = "model", downloading: bool = True) -> str | None:
    """What went wrong with the Hub behind ``error``, as a clause ending with the error's first line; else ``None``.

    A wrong token, a gated or missing repo and a network that is down read differently, e.g. "the Hub
    rejected the token (401 Unauthorized): ... (Client error '401 Unauthorized' for url ...)".
    ``downloading`` adds, when the Hub was out of reach, that the local cache did not have ``repo_id`` either.
    """
    found = hub_problem(error)
    if found is None:
        return None
    kind, culprit = found
    url = f"https://huggingface.co/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
    text = HUB_PROBLEMS[kind].format(repo=repo_id, url=url, status=_status(culprit))
    if kind == "unreachable" and downloading:
        text += f" and {repo_id} is not in the local cache"
    return f"{text} ({first_line(culprit)})"


def _whoami(token: str) -> tuple[str | None, BaseException | None]:
    try:
        return HfApi().whoami(token=token)["name"], None
    except (HfHubHTTPError, OSError, *transport_errors()) as error:  # refused, or not reachable
        return None, error


def who_am_i(token: str | None = None) -> str | None:
    """The logged-in user's name, or ``None`` when there is no valid token (or no readable one) or no network."""
    from .colab import SecretNotGranted

    try:
        token = token or find_token()
    except SecretNotGranted:  # login() has said how to grant it
        return None
    return _whoami(token)[0] if token else None


def login_status() -> str:
    """One sentence for learners: who is logged in, or why pushing will be skipped (bad token, no network)."""
    from .colab import SecretNotGranted

    try:
        token = find_token()
    except SecretNotGranted as error:
        return f"{error} Until then pushing will be skipped."
    if not token:
        return "Not logged in: training and evaluation work as usual; pushing to the Hub will be skipped."
    user, error = _whoami(token)
    if user is not None:
        return f"Logged in to the Hugging Face Hub as {user}."
    kind = (hub_problem(error) or ("other", error))[0]
    if kind == "unauthorized":
        why = ("the Hub rejected it (401 Unauthorized): it is mistyped, expired or revoked; create one at "
               "https://huggingface.co/settings/tokens and log in again")
    elif kind == "unreachable":
        why = "the Hub could not be reached (no network, or offline mode); the token was not checked"
    else:
        why = "the Hub could not check it"
    return f"A token was found but {why} ({_redact(first_line(error), token)}): pushing will be skipped."


_SECRET = re.compile(r"(?i)(authorization:\s*(?:bearer\s+)?|bearer\s+|token[=:]\s*)\S+|hf_[A-Za-z0-9]{8,}")


def _redact(text: str, token: str | None) -> str:
    """``text`` without the token: Hub errors may quote a request, headers included."""
    if token:
        text = text.replace(token, "***").replace(token.removeprefix("hf_"), "***")
    return _SECRET.sub(lambda m: (m.group(1) or "hf_") + "***", text)


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

    ``method`` (``helpers.lora.training_method``: full fine-tuning, or LoRA with its rank and modules; the
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
    from .colab import SecretNotGranted

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
                f"Push failed ({type(error).__name__}): {_redact(why, token)}; the model is safe in {model_dir}. "
                f"Push it later with `{push_later_command(model_dir, repo_id)}`."
            )
    if raise_on_failure:
        raise PushError(message)
    return message
