"""pytest --nbmake runs every notebook here offline, in order, in one workspace for the whole session.

The kernels nbmake starts inherit this process's environment, so it is set before the first notebook:
the offline ``smoke`` profile, no Hub access, no login widget, and a temporary workspace shared by the
seven notebooks (removed at exit). Set ``COURSE_WORKSPACE`` yourself to keep it, e.g. to run one notebook
alone after its predecessors: ``COURSE_WORKSPACE=/tmp/ws pytest notebooks/04_train.ipynb``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("COURSE_PROFILE", "smoke")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("COURSE_NONINTERACTIVE", "1")
if not os.environ.get("COURSE_WORKSPACE"):
    _workspace = tempfile.mkdtemp(prefix="whisper-course-notebooks-")
    os.environ["COURSE_WORKSPACE"] = _workspace
    atexit.register(shutil.rmtree, _workspace, ignore_errors=True)
