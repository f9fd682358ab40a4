"""``python -m tools.release``: on a copy of this repository, a release bumps the version everywhere, rebuilds
the notebooks, commits and tags, and refuses or undoes what would publish broken notebooks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support import repository_copy

from tools.release import check_tag, git

FORK = "https://github.com/someone/whisper-course-fork"


def release(root, *args):
    env = {**os.environ, "PYTHONPATH": str(root)}  # the copy's own helpers, not this checkout's
    return subprocess.run([sys.executable, "-m", "tools.release", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    root = repository_copy(tmp_path_factory.mktemp("repo"))
    done = release(root, "0.9.0", "--repo-url", FORK)
    assert done.returncode == 0, done.stderr
    return root, done.stdout


def test_a_release_is_one_commit_and_a_tag_naming_the_version_everywhere(released):
    root, printed = released
    assert git("tag", "--list", "v0.9.0", root=root) == "v0.9.0"
    assert git("status", "--porcelain", root=root) == ""
    assert git("log", "-1", "--format=%s", "v0.9.0", root=root) == "Release v0.9.0"
    assert '__version__ = "0.9.0"' in git("show", "v0.9.0:helpers/__init__.py", root=root)
    notebook = git("show", "v0.9.0:notebooks/00_hub_login.ipynb", root=root)
    assert ("https://colab.research.google.com/github/someone/whisper-course-fork/blob/v0.9.0/notebooks/"
            "00_hub_login.ipynb") in notebook
    assert f'repo, release = \\"{FORK}\\", \\"v0.9.0\\"' in notebook
    assert "v0.1.0" not in notebook and "whisper-course/whisper-finetune-companion" not in notebook
    readme = git("show", "v0.9.0:README.md", root=root)  # its Colab links follow the release too
    assert "someone/whisper-course-fork/blob/v0.9.0/notebooks/00_hub_login.ipynb" in readme
    assert "/blob/v0.1.0/" not in readme
    # The package built from the tag carries the version (pyproject reads helpers/__init__.py).
    assert "git push origin main v0.9.0" in printed and FORK in printed
    assert check_tag("v0.9.0", root) == []


def test_a_tag_never_moves_and_a_dirty_tree_is_not_released(released):
    root, _ = released
    again = release(root, "0.9.0")
    assert again.returncode == 2 and "tag v0.9.0 exists already" in again.stderr
    (root / "notes.txt").write_text("work in progress")
    try:
        dirty = release(root, "0.9.1")
        assert dirty.returncode == 2 and "uncommitted changes" in dirty.stderr
        assert git("tag", "--list", "v0.9.1", root=root) == ""
    finally:
        (root / "notes.txt").unlink()


def test_the_check_finds_a_notebook_the_tag_lacks_and_links_to_another_tag(released):
    root, _ = released
    git("rm", "-q", "notebooks/05_evaluate.ipynb", root=root)
    git("commit", "-q", "-m", "lose a notebook", root=root)
    git("tag", "v0.9.0-broken", root=root)
    problems = check_tag("v0.9.0-broken", root)
    assert "notebooks/05_evaluate.ipynb is not in v0.9.0-broken" in problems
    assert any("links to notebooks/05_evaluate.ipynb at v0.9.0, not v0.9.0-broken" in p for p in problems)
    assert "v0.9.0-broken holds version 0.9.0, so its notebooks link to v0.9.0" in problems
