"""With ``CI=true`` a skipped test fails the run, with the skip's reason; the gpu and hub tiers and xfail are exempt.

A tiny test session is run in a subprocess with this suite's own hooks (``tests/conftest.py``, loaded by
path), once with ``CI=true`` and once without, and its outcomes are read from pytest's summary line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.config import REPO_ROOT

TINY_TESTS = '''
import pytest

def test_passes():
    pass

def test_skips_inside():
    pytest.skip("ffmpeg is not installed")

@pytest.mark.skipif(True, reason="openai-whisper is missing")
def test_skipif():
    pass

@pytest.fixture
def needs_something():
    pytest.skip("a fixture found nothing to use")

def test_skipping_fixture(needs_something):
    pass

@pytest.mark.gpu
def test_gpu_tier():
    pytest.skip("no CUDA GPU")

@pytest.mark.xfail(reason="a known failure", strict=True)
def test_expected_failure():
    assert False
'''

MODULE_SKIPPED = '''
import pytest

pytest.importorskip("a_module_nobody_installed")

def test_never_collected():
    pass
'''

# The suite's hooks, loaded under another name: a second "conftest" module would clash with this one's.
CONFTEST = f'''
import importlib.util

_spec = importlib.util.spec_from_file_location("course_conftest", {str(REPO_ROOT / "tests" / "conftest.py")!r})
_course = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_course)
pytest_runtest_makereport = _course.pytest_runtest_makereport
pytest_make_collect_report = _course.pytest_make_collect_report
'''


def run_session(folder: Path, *files: str, ci: str | None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    # -p no:nbmake and the folder's own pytest.ini keep the project's addopts (--nbmake) out.
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:nbmake", "-p", "no:cacheprovider", "-rA",
                           *files], cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False)


def summary(result: subprocess.CompletedProcess) -> dict[str, int]:
    last = result.stdout.strip().splitlines()[-1]
    return {word: int(count) for count, word in re.findall(r"(\d+) (\w+)", last)}


@pytest.fixture(scope="module")
def session_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ci-skips")
    (folder / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: needs a CUDA GPU\n")
    (folder / "conftest.py").write_text(CONFTEST)
    (folder / "test_tiny.py").write_text(TINY_TESTS)
    (folder / "test_module_skipped.py").write_text(MODULE_SKIPPED)
    return folder


def test_without_ci_skips_are_skips(session_folder):
    result = run_session(session_folder, "test_tiny.py", ci=None)
    assert result.returncode == 0, result.stdout[-3000:]
    assert summary(result) == {"passed": 1, "skipped": 4, "xfailed": 1}


def test_with_ci_every_skip_fails_with_its_reason_but_the_gpu_tier(session_folder):
    result = run_session(session_folder, "test_tiny.py", ci="true")
    assert result.returncode == 1, result.stdout[-3000:]
    # A skip in the test body fails; skipif's and a fixture's skips happen at set-up, so they fail as errors.
    # The gpu tier stays a skip, xfail an xfail.
    assert summary(result) == {"failed": 1, "passed": 1, "skipped": 1, "xfailed": 1, "errors": 2}
    for reason in ("ffmpeg is not installed", "openai-whisper is missing", "a fixture found nothing to use"):
        assert re.search(rf"skipped, and CI=true allows no skips except the gpu and hub tiers: .*{reason}", result.stdout)
    assert re.search(r"SKIPPED .*no CUDA GPU", result.stdout)
    assert "FAILED test_tiny.py::test_skips_inside" in result.stdout
    assert "ERROR test_tiny.py::test_skipif" in result.stdout
    assert "ERROR test_tiny.py::test_skipping_fixture" in result.stdout


def test_with_ci_a_module_skipped_at_import_stops_the_run(session_folder):
    result = run_session(session_folder, "test_module_skipped.py", ci="true")
    assert result.returncode != 0
    assert "a_module_nobody_installed" in result.stdout and "CI=true allows no skips" in result.stdout
    without_ci = run_session(session_folder, "test_module_skipped.py", ci=None)
    # Exit code 5: "no tests ran" (the module's one test was never collected), not a failure.
    assert without_ci.returncode == 5 and summary(without_ci) == {"skipped": 1}, without_ci.stdout[-3000:]
