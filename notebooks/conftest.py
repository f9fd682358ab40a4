"""pytest --nbmake runs every notebook here offline, in order, in one workspace for the whole session.

The kernel nbmake starts for a notebook inherits this process's environment, so while a notebook runs it
is set to: the offline ``smoke`` profile, no Hub access, and a temporary workspace shared by the seven
notebooks and the workshop (which keeps its short run in its own folder of it; removed at exit). Nothing
else: offline and without a token the notebooks go on by themselves. The other tests never see these.
Set ``COURSE_WORKSPACE`` yourself to keep the workspace, e.g. to run one notebook alone after its
predecessors: ``COURSE_WORKSPACE=/tmp/ws pytest notebooks/04_train.ipynb``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

from tests.support import NOTEBOOKS_RAN

_workspace: str | None = None
_saved: dict[str, str | None] = {}


def _notebook_environment() -> dict[str, str]:
    global _workspace
    if os.environ.get("COURSE_WORKSPACE"):  # the user's own, kept
        workspace = os.environ["COURSE_WORKSPACE"]
    else:
        if _workspace is None:
            _workspace = tempfile.mkdtemp(prefix="whisper-course-notebooks-")
            atexit.register(shutil.rmtree, _workspace, ignore_errors=True)
        workspace = _workspace
    return {
        "COURSE_WORKSPACE": workspace,
        "COURSE_PROFILE": os.environ.get("COURSE_PROFILE") or "smoke",
        "HF_HUB_OFFLINE": "1",
    }


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    for key, value in _notebook_environment().items():
        _saved.setdefault(key, os.environ.get(key))
        os.environ[key] = value


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Record each notebook that ran through, and where (``tests.support.NOTEBOOKS_RAN``)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.passed and item.path.suffix == ".ipynb":
        ran = item.config.stash.setdefault(NOTEBOOKS_RAN, {"workspace": os.environ["COURSE_WORKSPACE"], "passed": set(),
                                                        "profile": os.environ["COURSE_PROFILE"]})
        ran["passed"].add(item.path.name)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item):
    for key, value in _saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _saved.clear()
