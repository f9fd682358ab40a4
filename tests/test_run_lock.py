"""Two runs in one folder (issue 27 §3): the second is refused with who holds it; a dead holder's lock is taken over.

Real processes: two ``python -m helpers run`` into one ``--output-dir``; a lock left by a process that no longer
exists; a lock from another host (a Colab runtime sharing the Drive workspace) with a fresh or a stale heartbeat.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from helpers.config import REPO_ROOT, get_config
from helpers.runtime import lock as run_lock
from helpers.runtime import workspace
from helpers.runtime.lock import LOCK_NAME, RunLock, RunLocked

ENV = {"COURSE_PROFILE": "smoke", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
TINY_RUN = ["--max-steps", "4", "--save-steps", "2", "--eval-steps", "2", "--logging-steps", "1", "--batch-size", "2",
            "--max-train-samples", "8", "--max-test-samples", "2", "--validation-size", "2", "--num-proc", "1",
            "--generation-max-length", "4", "--eval-num-beams", "1"]


def cli(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "helpers", *args], cwd=REPO_ROOT, env={**os.environ, **ENV},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def write_lock(folder, pid: int, host: str, age: float = 0.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    path.write_text(json.dumps({"pid": pid, "host": host, "started": "2026-01-01T10:00:00+00:00"}))
    then = time.time() - age
    os.utime(path, (then, then))


def test_two_runs_into_one_output_dir_the_second_is_refused(tmp_path, corpus):
    out = tmp_path / "out"
    first = cli("run", "--data", str(corpus), "--output-dir", str(out), *TINY_RUN)
    try:
        deadline = time.monotonic() + 120
        while (run_lock._read(out / LOCK_NAME)[0] or {}).get("pid") != first.pid:  # written whole, not just created
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-2000:]
            time.sleep(0.05)
        # Held where it stands (a stopped process is alive) until the second has tried: on a loaded machine the
        # tiny first run could otherwise finish before the second starts.
        first.send_signal(signal.SIGSTOP)
        try:
            second = cli("run", "--data", str(corpus), "--output-dir", str(out), *TINY_RUN, "--seed", "7",
                         "--learning-rate", "1e-3")
            _, err = second.communicate(timeout=300)
        finally:
            first.send_signal(signal.SIGCONT)
        assert second.returncode == 2, err[-2000:]
        assert "Traceback" not in err and err.strip().startswith("error: Another run is using")
        assert f"(pid {first.pid} on {socket.gethostname()}, started " in err and "--output-dir" in err
        _, first_err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, first_err[-2000:]
    assert not (out / LOCK_NAME).exists()  # released at the end
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["log_history"][0]["learning_rate"] != 1e-3  # the checkpoints are the first run's alone


def test_a_lock_left_by_a_dead_run_on_this_host_is_taken_over(tmp_path, corpus):
    out = tmp_path / "out"
    write_lock(out, dead_pid(), socket.gethostname())
    done = cli("prepare", "--data", str(corpus), "--output-dir", str(out), "--num-proc", "1")
    stdout, stderr = done.communicate(timeout=300)
    assert done.returncode == 0, stderr[-2000:]
    assert "Took over the lock in" in stdout and "from an earlier run that is gone" in stdout
    assert (out / "report.json").is_file() and not (out / LOCK_NAME).exists()


def test_another_hosts_lock_holds_while_its_heartbeat_is_fresh_and_is_taken_over_when_stale(tmp_path):
    write_lock(tmp_path, 4242, "colab-runtime-gone", age=20)
    with pytest.raises(RunLocked, match="pid 4242 on colab-runtime-gone, started 2026-01-01T10:00:00"):
        RunLock(tmp_path, "use another --output-dir").acquire()
    write_lock(tmp_path, 4242, "colab-runtime-gone", age=run_lock.STALE_SECONDS + 60)
    with RunLock(tmp_path) as held:
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
        assert RunLock(tmp_path).acquire() is held  # the same process again (a cell run twice): no conflict
    assert not (tmp_path / LOCK_NAME).exists()


def test_the_holder_keeps_its_heartbeat_while_it_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lock, "HEARTBEAT_SECONDS", 0.05)
    with RunLock(tmp_path):
        path = tmp_path / LOCK_NAME
        os.utime(path, (time.time() - 1000, time.time() - 1000))
        time.sleep(0.5)
        assert time.time() - path.stat().st_mtime < 5


def test_04_in_a_second_kernel_is_refused_by_the_drive_copies(monkeypatch, tmp_path, processor):
    """04 open twice (two tabs, two runtimes): the second notebook's trainer cell stops with who holds the workspace."""
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path))
    workspace.set_run(get_config("smoke"))
    mirror = workspace.checkpoint_copies_on_drive(processor)
    try:
        code = ("from helpers.config import get_config; from helpers.runtime import workspace; "
                "workspace.set_run(get_config('smoke')); workspace.checkpoint_copies_on_drive()")
        second = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                                env={**os.environ, **ENV, "COURSE_WORKSPACE": str(tmp_path)}, timeout=300, check=False)
        assert second.returncode != 0
        assert f"RunLocked: Another run is using {mirror.folder} (pid {os.getpid()} on " in second.stderr
    finally:
        RunLock(mirror.folder).acquire().release()
