"""The learner's errors: one sentence saying what to do, the chain of causes behind a library's error, a
full or read-only disk recognised whichever library met it, and quick probes of whether a service answers
and a folder takes writes."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import uuid
from pathlib import Path
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

    Libraries re-raise a network or HTTP error as their own (transformers as ``OSError``, requests as a
    ``ChunkedEncodingError`` around urllib3's ``IncompleteRead``), so what went wrong is often several links down.
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


# A full or read-only disk reaches us through many libraries, each in its own words: Python's OSError has the
# errno; safetensors' SafetensorError only says "No space left on device (os error 28)"; torch.save's
# RuntimeError says "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534", nothing of
# disk space (its cause, "basic_ios::clear: iostream error", neither). So the errno first, then the
# operating system's words in the message, then, for an opaque error, the free space where it was writing.
_FULL, _READ_ONLY = "full", "read-only"
_ERRNOS = {errno.ENOSPC: _FULL, errno.EDQUOT: _FULL, errno.EROFS: _READ_ONLY}
_WORDS = {"no space left on device": _FULL, "os error 28": _FULL, "disk quota exceeded": _FULL,
          "os error 122": _FULL, "read-only file system": _READ_ONLY, "os error 30": _READ_ONLY}
# What a library's write error says when it names no cause: torch.save's zip writer, C++ streams, safetensors.
_WRITE_HINTS = ("unexpected pos", "iostream error", "file write failed", "i/o error", "error while serializing")
# Below this much free space an opaque write error is taken for a full disk (a checkpoint of the smallest
# model we train is larger; a disk with this little room left stops the next save anyway).
LOW_SPACE = 64 * 2**20
DRIVE_ROOT = "/content/drive"
COLAB_DISK = "/content"


class DiskError(CourseError):
    """A full or read-only disk: the sentence says what is full, how much is needed and where to free it."""


def _existing(path: Path) -> Path:
    """``path`` or its nearest folder that exists (where the disk's free space can be read)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mount_point(path: str | Path) -> Path:
    """The folder at which the file system holding ``path`` is mounted."""
    path = _existing(Path(path)).resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | Path) -> int:
    """Free bytes on the disk that holds ``path`` (or would hold it, if it does not exist yet)."""
    return shutil.disk_usage(_existing(Path(path))).free


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def disk_fault(error: BaseException, path: str | Path | None = None, needed: int | None = None) -> str | None:
    """``"full"`` or ``"read-only"`` when ``error`` (or an error in its chain) comes from such a disk, else ``None``.

    ``path`` is where the failed write went: an error that names no cause is then taken for a full disk when
    less than ``needed`` bytes (or :data:`LOW_SPACE`) are free there.
    """
    chain = error_chain(error)
    for link in chain:
        if isinstance(link, OSError) and link.errno in _ERRNOS:
            return _ERRNOS[link.errno]
    for link in chain:
        text = str(link).lower()
        for words, fault in _WORDS.items():
            if words in text:
                return fault
    writing = any(isinstance(link, OSError) or any(hint in str(link).lower() for hint in _WRITE_HINTS)
                  for link in chain)
    if path is not None and writing:
        try:
            if free_bytes(path) < max(needed or 0, LOW_SPACE):
                return _FULL
        except OSError:
            return None
    return None


def where_to_free(path: str | Path) -> str:
    """Where the learner frees space for ``path``: Google Drive, this Colab runtime's disk, or the disk's mount."""
    path = Path(path).absolute()
    if str(path).startswith(DRIVE_ROOT):
        return ("on Google Drive (Gmail and Photos share its 15 GB: see drive.google.com/settings/storage), "
                "then empty Drive's bin, where deleted files still count")
    if str(path).startswith(COLAB_DISK + "/") or str(path) == COLAB_DISK:
        return "on this Colab runtime's disk (delete what you no longer need under /content, e.g. a download)"
    return f"on the disk mounted at {mount_point(path)} (delete what you no longer need there)"


def disk_sentence(fault: str, path: str | Path, needed: int | None = None, then: str = "") -> str:
    """One sentence for a ``fault`` (:func:`disk_fault`) met writing to ``path``: what, how much, where to free it.

    ``then`` ends the sentence with what to do once space is freed (e.g. "then run this cell again").
    """
    path = Path(path)
    tail = f"; {then}" if then else ""
    if fault == _READ_ONLY:
        return (f"{path} is on a read-only file system (mounted at {mount_point(path)}), so nothing can be written "
                f"there: choose a folder you can write to{tail}.")
    try:
        free = free_bytes(path)
    except OSError:
        free = None
    room = f"{_size(free)} free" if free is not None else "no room left"
    need = f", about {_size(needed)} needed" if needed else ""
    return f"The disk that holds {path} is full ({room}{need}): free space {where_to_free(path)}{tail}."


def explain_disk_error(error: BaseException, path: str | Path | None = None, needed: int | None = None,
                       then: str = "") -> str | None:
    """One sentence (:func:`disk_sentence`) when ``error`` comes from a full or read-only disk, else ``None``.

    ``path`` is where the write went; without it the file named by the error, if any, is used.
    """
    if path is None:
        path = next((link.filename for link in error_chain(error)
                     if isinstance(link, OSError) and isinstance(link.filename, str)), None)
    fault = disk_fault(error, path, needed)
    if fault is None:
        return None
    return disk_sentence(fault, path if path is not None else Path.cwd(), needed, then)


def check_writable(folder: str | Path, needed: int = 0, what: str = "", then: str = "") -> Path:
    """Make ``folder`` and write a probe file in it; :class:`DiskError` when it is read-only or has less than
    ``needed`` bytes free. Call it before long work whose first write would otherwise come at its end.

    ``what`` names what will be written there (for the sentence); returns ``folder``.
    """
    folder = Path(folder)
    probe = folder / f".write-check-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        sentence = explain_disk_error(error, folder, needed, then)
        if sentence is None:
            raise DiskError(f"{folder} cannot be written to ({first_line(error)}): choose a folder you can write "
                            f"to{'; ' + then if then else ''}.") from error
        raise DiskError(sentence) from error
    if needed and free_bytes(folder) < needed:
        sentence = disk_sentence(_FULL, folder, needed, then)
        raise DiskError(sentence.replace(" is full (", f" has too little room for {what} (", 1) if what else sentence)
    return folder
