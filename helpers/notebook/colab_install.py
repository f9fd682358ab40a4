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
# torch and its family: a CUDA build made for the runtime, never moved, even where a pin of ours would need it.
TORCH_FAMILY = ("torch", "torchvision", "torchaudio")
RUNTIME_OWNED = ("numpy", "pandas", "matplotlib", "ipython", "ipykernel", "tornado", "requests", *TORCH_FAMILY)
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
    names.update(imported_distributions(modules))
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


def _released(output: str, owned: Mapping[str, str]) -> set[str]:
    """The runtime's packages that pip's account of a conflict names as held by our constraint on them."""
    held = re.findall(r"The user requested \(constraint\) ([A-Za-z0-9._-]+)==", output)
    return {canonical(name) for name in held} & set(owned)


def imported_distributions(modules: Iterable[str] | None = None) -> set[str]:
    """Canonical names of the distributions whose modules are imported (``sys.modules``): what a restart reloads.

    A namespace shared by several distributions (``google``: google-colab, protobuf, google-auth) counts only the
    ones whose own package under it is imported.
    """
    modules = set(sys.modules if modules is None else modules)
    top = {module.partition(".")[0] for module in modules}
    found = set()
    for module, names in metadata.packages_distributions().items():
        if module not in top:
            continue
        for name in names if len(names) == 1 else [n for n in names if _second_level(n) & modules]:
            found.add(canonical(name))
    return found


def _second_level(name: str) -> set[str]:
    """``{"google.protobuf", ...}``: the dotted names two levels deep of a distribution's Python files."""
    files = metadata.distribution(name).files or []
    return {".".join(f.parts[:2]).removesuffix(".py") for f in files if len(f.parts) >= 2 and f.suffix == ".py"}


class RestartNeeded(SetupError):
    """The course is installed, but it had to move a package this runtime had already loaded."""


def install(checkout: str | Path, extras: Iterable[str] = (), done_file: str | Path | None = None,
            constraints: str = "constraints.txt", start: float | None = None) -> dict[str, tuple[str, str]]:
    """``pip install -e checkout[extras]`` with :func:`runtime_constraints`; prints how long set-up took.

    The runtime's own packages are held at its versions. Where a pin of ours cannot live beside one of them (pip
    names the constraint in its conflict), that one package is released to our pin and pip tries again; torch and
    its family never are. Writes ``done_file`` once installed. Returns what moved, ``{name: (old, new)}`` (empty:
    nothing the runtime owns changed). Raises :class:`RestartNeeded` when a moved package was already imported
    (the kernel still runs the old copy), and :class:`SetupError` with pip's words when nothing installs.
    """
    start = time.time() if start is None else start
    checkout = Path(checkout)
    owned = runtime_owned()
    held = dict(owned)
    pinned = checkout / RUNTIME_CONSTRAINTS
    target = f"{checkout}[{','.join(extras)}]" if extras else str(checkout)
    print("Installing it with pip, at the versions it was tested with, beside the runtime's own packages "
          f"({', '.join(n for n in ('torch', 'numpy', 'pandas', 'matplotlib') if n in owned)}, ...)", "...", flush=True)
    for _ in range(len(owned) + 1):
        pinned.write_text(runtime_constraints((checkout / constraints).read_text(encoding="utf-8"), held),
                          encoding="utf-8")
        done = subprocess.run(f"pip install -c {pinned} -e '{target}'", shell=True, capture_output=True, text=True)
        output = done.stdout + done.stderr
        released = _released(output, held) if "ResolutionImpossible" in output else set()
        if not done.returncode or not released or released & set(TORCH_FAMILY):
            break
        for name in released:  # our pin of it wins; said below, with whether a restart is needed
            del held[name]
    if done.returncode:
        conflict = output[output.find("The conflict is caused by"):].split("To fix this")[0].strip()
        raise SetupError(f"Installing the course failed (exit {done.returncode}):\n"
                         + (conflict or done.stderr[-3000:]))
    moved = {name: (version, _version(name)) for name, version in owned.items() if _version(name) != version}
    if done_file is not None:
        Path(done_file).touch()
    loaded = sorted(set(moved) & imported_distributions())
    kept = "" if not moved else f" It moved {_listed(moved, sorted(moved))} to the course's tested versions."
    print(f"Set-up took {time.time() - start:.0f} s.{kept}", "" if loaded else "No restart needed.")
    if loaded:
        raise RestartNeeded(f"This runtime had already loaded {', '.join(loaded)}, which the course's tested versions "
                            "needed to move: Runtime > Restart session, then run this notebook again from the top "
                            "(the install is not repeated).")
    return moved


def _listed(moved: Mapping[str, tuple[str, str]], names: Iterable[str]) -> str:
    return ", ".join(f"{name} {moved[name][0]} -> {moved[name][1]}" for name in names)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
