"""constraints.txt: what it pins (everything the project installs, not torch's share) and that the suite runs
with exactly those versions (scripts/setup.sh installs with them; scripts/try_newest.sh is where they differ)."""

from __future__ import annotations

import importlib.metadata

import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from helpers.config import REPO_ROOT
from tools.constraints import CONSTRAINTS, closure, differences, pins, read


def test_the_suite_runs_with_the_pinned_versions():
    assert differences(read(), pins()) == [], "run scripts/setup.sh, or move the pins (docs/versions-and-releases.md)"


def test_the_file_says_how_it_was_made_and_how_to_move_it():
    lines = CONSTRAINTS.read_text(encoding="utf-8").splitlines()
    header = "\n".join(line for line in lines if line.startswith("#"))
    assert header.startswith("# The versions the test suite passed with")
    assert "python -m tools.constraints" in header and "scripts/try_newest.sh" in header
    assert all(line.startswith("#") for line in lines[: len(header.splitlines())])  # the header, then the pins


def test_the_pins_are_what_the_project_installs_and_not_torchs_share():
    pinned = read()
    for name in ("transformers", "datasets", "huggingface-hub", "peft", "ctranslate2", "accelerate", "requests",
                 "python-dotenv", "openai-whisper", "pytest", "nbmake"):
        assert name in pinned, name
    # The MDC's SDK is not installed: every release needs a newer requests than Colab pins (services/mdc_http.py).
    assert "datacollective" not in pinned
    assert not {"torch", "sympy", "networkx", "mpmath"} & set(pinned)  # Colab's torch brings its own
    assert "whisper-course-helpers" not in pinned
    # What torch needs that the project needs too stays pinned (filelock: datasets, huggingface_hub).
    assert "filelock" in closure(["torch"]) and "filelock" in pinned


def test_differences_name_each_changed_missing_or_new_package():
    assert differences({"Foo_Bar": "1.0", "gone": "2.0"}, {"foo-bar": "1.1", "new": "3.0"}) == [
        "foo-bar: pinned 1.0, installed 1.1", "gone: pinned 2.0, installed (not installed)",
        "new: pinned (not pinned), installed 3.0"]


def project() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def torch_floor(requirements: list[str], extra: str = "") -> Version:
    """The lowest torch release ``requirements`` accept (those whose marker holds for ``extra``)."""
    floors = [Version(s.version) for r in map(Requirement, requirements) if r.name == "torch"
              and (r.marker is None or r.marker.evaluate({"extra": extra})) for s in r.specifier if s.operator == ">="]
    assert floors, f"no torch>= floor in {requirements}"
    return max(floors)


def test_every_install_asks_for_a_torch_that_transformers_accepts():
    # transformers' own floor, from the installed release's metadata (5.24 and later disable torch below 2.6)
    needed = torch_floor(importlib.metadata.requires("transformers"), extra="torch")
    assert torch_floor(project()["dependencies"]) >= needed
    environment = yaml.safe_load((REPO_ROOT / "environment.yml").read_text(encoding="utf-8"))
    assert not any("pytorch" in str(d) or "cuda" in str(d) for d in environment["dependencies"]), \
        "torch from conda's pytorch channel stopped near 2.5: it comes from pip"
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert torch_floor([line for line in pip if line.startswith("torch")]) >= needed
    assert f"-c {CONSTRAINTS.name}" in pip and "-e .[dev]" in pip  # the tested versions, as scripts/setup.sh


def test_peft_and_ctranslate2_are_extras_installed_only_where_offered():
    dependencies = {canonicalize_name(Requirement(r).name) for r in project()["dependencies"]}
    extras = project()["optional-dependencies"]
    assert not {"peft", "ctranslate2"} & dependencies
    assert [Requirement(r).name for r in extras["lora"]] == ["peft"]
    assert [Requirement(r).name for r in extras["ct2"]] == ["ctranslate2"]
    assert "whisper-course-helpers[lora,ct2]" in extras["dev"]  # the suite tests them: they stay pinned
    assert {"peft", "ctranslate2"} <= set(read())
