"""The learner's errors: one sentence saying what to do, the chain of causes behind a library's error, and a
quick probe of whether a service answers at all."""

from __future__ import annotations

import socket
from urllib.parse import urlparse


class CourseError(Exception):
    """A problem the learner can fix (a missing folder, an unknown language): one clear sentence, no traceback."""


class DataSourceError(CourseError):
    """The data source does not exist or is not shaped as expected; the message says what was expected.

    Raised by :mod:`helpers.data` and by the MDC download behind it (:mod:`helpers.services.mdc`), so it lives
    below both; ``helpers.data.DataSourceError`` is the name the course uses.
    """


def first_line(error: BaseException) -> str:
    """The first non-empty line of ``error``'s message (its type's name when it has none), for one-sentence errors."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def error_chain(error: BaseException | None) -> list[BaseException]:
    """``error`` and every error it was raised from or while handling, outermost first.

    Libraries re-raise a network or HTTP error as their own (transformers as ``OSError``, the MDC SDK as
    ``DownloadError``), so what went wrong is often several links down.
    """
    seen: list[BaseException] = []
    while error is not None and all(error is not other for other in seen):
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def can_connect(url: str, timeout: float = 1.5) -> bool:
    """Whether ``url``'s host accepts a TCP connection within ``timeout`` seconds: a quick probe before a
    client that would retry an unreachable server for minutes."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "", port), timeout=timeout).close()
        return True
    except OSError:
        return False
