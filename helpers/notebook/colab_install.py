"""What the set-up cell runs in Colab once the course is fetched: install it beside the runtime's own packages.

Colab's runtime owns some packages: it has numpy, pandas, matplotlib, IPython, ipykernel and tornado imported
before the first cell runs, its ``google-colab`` package pins pandas, requests, IPython and others, and its
torch is a CUDA build made for that runtime. A set-up cell that moves any of them leaves the kernel running the
old copy over the new files, and Colab asks for a restart. So the course installs with constraints of its own
making: ``constraints.txt`` (the versions the test suite passed with) for everything else, and, for each package
the runtime owns, the version the runtime has, ``==``. pip then installs what the runtime lacks or what must
differ (transformers 5, datasets, ...) and can never move a package the runtime owns; when a pin of ours cannot
live with the runtime's versions, it stops with a sentence saying so instead of replacing them.

This module runs before the course is installed (the cell imports it from the fetched folder): the standard
library only.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

# Imported or pinned by Colab before the first cell, or built for its runtime (torch and its family), even where
# a given runtime has not imported them yet: google-colab's own requirements and whatever is imported add to these.
RUNTIME_OWNED = ("numpy", "pandas", "matplotlib", "ipython", "ipykernel", "tornado", "requests",
                 "torch", "torchvision", "torchaudio")
COLAB_PACKAGE = "google-colab"
PROJECT = "whisper-course-helpers"
# Written into the fetched folder: the constraints pip installs with here.
RUNTIME_CONSTRAINTS = "constraints-runtime.txt"


class SetupError(RuntimeError):
    """The install cannot be done without moving a package the runtime owns, or pip failed: says which."""


def canonical(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503): ``Jupyter_Client`` -> ``jupyter-client``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str | None:
    """The name of an installed package's requirement, or ``None`` for one that only an extra asks for."""
    if re.search(r"""extra\s*==""", requirement.partition(";")[2]):
        return None
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return found.group(1) if found else None


def runtime_owned(modules: Iterable[str] | None = None) -> dict[str, str]:
    """``{name: installed version}`` of the packages this runtime owns, by canonical name.

    They are :data:`RUNTIME_OWNED`, ``google-colab`` and what it requires, and the distribution of every module already
    imported (``modules``, default ``sys.modules``): Colab asks for a restart when a pip install changes one of
    those. Packages not installed here are left out; this course's own package never counts.
    """
    names = {*RUNTIME_OWNED, COLAB_PACKAGE}
    try:
        names.update(n for n in map(_requirement_name, metadata.requires(COLAB_PACKAGE) or []) if n)
    except metadata.PackageNotFoundError:
        pass
    imported = {module.partition(".")[0] for module in (sys.modules if modules is None else modules)}
    for module, distributions in metadata.packages_distributions().items():
        if module in imported:
            names.update(distributions)
    owned = {}
    for name in names:
        try:
            owned[canonical(name)] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    owned.pop(PROJECT, None)
    return owned


def runtime_constraints(ours: str, owned: Mapping[str, str]) -> str:
    """The constraints to install with: ``ours`` (a constraints file's text) for what the runtime does not own,
    and ``name==version`` of the runtime for what it does."""
    lines = ["# The course's constraints.txt, with the runtime's own packages at the runtime's versions."]
    for line in ours.splitlines():
        name = _requirement_name(line.partition("#")[0])
        if name and canonical(name) not in owned:
            lines.append(line.strip())
    lines += [f"{name}=={version}" for name, version in sorted(owned.items())]
    return "\n".join(lines) + "\n"


def _conflict(stderr: str) -> str:
    """pip's own account of a conflict, without its generic advice."""
    keep = [line.strip() for line in stderr.splitlines()
            if re.search(r"requires|depends on|conflict|constraint|Cannot install|The user requested", line)
            and "pip.pypa.io" not in line]
    return "\n".join(dict.fromkeys(keep)) or stderr[-3000:]


def install(checkout: str | Path, extras: Iterable[str] = (), constraints: str = "constraints.txt",
            start: float | None = None) -> dict[str, str]:
    """``pip install -e checkout[extras]`` with :func:`runtime_constraints`; prints how long set-up took.

    Returns the runtime's own packages, as they were and still are. Raises :class:`SetupError` with pip's
    words when our pins cannot live with the runtime's versions, or if a package the runtime owns changed
    anyway (then the runtime needs a restart, and the message says so).
    """
    start = time.time() if start is None else start
    checkout = Path(checkout)
    owned = runtime_owned()
    pinned = checkout / RUNTIME_CONSTRAINTS
    pinned.write_text(runtime_constraints((checkout / constraints).read_text(encoding="utf-8"), owned),
                      encoding="utf-8")
    target = f"{checkout}[{','.join(extras)}]" if extras else str(checkout)
    print("Installing it with pip, at the versions it was tested with; the runtime's own packages "
          f"({', '.join(n for n in ('torch', 'numpy', 'pandas', 'matplotlib') if n in owned)}, ...) stay as they are",
          "...", flush=True)
    done = subprocess.run(f"pip install -q -c {pinned} -e '{target}'", shell=True, capture_output=True, text=True)
    if done.returncode:
        if "ResolutionImpossible" in done.stderr:
            raise SetupError("The course's tested versions cannot be installed beside this runtime's own packages, "
                             "which the set-up keeps so that no restart is needed. Open an issue with this message; "
                             "meanwhile the notebook from an earlier release may install. pip says:\n"
                             + _conflict(done.stderr))
        raise SetupError(f"Installing the course failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    moved = {name: (version, _version(name)) for name, version in owned.items() if _version(name) != version}
    if moved:  # cannot happen with the constraints above; said plainly if pip ever does it anyway
        raise SetupError("The install changed the runtime's own " + ", ".join(
            f"{name} {old} -> {new}" for name, (old, new) in sorted(moved.items()))
            + ": Runtime > Restart session, then run this cell again.")
    print(f"Set-up took {time.time() - start:.0f} s; no restart needed.")
    return owned


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
