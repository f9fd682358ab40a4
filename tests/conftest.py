"""Shared fixtures: the offline smoke model's processor, openai-whisper's reference code, the corpus, one torch
thread for a module's in-process training.

With ``CI=true`` a skipped test fails the run (the tiers CI cannot reach, ``gpu`` and ``hub``, excepted): in CI a skip means a
missing dependency (ffmpeg, openai-whisper) hiding tests, not an optional tier.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest

os.environ.setdefault("COURSE_PROFILE", "smoke")
# OpenMP threads that busy-wait starve each other on small shared machines (one torch.isin call in
# generate() took 0.9 s instead of 0.008 s); must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from helpers.config import BUNDLED_CORPUS, SMOKE_MODEL_DIR  # noqa: E402


def _skips_fail() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _fail_skip(report: pytest.TestReport | pytest.CollectReport, node: pytest.Item | pytest.Collector) -> None:
    """Turn a skip into a failure that gives the skip's reason; not for xfail (also reported as skipped)."""
    if not (_skips_fail() and report.skipped) or hasattr(report, "wasxfail") or any(node.get_closest_marker(tier) for tier in ("gpu", "hub")):
        return
    where, reason = node.nodeid, str(report.longrepr)
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:  # (path, line, "Skipped: reason")
        path, line, reason = report.longrepr
        where, reason = f"{path}:{line}", reason.removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = f"{where}: skipped, and CI=true allows no skips except the gpu and hub tiers: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """With ``CI=true``, a test that skips (``pytest.skip``, ``skipif``, ``importorskip``) fails instead."""
    outcome = yield
    _fail_skip(outcome.get_result(), item)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """The same for a whole module skipped while it is collected (``pytest.importorskip`` at its top)."""
    outcome = yield
    _fail_skip(outcome.get_result(), collector)


def openai_whisper_module(name: str) -> types.ModuleType:
    """Import ``whisper.<name>`` from openai-whisper without its ``__init__`` (which needs numba, triton)."""
    if not hasattr(sys.modules.get("whisper"), "_stub"):
        spec = importlib.util.find_spec("whisper")
        if spec is None:
            pytest.skip("openai-whisper is not installed (pip install --no-deps openai-whisper)")
        package = types.ModuleType("whisper")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        package._stub = True
        sys.modules["whisper"] = package
    return importlib.import_module(f"whisper.{name}")


@pytest.fixture(scope="session")
def openai_whisper():
    """``openai_whisper("tokenizer")`` imports a module of openai-whisper's reference implementation."""
    return openai_whisper_module


@pytest.fixture(scope="session")
def reference_tokenizer():
    """openai-whisper's own multilingual tokenizer (99 languages, as whisper-small)."""
    return openai_whisper_module("tokenizer").get_tokenizer(multilingual=True, num_languages=99)


@pytest.fixture(scope="session")
def processor():
    from helpers.model import load_processor

    return load_processor(str(SMOKE_MODEL_DIR), "sinhalese", "transcribe")


@pytest.fixture(scope="session")
def corpus() -> Path:
    assert (BUNDLED_CORPUS / "train.tsv").is_file(), "bundled corpus missing: python tools/make_corpus.py"
    return BUNDLED_CORPUS


@pytest.fixture(scope="session")
def prepared(processor, corpus):
    """``(splits, prepared, report)`` for the bundled corpus, prepared once for the whole session."""
    from helpers.data import load_common_voice
    from helpers.preparation import prepare_splits

    splits = load_common_voice(str(corpus))
    return splits, *prepare_splits(splits, processor, num_proc=2)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread while a module trains in this process: the tiny models gain nothing from more, and the
    suite's two pytest-xdist workers share the machine's cores (a child process gets ``ONE_THREAD``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _no_run_left_over():
    """``helpers.notebook.session.setup`` remembers its run for the workspace stamps; no test inherits another's."""
    from helpers.runtime import workspace

    workspace.set_run(None)
    yield
    workspace.set_run(None)
