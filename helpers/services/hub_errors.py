"""What a failed Hub call means: transport errors told apart from answers, each answer in one sentence.

``huggingface_hub`` and transformers re-raise an HTTP or network error as their own, several links down the
chain (:func:`helpers.runtime.errors.error_chain`); :func:`hub_problem` finds the one that says what went wrong.
"""

from __future__ import annotations

import importlib

import requests
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
)

from helpers.runtime.errors import error_chain, first_line


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
    found += [requests.ConnectionError, requests.Timeout]
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
