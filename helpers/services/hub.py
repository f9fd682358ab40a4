"""The Hugging Face Hub: finding a token safely, who is logged in, and whether the Hub answers at all.

The token is looked up when needed (``HF_TOKEN``, a Colab secret, or the login cache) and handed
straight to ``huggingface_hub``: never to ``TrainingArguments`` (pickled into every checkpoint), never
printed, logged or written to a file of ours.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from huggingface_hub import HfApi, constants
from huggingface_hub import get_token as _cached_token
from huggingface_hub.errors import HfHubHTTPError

from helpers.runtime.errors import can_connect, first_line
from helpers.runtime.secrets import SecretNotGranted, colab_secret
from helpers.services.hub_errors import hub_problem, transport_errors


def find_token() -> str | None:
    """The Hub token from ``HF_TOKEN``, a ``hf auth login``, or a Colab secret named ``HF_TOKEN``.

    Raises ``SecretNotGranted`` (a ``CourseError``) when the only token is a Colab secret this notebook has
    not been given access to.
    """
    # huggingface_hub's own lookup: HF_TOKEN, then the login cache (and, in Colab's kernel, the secret too,
    # but a refused one only as a warning, hence ours after it).
    return _cached_token() or colab_secret("HF_TOKEN")


_SECRET = re.compile(r"(?i)(authorization:\s*(?:bearer\s+)?|bearer\s+|token[=:]\s*)\S+|hf_[A-Za-z0-9]{8,}")


def redact(text: str, token: str | None) -> str:
    """``text`` without the token: Hub errors may quote a request, headers included."""
    if token:
        text = text.replace(token, "***").replace(token.removeprefix("hf_"), "***")
    return _SECRET.sub(lambda m: (m.group(1) or "hf_") + "***", text)


_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+(:[\w.-]+)?")


def hub_reachable(timeout: float = 1.5) -> bool:
    """Whether the Hub can be used: offline mode is off and its endpoint accepts a connection within ``timeout``.

    The endpoint probed is ``huggingface_hub``'s own (``HF_ENDPOINT`` when it was set, else huggingface.co),
    so a mirror or a local stand-in counts as the Hub exactly when the client would talk to it.
    """
    return not constants.HF_HUB_OFFLINE and can_connect(constants.ENDPOINT, timeout)


def use_cache_only_if_unreachable(*sources: str | None) -> str | None:
    """Switch to offline mode when some source is a Hub id and the Hub cannot be reached; return a note.

    Unreachable, ``huggingface_hub`` retries every request with back-off, which turns "this model is not
    here" into minutes of "Retrying in 8s" lines. In offline mode a model or dataset already in the local
    cache still loads, and one that is not fails at once with one clear sentence.
    """
    hub_ids = [s for s in sources if s and _HUB_ID.fullmatch(str(s)) and not Path(str(s)).expanduser().exists()]
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


def _whoami(token: str) -> tuple[str | None, BaseException | None]:
    try:
        return HfApi().whoami(token=token)["name"], None
    except (HfHubHTTPError, OSError, *transport_errors()) as error:  # refused, or not reachable
        return None, error


def who_am_i(token: str | None = None) -> str | None:
    """The logged-in user's name, or ``None`` when there is no valid token (or no readable one) or no network."""
    try:
        token = token or find_token()
    except SecretNotGranted:  # login() has said how to grant it
        return None
    return _whoami(token)[0] if token else None


def login_status() -> str:
    """One sentence for learners: who is logged in, or why pushing will be skipped (bad token, no network)."""
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
    return f"A token was found but {why} ({redact(first_line(error), token)}): pushing will be skipped."
