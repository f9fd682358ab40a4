"""Make a release of the course: the version everywhere, the notebooks regenerated, a commit and a tag, checked.

    python -m tools.release 0.2.0                       # release v0.2.0 of this repository
    python -m tools.release 0.2.0 --repo-url https://github.com/<owner>/<name>   # a fork, under its own name
    python -m tools.release --check v0.2.0              # only check an existing tag

It writes the version in ``helpers/__init__.py`` (the one place: pyproject.toml and ``helpers.notebook.course.RELEASE``
read it) and, with ``--repo-url``, where the course is published (``helpers.notebook.course.REPO_URL``); rebuilds
every notebook with ``tools/sync_notebooks.py``, so that their badges, links and set-up cells name the new
tag, and points the Markdown pages' links to the old release (README, docs/) at the new one; commits that,
tags it ``v<version>`` and checks that the tag holds every file the notebooks link to and what their set-up
cell installs. Nothing is pushed: it prints what to publish
(docs/versions-and-releases.md).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
VERSION_FILE = "helpers/__init__.py"
COURSE_FILE = "helpers/notebook/course.py"
_VERSION = re.compile(r'^__version__ = "(?P<version>[^"]+)"$', re.M)
_REPO_URL = re.compile(r'^REPO_URL = "(?P<url>[^"]+)"$', re.M)
_GITHUB = re.compile(r"^https://github\.com/[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+([ab]\d+|rc\d+)?$")


class ReleaseError(Exception):
    """A release that cannot be made as asked; the message says why and what to do."""


def git(*args: str, root: Path = REPO_ROOT) -> str:
    """Run git in ``root``; its output, stripped. A failure raises ``ReleaseError`` with git's own words."""
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if done.returncode:
        raise ReleaseError(f"git {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def _course_at(root: Path, tag: str) -> tuple[str, str]:
    """``(REPO_URL, version)`` as the commit ``tag`` of ``root`` has them."""
    version = _VERSION.search(git("show", f"{tag}:{VERSION_FILE}", root=root)).group("version")
    url = _REPO_URL.search(git("show", f"{tag}:{COURSE_FILE}", root=root)).group("url")
    return url, version


def check_tag(tag: str, root: Path = REPO_ROOT) -> list[str]:
    """What is wrong with the release ``tag`` of ``root``: each notebook it links to and each file its set-up
    cells install must be in the tag, every link must name this tag, and the tag must be the version."""
    from helpers.notebook.course import CONSTRAINTS, NOTEBOOK_FOLDER, NOTEBOOKS, WORKSHOP

    url, version = _course_at(root, tag)
    problems = [] if tag == f"v{version}" else [f"{tag} holds version {version}, so its notebooks link to v{version}"]
    files = set(git("ls-tree", "-r", "--name-only", tag, root=root).splitlines())
    owner_name = url.removeprefix("https://github.com/")
    colab = re.compile(rf"https://colab\.research\.google\.com/github/{re.escape(owner_name)}"
                       r"/blob/([^/]+)/([^)\s\"'\\]+)")
    blob = re.compile(rf"{re.escape(url)}/blob/([^/]+)/([^)\s\"'#\\]+)")
    for notebook in (*NOTEBOOKS, WORKSHOP):
        path = f"{NOTEBOOK_FOLDER}/{notebook}"
        if path not in files:
            problems.append(f"{path} is not in {tag}")
            continue
        text = git("show", f"{tag}:{path}", root=root)
        links = colab.findall(text) + blob.findall(text)
        if not colab.search(text):
            problems.append(f"{path} has no Open-in-Colab badge for {owner_name}")
        for ref, target in links:
            if ref != tag:
                problems.append(f"{path} links to {target} at {ref}, not {tag}")
            elif target not in files:
                problems.append(f"{path} links to {target}, which is not in {tag}")
        if f'repo, release = "{url}", "{tag}"' not in text.replace('\\"', '"'):
            problems.append(f"{path}'s set-up cell does not install {url} at {tag}")
    for needed in ("pyproject.toml", CONSTRAINTS):
        if needed not in files:
            problems.append(f"{needed} is not in {tag}: the set-up cell installs with it")
    return problems


def _relink_markdown(root: Path, old_url: str, old_tag: str, new_url: str, new_tag: str) -> None:
    """Point the links of the Markdown pages (README, docs/) at the new release, and the new repository."""
    old_path, new_path = (url.removeprefix("https://github.com/") for url in (old_url, new_url))
    for name in git("ls-files", "*.md", root=root).splitlines():
        path = root / name
        text = path.read_text(encoding="utf-8")
        changed = text.replace(f"{old_path}/blob/{old_tag}/", f"{new_path}/blob/{new_tag}/").replace(old_url, new_url)
        if changed != text:
            path.write_text(changed, encoding="utf-8")


def release(version: str, repo_url: str | None = None, root: Path = REPO_ROOT) -> str:
    """Write ``version`` (and ``repo_url``), regenerate the notebooks, commit, tag and check; the tag's name."""
    if not _SEMVER.match(version):
        raise ReleaseError(f"{version!r} is not a version like 0.2.0")
    if not (repo_url is None or _GITHUB.match(repo_url)):
        raise ReleaseError(f"{repo_url!r} is not a GitHub repository URL like https://github.com/owner/name "
                           "(Colab opens notebooks from GitHub)")
    tag = f"v{version}"
    if git("status", "--porcelain", root=root):
        raise ReleaseError("the working tree has uncommitted changes: commit or stash them, so the tag holds what "
                           "was tested")
    if git("tag", "--list", tag, root=root):
        raise ReleaseError(f"tag {tag} exists already: a published release never moves; choose the next version")
    old_url, old_version = _course_at(root, "HEAD")
    version_file, course_file = root / VERSION_FILE, root / COURSE_FILE
    version_file.write_text(_VERSION.sub(f'__version__ = "{version}"', version_file.read_text(encoding="utf-8")),
                            encoding="utf-8")
    if repo_url:
        course_file.write_text(_REPO_URL.sub(f'REPO_URL = "{repo_url}"', course_file.read_text(encoding="utf-8")),
                               encoding="utf-8")
    # A fresh interpreter, so that the notebooks are built with the version and URL just written.
    built = subprocess.run([sys.executable, "tools/sync_notebooks.py"], cwd=root, capture_output=True, text=True)
    if built.returncode:
        raise ReleaseError(f"tools/sync_notebooks.py failed:\n{built.stderr[-2000:]}")
    _relink_markdown(root, old_url, f"v{old_version}", repo_url or old_url, tag)
    git("add", "-u", root=root)
    if git("status", "--porcelain", root=root):
        git("commit", "-q", "-m", f"Release {tag}", root=root)
    git("tag", "-a", tag, "-m", f"Release {tag} of the course", root=root)
    problems = check_tag(tag, root)
    if problems:
        git("tag", "-d", tag, root=root)
        raise ReleaseError(f"tag {tag} removed again; it would have published broken notebooks:\n- "
                           + "\n- ".join(problems))
    return tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version", nargs="?", help="the new version, e.g. 0.2.0 (the tag is v0.2.0)")
    parser.add_argument("--repo-url", help="publish under this GitHub repository (a fork), in helpers/notebook/course.py")
    parser.add_argument("--check", metavar="TAG", help="only check an existing tag")
    args = parser.parse_args(argv)
    if bool(args.version) == bool(args.check):
        parser.error("give a version to release, or --check TAG")
    try:
        if args.check:
            problems = check_tag(args.check)
            print("\n".join(f"- {p}" for p in problems) or f"{args.check} holds every notebook it links to.")
            return 1 if problems else 0
        tag = release(args.version, args.repo_url)
    except ReleaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    url, _ = _course_at(REPO_ROOT, tag)
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    print(f"Made {tag}: committed and tagged; every notebook it links to is in it.\n"
          f"To publish it at {url}:\n"
          f"  git push origin {branch} {tag}\n"
          f"then, on GitHub, create a release from the tag {tag}. The notebooks' badges open {url} at {tag}, and "
          "their set-up cells install it, only once the tag is pushed.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
