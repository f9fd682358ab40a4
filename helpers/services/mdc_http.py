"""The Mozilla Data Collective's HTTP API, spoken with ``requests`` as the MDC's own SDK (``datacollective`` 0.7)
speaks it, and the resumable download of an archive.

The course asks four things of it: the public catalogue (``GET /datasets``) and a dataset's details
(``GET /datasets/<id>``), both without a key; a download session (``POST /datasets/<id>/download``, the key as a
Bearer token), which answers a pre-signed address of the archive, its size and its checksum; and the archive
itself, from that address. The SDK is not used: every release of it with this API needs requests 2.32.5 or later,
and Colab's runtime pins 2.32.4 (its ``google-colab`` package), which a set-up cell must not move. What each
error means for the learner is said by :mod:`helpers.services.mdc`.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import requests
import tqdm.auto

from helpers import __version__
from helpers.runtime.errors import error_chain, first_line

API_URL = "https://mozilladatacollective.com/api"  # MDC_API_URL overrides it, as it does the SDK's
TIMEOUT = (10, 60)  # seconds to connect, and to wait for each read: the SDK's
USER_AGENT = f"whisper-course-helpers/{__version__} (Python {platform.python_version()}; {platform.system()})"


class MdcError(Exception):
    """The API answered with an error status (``status``) or with an answer it should not give (``None``);
    ``detail``: its own words."""

    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(f"{status or 'unexpected answer'} {detail}".strip())
        self.status, self.detail = status, detail


class CutDownload(Exception):
    """The archive's stream broke off: ``kept`` of ``total`` bytes are in the ``.part`` file, and ``resumable``
    says whether the next call resumes them (the API gave a checksum to match them with)."""

    def __init__(self, kept: int, total: int, resumable: bool, why: str) -> None:
        super().__init__(f"{kept} of {total} bytes ({why})")
        self.kept, self.total, self.resumable, self.why = kept, total, resumable, why


def api_url() -> str:
    return (os.environ.get("MDC_API_URL") or API_URL).rstrip("/")


def api_request(method: str, path: str, key: str | None = None, params: dict[str, Any] | None = None) -> Any:
    """``method`` on ``<api><path>``: the JSON it answers. The key goes as a Bearer token only where given (the
    catalogue and the details are public). Raises :class:`MdcError` for an error status, and requests' own errors
    (``OSError``) when the API cannot be reached or answers something other than JSON."""
    headers = {"User-Agent": USER_AGENT, **({"Authorization": f"Bearer {key}"} if key else {})}
    answer = requests.request(method, f"{api_url()}{path}", params=params, headers=headers, timeout=TIMEOUT)
    if not answer.ok:
        raise MdcError(answer.status_code, _detail(answer))
    return answer.json()


def _detail(answer: requests.Response) -> str:
    """The API's words for an error (the ``message`` or ``error`` of its JSON), else the HTTP reason."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    words = (body.get("message") or body.get("error")) if isinstance(body, dict) else None
    return str(words or answer.reason or "")


def fetch_archive(session: dict[str, Any], target: Path) -> Path:
    """Stream the archive a download session points to into ``target``, resuming a download cut short.

    As the SDK does (``download.py``): the bytes go to ``<target>.part``, with the session's checksum in
    ``<target>.checksum`` beside it; a ``.part`` whose ``.checksum`` still matches is resumed with an HTTP
    ``Range`` request, any other is discarded; the file takes its final name once the stream ends. Raises
    :class:`CutDownload` when the stream breaks off, keeping what arrived, and lets a disk error through as the
    ``OSError`` it is.
    """
    url, size, checksum = session.get("downloadUrl"), int(session.get("sizeBytes") or 0), session.get("checksum")
    if not url or size <= 0:
        raise MdcError(None, f"(a download session without the archive's address or size: {sorted(session)})")
    part = target.with_name(f"{target.name}.part")
    stamp = target.with_name(f"{target.name}.checksum")
    resumable = bool(checksum) and part.exists() and stamp.exists() and stamp.read_text().strip() == checksum
    if not resumable:  # another version of the dataset, or no checksum to tell: start afresh
        part.unlink(missing_ok=True)
        stamp.unlink(missing_ok=True)
        if checksum:
            stamp.write_text(checksum)
    kept = part.stat().st_size if resumable else 0
    if kept < size:
        _stream(url, part, kept, size, resumable=bool(checksum))
    part.replace(target)
    stamp.unlink(missing_ok=True)
    return target


def _stream(url: str, part: Path, kept: int, size: int, resumable: bool) -> None:
    """Append the bytes of ``url`` after the first ``kept`` to ``part``, with a progress bar."""
    headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={kept}-"} if kept else {})}
    bar = tqdm.auto.tqdm(total=size, initial=kept, unit="B", unit_scale=True, unit_divisor=1024,
                         desc=part.name.removesuffix(".part"))
    try:
        # The address is pre-signed: no key goes with it.
        with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT) as answer:
            answer.raise_for_status()
            if kept and answer.status_code != 206:  # the whole file came instead of the rest: write it afresh
                kept = 0
                bar.reset()
            with open(part, "ab" if kept else "wb") as file:
                for chunk in answer.iter_content(chunk_size=1 << 16):
                    file.write(chunk)
                    kept += len(chunk)
                    bar.update(len(chunk))
    except requests.RequestException as error:
        # The status, never the pre-signed address that requests' own message holds.
        why = (f"{error.response.status_code} {error.response.reason}" if error.response is not None
               else first_line(error_chain(error)[-1]))
        raise CutDownload(kept, size, resumable, why) from error
    finally:
        bar.close()
