"""Run a benchmark step in its own process and record its wall time and peak memory, children included.

Memory is sampled from outside (the parent polls the child's whole process tree), so ``map`` workers count.
Two figures are kept: the peak of the tree's summed RSS, which counts pages shared between a forked
worker and its parent twice, and the peak of the summed PSS (proportional set size, Linux only), which
splits shared pages between the processes that share them and so is the honest total.
``resource.getrusage(RUSAGE_CHILDREN)`` gives the largest single process's peak as a cross-check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]


def _tree(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return []


def _sample(process: psutil.Process, use_pss: bool) -> tuple[int, int]:
    rss = pss = 0
    for member in _tree(process):
        try:
            if use_pss:
                info = member.memory_full_info()  # reads smaps: slower, so sampled less often
                rss, pss = rss + info.rss, pss + info.pss
            else:
                rss += member.memory_info().rss
        except psutil.Error:  # a worker that exited between listing and reading
            continue
    return rss, pss


def run_measured(args: list[str], env: dict | None = None, interval: float = 0.05) -> dict:
    """Run ``python -m <args>`` from the repository root; return wall time, peak RSS/PSS and return code."""
    child_env = {**os.environ, **(env or {})}
    start = time.perf_counter()
    popen = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO_ROOT, env=child_env)
    process = psutil.Process(popen.pid)
    use_pss = hasattr(psutil.Process, "memory_full_info") and sys.platform.startswith("linux")
    peaks = {"rss": 0, "pss": 0}
    done = threading.Event()

    def poll() -> None:
        tick = 0
        while not done.is_set():
            # PSS every fourth sample: reading smaps of a large process takes milliseconds.
            rss, pss = _sample(process, use_pss and tick % 4 == 0)
            peaks["rss"] = max(peaks["rss"], rss)
            peaks["pss"] = max(peaks["pss"], pss)
            tick += 1
            done.wait(interval)

    sampler = threading.Thread(target=poll, daemon=True)
    sampler.start()
    returncode = popen.wait()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    return {
        "returncode": returncode,
        "wall_s": wall,
        "peak_rss_bytes": peaks["rss"],
        "peak_pss_bytes": peaks["pss"] or None,
    }


def dir_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (what the prepared dataset costs on disk)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
