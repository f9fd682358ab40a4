"""One run at a time in a folder: a lock file naming its holder, taken over when the holder is gone.

Two runs into one output folder (two commands, or 04 open in two tabs) write the same ``checkpoint-N``
folders: one run's ``load_best_model_at_end`` then loads the other's weights, and ``model/`` comes from
whichever saved last, without a word. So a run holds ``.run.lock`` in its folder for its lifetime: a file
created with ``O_EXCL`` (atomic on local disks and on Drive's mount alike, where ``flock`` is not shared
between runtimes) that names its holder's pid, host and start time. A second run is refused with that.

A holder can vanish without releasing it: a killed process, or a Colab runtime that disconnected (its
host is gone with it). A lock on this host whose process no longer exists is taken over at once; one from
another host is taken over once its heartbeat (the holder touches the file every
:data:`HEARTBEAT_SECONDS`) is older than :data:`STALE_SECONDS`.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from helpers.runtime.errors import CourseError

LOCK_NAME = ".run.lock"
HEARTBEAT_SECONDS = 30
STALE_SECONDS = 180  # six missed heartbeats: Drive's sync lag is seconds, a vanished runtime's silence forever

_held: dict[Path, RunLock] = {}


class RunLocked(CourseError):
    """Another run holds the folder; the message names it (pid, host, start) and what to do."""


def _alive_here(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _read(path: Path) -> tuple[dict | None, float | None]:
    """The lock file's holder and the age of its heartbeat in seconds; ``(None, None)`` when it is gone."""
    try:
        age = time.time() - path.stat().st_mtime
        holder = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError):  # being written this instant, or damaged: judged by its age alone
        return {}, age
    return (holder if isinstance(holder, dict) else {}), age


class RunLock:
    """The lock on ``folder`` (see the module docstring); ``with RunLock(folder, hint):`` or :meth:`acquire`.

    ``hint`` ends the refusal: what the learner can do instead (another ``--output-dir``, stop the other tab).
    Taking a lock this process holds already (a notebook cell run again) is a no-op.
    """

    def __init__(self, folder: str | Path, hint: str = ""):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.hint = hint
        self.me = {"pid": os.getpid(), "host": socket.gethostname(),
                   "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> RunLock:
        key = self.path.absolute()
        if key in _held:
            return _held[key]
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder, age = _read(self.path)
                if holder is None:  # released meanwhile
                    continue
                if holder.get("pid") == self.me["pid"] and holder.get("host") == self.me["host"]:
                    break  # this very process (a lock file left by a cell run before a re-import)
                if not self._gone(holder, age):
                    raise RunLocked(self._refusal(holder, age)) from None
                self._take_over(holder)
                continue
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(self.me, file)
            break
        else:
            raise RunLocked(f"Could not take the lock {self.path}: other runs keep taking it. {self.hint}".strip())
        _held[key] = self
        self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
        self._thread.start()
        atexit.register(self.release)
        return self

    def release(self) -> None:
        self._stop.set()
        _held.pop(self.path.absolute(), None)
        holder, _ = _read(self.path)
        if holder and holder.get("pid") == self.me["pid"] and holder.get("host") == self.me["host"]:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(self.path)
            except OSError:  # released, or Drive unmounted for a moment: the next beat tries again
                pass

    def _gone(self, holder: dict, age: float) -> bool:
        """Whether the holder is dead: gone from this host, or silent longer than :data:`STALE_SECONDS`."""
        if holder.get("host") == self.me["host"] and isinstance(holder.get("pid"), int):
            return not _alive_here(holder["pid"])
        return age > STALE_SECONDS

    def _take_over(self, holder: dict) -> None:
        # Renamed away, not deleted: of two runs taking over at once, only one rename finds the file.
        aside = self.path.with_name(f"{LOCK_NAME}.{self.me['pid']}.stale")
        try:
            os.replace(self.path, aside)
            aside.unlink()
        except FileNotFoundError:
            return
        print(f"Took over the lock in {self.folder} from an earlier run that is gone ({_describe(holder)}).")

    def _refusal(self, holder: dict, age: float) -> str:
        beat = "" if holder.get("host") == self.me["host"] else f", its last heartbeat {age:.0f} s ago"
        return (f"Another run is using {self.folder} ({_describe(holder)}{beat}): two runs in one folder would mix "
                f"their checkpoints. Wait for it to finish or stop it{'; ' + self.hint if self.hint else ''} (a run "
                f"on another machine that is gone releases the folder {STALE_SECONDS // 60} minutes after its last "
                "heartbeat).")


def _describe(holder: dict) -> str:
    if not holder:
        return "its lock file is unreadable"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
