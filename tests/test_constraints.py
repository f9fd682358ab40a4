"""constraints.txt: what it pins (everything the project installs, not torch's share) and that the suite runs
with exactly those versions (scripts/setup.sh installs with them; scripts/try_newest.sh is where they differ)."""

from __future__ import annotations

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
    for name in ("transformers", "datasets", "huggingface-hub", "peft", "datacollective", "ctranslate2", "accelerate",
                 "openai-whisper", "pytest", "nbmake"):
        assert name in pinned, name
    assert not {"torch", "sympy", "networkx", "mpmath"} & set(pinned)  # Colab's torch brings its own
    assert "whisper-course-helpers" not in pinned
    # What torch needs that the project needs too stays pinned (filelock: datasets, huggingface_hub).
    assert "filelock" in closure(["torch"]) and "filelock" in pinned


def test_differences_name_each_changed_missing_or_new_package():
    assert differences({"Foo_Bar": "1.0", "gone": "2.0"}, {"foo-bar": "1.1", "new": "3.0"}) == [
        "foo-bar: pinned 1.0, installed 1.1", "gone: pinned 2.0, installed (not installed)",
        "new: pinned (not pinned), installed 3.0"]
