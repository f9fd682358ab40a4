"""The committed notebooks: built from their sources, clean, token-free, one set-up cell from one template,
links into this repository's pinned release, GPU only where needed, and the course's code on screen equal
to what the helpers run.

(Running them is nbmake's job: ``pytest`` executes ``notebooks/*.ipynb`` after these tests.)
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import types

import jupytext
import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import helpers
from helpers.config import REPO_ROOT, describe, get_config
from helpers.notebook.colab_install import RUNTIME_CONSTRAINTS, install
from helpers.notebook.course import (
    BLOG_POST,
    COLAB_CHECKOUT,
    COLLATOR_ISSUE,
    CONSTRAINTS,
    COURSE_UNIT,
    EXTRAS,
    NOTEBOOK_DOCS,
    NOTEBOOKS,
    RELEASE,
    REPO_URL,
    TROUBLESHOOTING_URL,
    WORKSHOP,
    colab_badge,
    colab_url,
    setup_cell,
)
from helpers.runtime.workspace import ARTIFACTS
from tools import sync_notebooks
from tools.constraints import read as read_constraints

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
ALL = (*NOTEBOOKS, WORKSHOP)
GPU_NOTEBOOKS = {"04_train.ipynb", "05_evaluate.ipynb", WORKSHOP}
TOKEN = re.compile(r"hf_[A-Za-z0-9]{20,}")
LINK = re.compile(r"https://colab\.research\.google\.com/github/[^)\s\"']+")
GITHUB = re.compile(r"https://github\.com/[^)\s\"'#\\]+")


def notebook_problems(text: str) -> list[str]:
    """What keeps a notebook file from being committed: outputs, execution counts, widget state, tokens."""
    problems = [f"token-like string {m.group()[:6]}..." for m in TOKEN.finditer(text)]
    notebook = nbformat.reads(text, as_version=4)
    if "widgets" in notebook.metadata:
        problems.append("saved widget state")
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {index} has outputs")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {index} has an execution count")
    return problems


def load(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def code_cells(notebook: nbformat.NotebookNode) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def loaded_name(cell: nbformat.NotebookNode) -> str | None:
    """NAME, when ``cell`` is a notebook's editable copy of the course's code (``# %load -s NAME FILE``)."""
    match = re.match(r"# %load -s (\w+) (helpers/\w+\.py)\n", cell.source)
    return match.group(1) if match else None


def tagged(name: str, tag: str) -> str:
    """The source of the one cell tagged ``tag`` in notebook ``name``'s jupytext source."""
    cells = [c for c in sync_notebooks.read_source(name).cells if tag in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{name}: {len(cells)} cells tagged {tag}"
    return cells[0].source


def test_the_seven_stages_and_the_workshop_are_there_each_with_its_source():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(ALL)
    assert len(NOTEBOOKS) == 7
    assert sorted(p.stem for p in (NOTEBOOK_DIR / "src").glob("*.py")) == [n.removesuffix(".ipynb") for n in NOTEBOOKS]


@pytest.mark.parametrize("name", ALL)
def test_committed_notebook_is_clean(name):
    assert notebook_problems((NOTEBOOK_DIR / name).read_text(encoding="utf-8")) == []


def test_the_cleanliness_check_catches_what_it_must():
    dirty = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print('hi')")
    cell.execution_count = 3
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hf_" + "a1B2" * 6)]
    dirty.cells.append(cell)
    problems = notebook_problems(nbformat.writes(dirty))
    assert len(problems) == 3 and problems[0].startswith("token-like string hf_")


def test_no_token_anywhere_in_the_notebooks_or_their_sources():
    paths = [*NOTEBOOK_DIR.glob("*.ipynb"), *(NOTEBOOK_DIR / "src").glob("*.py"),
             REPO_ROOT / "tools" / "sync_notebooks.py"]
    for path in paths:
        assert not TOKEN.search(path.read_text(encoding="utf-8")), path


def test_nbstripout_would_change_nothing():
    # The pre-commit hook (nbstripout) and the sync script agree, so neither rewrites the other's output.
    notebooks = sorted(map(str, NOTEBOOK_DIR.glob("*.ipynb")))
    result = subprocess.run([sys.executable, "-m", "nbstripout", "--verify", *notebooks],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    config = (REPO_ROOT / ".pre-commit-config.yaml").read_text()
    assert "kynan/nbstripout" in config and "id: nbstripout" in config
    assert "tools/sync_notebooks.py --check" in config


@pytest.mark.parametrize("name", ALL)
def test_notebook_is_what_its_source_builds(name):
    # Badges, the set-up cell and the links come from helpers.notebook.course; a hand edit here would drift from them.
    assert (NOTEBOOK_DIR / name).read_text(encoding="utf-8") == sync_notebooks.render(name), (
        "edit notebooks/src/ and run python tools/sync_notebooks.py instead of editing the notebook")


def test_a_notebook_edited_by_hand_or_a_source_edited_alone_is_caught(tmp_path, monkeypatch):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOK_DIR, notebooks, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(sync_notebooks, "NOTEBOOK_DIR", notebooks)
    monkeypatch.setattr(sync_notebooks, "SOURCE_DIR", notebooks / "src")
    assert sync_notebooks.main(["--check"]) == 0
    edited = notebooks / "03_collate.ipynb"
    edited.write_text(edited.read_text(encoding="utf-8").replace("One batch of four", "One batch of five"))
    assert sync_notebooks.main(["--check"]) == 1
    assert sync_notebooks.main([]) == 0 and sync_notebooks.main(["--check"]) == 0  # rebuilt from the source
    source = notebooks / "src" / "05_evaluate.py"
    source.write_text(source.read_text(encoding="utf-8").replace("## The worst examples", "## The worst clips"))
    assert sync_notebooks.main(["--check"]) == 1


def test_a_source_whose_setup_cell_differs_from_the_template_is_refused(tmp_path, monkeypatch):
    shutil.copytree(NOTEBOOK_DIR / "src", tmp_path / "src")
    monkeypatch.setattr(sync_notebooks, "SOURCE_DIR", tmp_path / "src")
    source = tmp_path / "src" / "02_preprocess.py"
    text = source.read_text(encoding="utf-8")
    source.write_text(text.replace("config = setup()", "config = setup()\n!pip install something"))
    with pytest.raises(ValueError, match="set-up cell"):
        sync_notebooks.build("02_preprocess.ipynb")
    source.write_text(text.replace('# %% tags=["setup"]', "# %%"))
    with pytest.raises(ValueError, match="exactly one cell tagged setup"):
        sync_notebooks.build("02_preprocess.ipynb")


@pytest.mark.parametrize("name", ALL)
def test_the_one_setup_cell_is_the_template_and_comes_first(name):
    notebook = load(name)
    cells = code_cells(notebook)
    setup = [cell for cell in notebook.cells if "setup" in cell.metadata.get("tags", [])]
    assert len(setup) == 1 and [c for c in cells if "config = setup(" in c] == [setup[0].source]
    if name == WORKSHOP:
        assert cells[:2] == [cells[0], setup_cell(sync_notebooks.WORKSHOP_SETUP, ("lora", "ct2"))]
        assert cells[0].startswith("SHORT_RUN = True") and "\nDATA = None" in cells[0]
    else:
        args = "needs_gpu=True" if name in GPU_NOTEBOOKS else ""
        assert cells[0] == setup_cell(args, EXTRAS.get(name, ()))


# Colab's own torch (a CUDA build, with torchvision and torchaudio built for it): the set-up cell must leave
# it in place. This is the release on Colab's runtime when these notebooks were written; a requirement it
# does not satisfy would make pip download another torch, a CPU/CUDA mismatch waiting to happen.
COLAB_TORCH = Version("2.8.0+cu126")
TORCH_FAMILY = {"torch", "torchvision", "torchaudio"}
# pip options that reinstall or upgrade what is already there, torch included.
REINSTALLING = {"-U", "--upgrade", "--force-reinstall", "-I", "--ignore-installed", "--upgrade-strategy"}
# Runs a notebook's code cells up to its set-up cell in a fresh Python, inside Colab (a stand-in
# google.colab module) or not; subprocess.run records the set-up's commands instead of running them.
SETUP_RUNNER = r"""
import importlib.machinery, json, subprocess, sys, types
source_file, colab, report = sys.argv[1:4]
install, found, rest = open(source_file, encoding="utf-8").read().partition("from helpers.notebook.session import setup")
if colab == "1":
    sys.modules["google.colab"] = types.ModuleType("google.colab")  # with a spec, as libraries look it up
    sys.modules["google.colab"].__spec__ = importlib.machinery.ModuleSpec("google.colab", None)
calls, real_run = [], subprocess.run
subprocess.run = lambda command, *a, **k: calls.append(command) or subprocess.CompletedProcess(command, 0, "", "")
namespace = {"__name__": "__main__"}
exec(compile(install, "<set-up cell>", "exec"), namespace)
subprocess.run = real_run
json.dump(calls, open(report, "w"))
exec(compile(found + rest, "<set-up cell>", "exec"), namespace)
"""


def pip_installs(command: str) -> list[list[str]]:
    """The arguments of each ``pip install`` in a shell command line (``&&``, ``||`` and ``;`` split it)."""
    installs = []
    for part in re.split(r"&&|\|\||;", command):
        argv = shlex.split(part)
        if argv[:2] in (["pip", "install"], ["pip3", "install"]):
            installs.append(argv[2:])
        elif argv[1:4] == ["-m", "pip", "install"]:
            installs.append(argv[4:])
    return installs


def torch_problems(commands: list[str], editable: dict[str, list[str]], follow: bool = True,
                   constraints: dict[str, dict[str, str]] | None = None) -> list[str]:
    """Why these commands could replace Colab's torch: a reinstalling option, a torch-family package named or
    pinned, or (with ``follow``) a requirement anywhere in what pip would install that :data:`COLAB_TORCH`
    does not meet.

    ``editable`` maps a folder installed with ``-e`` to its requirements, ``constraints`` a constraints file's
    path to its pins; dependencies are read from this environment's installed packages, the same versions pip
    would find satisfied.
    """
    constraints = constraints or {}
    problems = []
    for command in commands:
        for args in pip_installs(command):
            requirements, words = [], iter(args)
            for word in words:
                if word.split("=")[0] in REINSTALLING:
                    problems.append(f"{word} reinstalls what is there: {command}")
                elif word in ("-e", "--editable"):
                    folder, _, extras = next(words).partition("[")
                    if folder not in editable:
                        problems.append(f"unknown folder installed: {folder}")
                    requirements += editable.get(folder, [])
                    requirements += [r for e in extras.rstrip("]").split(",") if e for r in project_extra(e)]
                elif word in ("-c", "--constraint"):  # a constraint on torch, unless to the torch there, replaces it
                    pinned = constraints.get(next(words), {})
                    problems += [f"{word} pins {name}=={pinned[name]}" for name in TORCH_FAMILY & set(pinned)
                                 if pinned[name] != installed_version(name)]
                elif word in ("-r", "--requirement"):
                    problems.append(f"a requirements file this test does not read: {next(words)}")
                elif not word.startswith("-"):
                    requirements.append(word)
                    if canonicalize_name(Requirement(word).name) in TORCH_FAMILY:
                        problems.append(f"installs {word} itself: {command}")
            pending = [(Requirement(r), "the command") for r in requirements]
            seen = set()
            while follow and "--no-deps" not in args and pending:
                requirement, wanted_by = pending.pop()
                name = canonicalize_name(requirement.name)
                if requirement.marker and not any(requirement.marker.evaluate({"extra": extra})
                                                  for extra in {"", *requirement.extras}):
                    continue
                if name == "torch" and not requirement.specifier.contains(COLAB_TORCH, prereleases=True):
                    problems.append(f"{wanted_by} requires {requirement}, which Colab's torch {COLAB_TORCH} is not")
                elif name in TORCH_FAMILY - {"torch"}:
                    problems.append(f"{wanted_by} requires {requirement}, built for one torch release")
                if name in seen or name in TORCH_FAMILY:
                    continue
                seen.add(name)
                try:
                    dependencies = importlib.metadata.distribution(requirement.name).requires or []
                except importlib.metadata.PackageNotFoundError:
                    problems.append(f"cannot check what {requirement.name} needs: it is not installed here")
                    continue
                pending += [(Requirement(r), requirement.name) for r in dependencies]
    return problems


# The constraints file the set-up cell installs with, as its path in Colab.
OUR_CONSTRAINTS = {f"{COLAB_CHECKOUT}/{CONSTRAINTS}": read_constraints(REPO_ROOT / CONSTRAINTS)}


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def project_extra(extra: str) -> list[str]:
    """The requirements of one of pyproject.toml's optional dependencies (``lora``, ``ct2``)."""
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"][extra]


def project_requirements() -> list[str]:
    """The dependencies ``pip install -e`` of this repository asks for, from pyproject.toml."""
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]


@pytest.fixture(scope="module")
def run_setup(tmp_path_factory):
    """``run_setup(name, colab)``: the commands the set-up cell would run, what it prints, and the constraints
    files it wrote, by their path in Colab (cached)."""
    done: dict[tuple[str, bool], tuple[list[str], str, dict[str, dict[str, str]]]] = {}

    def run(name: str, colab: bool) -> tuple[list[str], str, dict[str, dict[str, str]]]:
        cells = code_cells(load(name))
        last = next(i for i, source in enumerate(cells) if "config = setup(" in source)
        source = "\n".join(cells[: last + 1])
        if (source, colab) not in done:
            tmp = tmp_path_factory.mktemp("setup")
            (tmp / "checkout").mkdir()
            shutil.copy(REPO_ROOT / CONSTRAINTS, tmp / "checkout" / CONSTRAINTS)  # what the fetch brings
            (tmp / "cell.py").write_text(source.replace(COLAB_CHECKOUT, str(tmp / "checkout")), encoding="utf-8")
            env = {**os.environ, "COURSE_PROFILE": "smoke", "COURSE_WORKSPACE": str(tmp / "workspace"),
                   "HF_HUB_OFFLINE": "1", "COURSE_NONINTERACTIVE": "1", "OMP_NUM_THREADS": "1"}
            result = subprocess.run([sys.executable, "-c", SETUP_RUNNER, str(tmp / "cell.py"), str(int(colab)),
                                     str(tmp / "calls.json")], cwd=NOTEBOOK_DIR, env=env, capture_output=True,
                                    text=True, timeout=600)
            assert result.returncode == 0, result.stderr[-3000:]
            calls = json.loads((tmp / "calls.json").read_text())
            calls = [call.replace(str(tmp / "checkout"), COLAB_CHECKOUT) for call in calls]
            written = tmp / "checkout" / RUNTIME_CONSTRAINTS  # the constraints the install was given
            constraints = {f"{COLAB_CHECKOUT}/{RUNTIME_CONSTRAINTS}": read_constraints(written)} if colab else {}
            done[source, colab] = calls, result.stdout, constraints
        return done[source, colab]

    return run


@pytest.mark.parametrize("name", ALL)
def test_setup_cell_installs_only_in_colab_and_never_replaces_colabs_torch(name, run_setup):
    assert run_setup(name, colab=False)[0] == []  # outside Colab it installs nothing
    commands, printed, constraints = run_setup(name, colab=True)
    assert any(pip_installs(c) for c in commands) and any(REPO_URL in c for c in commands)
    assert torch_problems(commands, {COLAB_CHECKOUT: project_requirements()}, constraints=constraints) == []
    # what the runtime owns is pinned at the runtime's version, the rest at the tested one
    pinned = next(iter(constraints.values()))
    assert pinned["torch"] == installed_version("torch") and pinned["numpy"] == installed_version("numpy")
    ours = read_constraints(REPO_ROOT / CONSTRAINTS)
    assert pinned["transformers"] == ours["transformers"] and pinned["datasets"] == ours["datasets"]
    assert "Set-up took" in printed and "No restart needed." in printed
    assert [a[-1] for c in commands for a in pip_installs(c)] == [COLAB_CHECKOUT + "".join(
        f"[{','.join(EXTRAS[name])}]" for _ in [0] if name in EXTRAS)]  # the extras this notebook offers
    for source in code_cells(load(name)):  # any other install (gradio in 06) is Colab-only, and leaves torch
        for line in source.splitlines():
            if "pip install" in line and "config = setup(" not in source:
                assert line.startswith("    "), line
                assert torch_problems([line.strip().lstrip("!")], {}, follow=False) == [], line


def test_the_torch_check_catches_what_it_must(monkeypatch):
    ours = {COLAB_CHECKOUT: project_requirements()}
    setup = f"pip install -q -e {COLAB_CHECKOUT} && pip install -q --no-deps openai-whisper"
    assert torch_problems([setup], ours) == []
    pinned = f"pip install -q -c {COLAB_CHECKOUT}/constraints.txt -e {COLAB_CHECKOUT}"
    assert torch_problems([pinned], ours, constraints=OUR_CONSTRAINTS) == []
    with_torch = {f"{COLAB_CHECKOUT}/constraints.txt": {**OUR_CONSTRAINTS[f"{COLAB_CHECKOUT}/constraints.txt"],
                                                         "torch": "2.13.0"}}
    assert "-c pins torch==2.13.0" in torch_problems([pinned], ours, constraints=with_torch)
    for command, reason in {
        f"pip install -q -U -e {COLAB_CHECKOUT}": "-U reinstalls",
        f"pip install --force-reinstall -e {COLAB_CHECKOUT}": "--force-reinstall reinstalls",
        "pip install -q torch": "installs torch itself",
        "python -m pip install torchaudio==2.9.0": "installs torchaudio==2.9.0 itself",
    }.items():
        assert any(reason in problem for problem in torch_problems([command], ours)), command
    # The project asking for a newer torch than Colab's ...
    newer = {COLAB_CHECKOUT: ["torch>=2.99" if r.startswith("torch") else r for r in ours[COLAB_CHECKOUT]]}
    assert "the command requires torch>=2.99, which Colab's torch 2.8.0+cu126 is not" in torch_problems([setup], newer)
    # ... or a dependency doing so, read from its installed metadata (accelerate needs torch>=2.0).
    monkeypatch.setitem(globals(), "COLAB_TORCH", Version("1.13.1+cu117"))
    assert any(problem.startswith("accelerate requires torch") for problem in torch_problems([setup], ours))


@pytest.mark.parametrize("name", ALL)
def test_setup_cell_prints_the_profile(name, run_setup, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    profile_line = describe(get_config()).splitlines()[0]  # "Profile 'smoke' (COURSE_PROFILE=smoke is set): ..."
    assert profile_line.startswith("Profile 'smoke' (COURSE_PROFILE=smoke is set)")
    for colab in (False, True):
        printed = run_setup(name, colab)[1].splitlines()
        assert profile_line in printed, printed
        assert any(line.startswith("Recipe '") for line in printed), printed


def test_the_setup_cell_installs_the_pinned_release_and_says_how_long_it_took():
    cell = setup_cell()
    assert f'"{RELEASE}"' in cell and "fetch -q --depth 1 {repo} {release}" in cell
    assert "main" not in cell.replace("google.colab", "")  # never whatever main is today
    assert 'print(f"Fetching {repo} at {release} ...", flush=True)' in cell
    assert "install(checkout, extras, installed, start=start)" in cell  # says how long set-up took, from the fetch on
    assert RELEASE == f"v{helpers.__version__}"  # tools/release.py tags the commit that carries this version
    assert 'version = { attr = "helpers.__version__" }' in (REPO_ROOT / "pyproject.toml").read_text()
    assert inspect.signature(install).parameters["constraints"].default == CONSTRAINTS  # the tested versions


def test_the_setup_cell_fails_loudly_when_the_release_cannot_be_fetched(tmp_path, monkeypatch, capsys):
    """The install part of the cell, run as in Colab, against a repository that does not exist."""
    install = setup_cell().split("from helpers.notebook.session import setup")[0]
    install = install.replace(REPO_URL, (tmp_path / "no-such-repo").as_uri())
    install = install.replace(COLAB_CHECKOUT, str(tmp_path / "c"))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(RuntimeError, match=r"Fetching .* failed \(exit \d+\):\n.*no-such-repo"):
        exec(compile(install, "<set-up cell>", "exec"), {})
    assert "Fetching" in capsys.readouterr().out
    assert not (tmp_path / "c" / f".installed-{RELEASE}").exists()  # a later run of the cell tries again


@pytest.mark.parametrize("name", ALL)
def test_only_the_gpu_stages_ask_colab_for_a_gpu(name):
    metadata = load(name).metadata
    assert (metadata.get("accelerator") == "GPU") == (name in GPU_NOTEBOOKS)
    assert (metadata["colab"].get("gpuType") == "T4") == (name in GPU_NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_header_has_the_badge_title_purpose_inputs_time_and_course_links(name):
    first = load(name).cells[0]
    assert first.cell_type == "markdown"
    lines = first.source.splitlines()
    assert lines[0] == colab_badge(name)
    assert any(line.startswith("# ") for line in lines)
    for part in ("**What this stage does.**", "**Why.**", "**Needs:**", "**Time on a free Colab T4:**",
                 COURSE_UNIT, BLOG_POST):
        assert part in first.source, part


@pytest.mark.parametrize("name", ALL)
def test_every_notebook_ends_with_the_way_on_and_the_troubleshooting_section(name):
    last = load(name).cells[-1].source
    assert TROUBLESHOOTING_URL in last
    if name in NOTEBOOKS[:-1]:
        assert colab_url(NOTEBOOKS[NOTEBOOKS.index(name) + 1]) in last
    assert TROUBLESHOOTING_URL == f"{REPO_URL}/blob/{RELEASE}/docs/troubleshooting.md"
    for page, _ in NOTEBOOK_DOCS[name]:  # and the docs pages on its topic
        assert f"{REPO_URL}/blob/{RELEASE}/docs/{page}" in last


@pytest.mark.parametrize("name", ALL)
def test_every_notebook_has_something_to_try(name):
    assert "Try it yourself" in "".join(c.source for c in load(name).cells if c.cell_type == "markdown")


def test_every_link_points_at_this_repository_at_the_pinned_release():
    text = "".join((NOTEBOOK_DIR / name).read_text(encoding="utf-8") for name in ALL)
    assert set(LINK.findall(text)) == {colab_url(name) for name in ALL}
    assert all(f"/blob/{RELEASE}/" in link for link in LINK.findall(text))
    ours = {link for link in GITHUB.findall(text) if link.startswith(REPO_URL)}  # others' projects may be linked
    assert ours - {REPO_URL} and all(link.startswith(f"{REPO_URL}/blob/{RELEASE}/") for link in ours - {REPO_URL})
    assert COLLATOR_ISSUE in GITHUB.findall(text)
    assert not re.search(r"\]\(\d\d_\w+\.ipynb\)", text)  # relative links break in Colab


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_code_cells_stay_short_but_the_course_code_written_out(name):
    long_ones = {"training-arguments", "trainer"}  # 04 writes out the course's two calls in full
    for cell in load(name).cells[1:]:
        if cell.source.startswith("# %load -s "):  # the course's own code, editable (see below)
            continue
        if cell.cell_type == "code" and "setup" not in cell.metadata.get("tags", []):
            if not long_ones & set(cell.metadata.get("tags", [])):
                assert len(cell.source.splitlines()) <= 16, cell.source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stages_only_need_what_earlier_stages_make(name):
    position = NOTEBOOKS.index(name)
    text = "\n".join(code_cells(load(name)))
    needed = set(re.findall(r"(?:load_from_workspace|saved_path)\(\"(\w+)\"", text))
    assert bool(needed) == (position >= 2)  # 00 and 01 start from nothing
    for artifact in needed:
        maker = ARTIFACTS[artifact][1]
        assert NOTEBOOKS.index(maker) < position, f"{name} needs {artifact}, made later by {maker}"
        assert colab_url(maker) in load(name).cells[0].source  # the header says which notebook to run first


def test_the_workshop_is_the_seven_stages_in_order_with_one_setup():
    workshop = load(WORKSHOP)
    cells = code_cells(workshop)
    assert cells[2] == "from helpers.notebook.workshop import preflight\n\nchecks = preflight(config)"
    expected, loaded, left_out, added = [], set(), 0, 0
    for name in NOTEBOOKS:
        for cell in sync_notebooks.read_source(name).cells[1:]:
            tags = cell.metadata.get("tags", [])
            left_out += "notebook-only" in tags
            added += "workshop-only" in tags
            if cell.cell_type != "code" or "setup" in tags or "notebook-only" in tags:
                continue
            target = sync_notebooks.load_target(cell)
            if target is None:
                expected.append(cell.source)
            elif target[0] not in loaded:  # one runtime: a definition an earlier stage loaded is not loaded again
                loaded.add(target[0])
                expected.append(sync_notebooks.loaded_cell(*target))
    assert cells[3:] == expected
    assert left_out and added  # 06's second login goes; 04's baseline before training comes
    assert "zero_shot_baseline(" in "".join(cells[3:])
    headings = [line for c in workshop.cells if c.cell_type == "markdown" for line in c.source.splitlines()
                if line.startswith("# ")]
    assert len(headings) == 1  # its own title; each stage's title is one level down
    for name in NOTEBOOKS:
        assert f"## {sync_notebooks.title(name)}" in "".join(c.source for c in workshop.cells)


def test_the_notebook_sources_pass_the_linter():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--line-length", "120", "--select",
                             "E,F,W,I", "--ignore", "E402", str(NOTEBOOK_DIR / "src")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_jupytext_reads_the_sources_as_the_sync_script_does():
    text = (NOTEBOOK_DIR / "src" / "04_train.py").read_text(encoding="utf-8")
    assert "# %load_ext tensorboard" in text  # the magic is a comment in the source, lintable
    built = jupytext.reads(text, fmt="py:percent")
    assert any("    %load_ext tensorboard" in c.source for c in built.cells)  # and a magic in the notebook


# --- 04's written-out course code equals what helpers.training builds (python -m helpers run) ---

@pytest.fixture
def run_04(tmp_path, monkeypatch):
    """Execute 04's cells that write out the training arguments, as the notebook does, for a config."""
    from helpers.runtime import workspace

    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path))

    def run(config, **namespace):
        workspace.set_run(config)
        scope = {"config": config, **namespace}
        exec(compile(tagged("04_train.ipynb", "training-arguments"), "<04 training arguments>", "exec"), scope)
        return scope

    return run


@pytest.mark.parametrize("profile", ["smoke", "t4", "offline"])
def test_04_writes_out_the_same_training_arguments_as_the_helpers(run_04, profile):
    from helpers.runtime.workspace import runtime_dir
    from helpers.training import training_arguments

    config = get_config(profile, max_steps=40)
    notebook_args = run_04(config)["training_args"]
    helper_args = training_arguments(config, runtime_dir("training"), disable_tqdm=False)
    ours, theirs = notebook_args.to_dict(), helper_args.to_dict()
    assert ours.keys() == theirs.keys()
    assert {key: (ours[key], theirs[key]) for key in ours if ours[key] != theirs[key]} == {}
    assert notebook_args.metric_for_best_model == "wer_words" and not notebook_args.push_to_hub


def test_04_trainer_is_the_one_build_trainer_makes(run_04, prepared, tmp_path):
    import torch

    from helpers.model import load_model_and_processor
    from helpers.runtime.mirror import find_mirror
    from helpers.runtime.workspace import artifact_path
    from helpers.training import build_trainer

    config = get_config("smoke", max_steps=2)
    model, processor = load_model_and_processor(config.model, config.language, config.task)
    scope = run_04(config)
    scope.update(model=model, processor=processor, prepared=prepared[1])
    for cell in load("04_train.ipynb").cells:  # the notebook's own collator and compute_metrics
        if loaded_name(cell):
            exec(compile(cell.source, f"<04 {loaded_name(cell)}>", "exec"), scope)
    exec(compile(tagged("04_train.ipynb", "trainer"), "<04 trainer>", "exec"), scope)
    ours = scope["trainer"]
    theirs = build_trainer(model, processor, prepared[1], config, ours.args.output_dir, disable_tqdm=False)
    assert ours.args.to_dict() == theirs.args.to_dict()
    assert ours.eval_dataset is theirs.eval_dataset is prepared[1]["validation"]  # the slice of dev, not test
    assert find_mirror(ours).folder == artifact_path("training")  # the small copies go to the workspace (Drive)
    assert ours.train_dataset is theirs.train_dataset
    # The notebook's classes and functions (its cells), not the helpers' objects, doing what the helpers' do.
    assert type(ours.data_collator) is scope["DataCollatorSpeechSeq2SeqWithPadding"] is not type(theirs.data_collator)
    assert ours.data_collator.decoder_start_token_id == theirs.data_collator.decoder_start_token_id
    assert ours.processing_class is theirs.processing_class is processor
    examples = [prepared[1]["test"][i] for i in range(2)]
    batch, their_batch = ours.data_collator(examples), theirs.data_collator(examples)
    assert batch.keys() == their_batch.keys() and all(torch.equal(batch[k], their_batch[k]) for k in batch)
    labels = batch["labels"].numpy()
    prediction = types.SimpleNamespace(predictions=labels.copy(), label_ids=labels.copy())
    assert ours.compute_metrics(prediction) == theirs.compute_metrics(prediction)


def test_a_stage_run_alone_without_its_input_says_which_notebook_makes_it(tmp_path):
    """03_collate in an empty workspace stops at its first real cell with one sentence, not a traceback wall.

    The kernel gets only a workspace and offline mode: no switch of ours is needed to run a notebook.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = load("03_collate.ipynb")
    env = {"COURSE_WORKSPACE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        for key in ("COURSE_PROFILE", "COURSE_NONINTERACTIVE", "TQDM_DISABLE", "HF_TOKEN"):
            patch.delenv(key, raising=False)
        with pytest.raises(CellExecutionError):
            client.execute()
    failed = next(cell for cell in notebook.cells if cell.cell_type == "code" and 'load_from_workspace("prepared")' in cell.source)
    errors = [o for o in failed.outputs if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "CourseError"  # an error output: nbmake and Jupyter see it fail
    assert "run 02_preprocess.ipynb first" in errors[0].evalue
    assert len(errors[0].traceback) == 1 and "run 02_preprocess.ipynb first" in errors[0].traceback[0]
    assert "Traceback" not in json.dumps(failed.outputs)


def test_nbmake_fails_a_notebook_that_stops_on_a_missing_input(tmp_path):
    """What CI runs: a stage whose input is missing must fail under nbmake, not pass with a printed message."""
    env = {**os.environ, "COURSE_WORKSPACE": str(tmp_path), "COURSE_PROFILE": "smoke", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "--nbmake",
                           str(NOTEBOOK_DIR / "03_collate.ipynb")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 1, done.stdout[-2000:]
    assert "run 02_preprocess.ipynb first" in done.stdout


def test_text_for_one_of_the_two_is_kept_only_there():
    text = ("Both.\n<!-- notebook-only -->\nAlone: 06 asks again.\n<!-- /notebook-only -->\n"
            "<!-- workshop-only -->\nOne runtime: the login lasts.\n<!-- /workshop-only -->\nBoth again.")
    assert sync_notebooks.for_one(text, in_workshop=False) == "Both.\nAlone: 06 asks again.\nBoth again."
    assert sync_notebooks.for_one(text, in_workshop=True) == "Both.\nOne runtime: the login lasts.\nBoth again."
    for broken in ("<!-- notebook-only -->\nnever closed", "<!-- /workshop-only -->\nnever opened",
                   "<!-- notebook-only -->\n<!-- /workshop-only -->"):
        with pytest.raises(ValueError):
            sync_notebooks.for_one(broken, in_workshop=False)


# What the separate notebooks say about themselves, false in the workshop's one runtime.
ONE_RUNTIME_FALSE = ("**Needs:**", "CPU runtime is enough", "made in 00 is gone", "06_share` will ask again",
                     "Each notebook runs in its own runtime", "**Time on a free Colab T4:**", "the README")


def test_the_workshop_speaks_for_one_runtime_and_a_teacher():
    workshop = load(WORKSHOP)
    text = "\n".join(c.source for c in workshop.cells if c.cell_type == "markdown")
    for words in ONE_RUNTIME_FALSE:
        assert words not in text, words
    assert "<!--" not in text and "notebook-only" not in str(workshop.cells)
    from helpers.notebook.workshop import agenda_table

    assert agenda_table() in workshop.cells[0].source  # the agenda with times, at the top
    assert text.count("**In the workshop:**") == len(NOTEBOOKS)  # each stage's own time and words
    assert 'DATA = "bundled"' in text and "pre-flight" in text  # a way in without an MDC key; the day before
    cells = code_cells(workshop)
    baseline = next(i for i, c in enumerate(cells) if "zero_shot_baseline(" in c)
    assert baseline < next(i for i, c in enumerate(cells) if "train(trainer" in c)  # on screen while it trains
    for name in NOTEBOOKS:  # and the separate notebooks keep what is true for them
        own = "\n".join(c.source for c in load(name).cells if c.cell_type == "markdown")
        assert "**In the workshop:**" not in own and "<!--" not in own and "zero_shot_baseline(" not in str(load(name))


@pytest.mark.parametrize("name", ALL)
def test_every_exercise_has_its_solutions_folded_under_it(name):
    cells = [c.source for c in load(name).cells if c.cell_type == "markdown"]
    exercises = [i for i, text in enumerate(cells) if re.search(r"^#+ Try it yourself$", text, re.MULTILINE)]
    assert len(exercises) == (len(NOTEBOOKS) if name == WORKSHOP else 1)
    for i in exercises:
        solutions = cells[i + 1]
        assert solutions.startswith("<details><summary><b>Solutions</b>") and solutions.rstrip().endswith("</details>")


MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings (lower case, punctuation dropped, spaces to -)."""
    anchors, fenced = set(), False
    for line in markdown.splitlines():
        fenced ^= line.lstrip().startswith("```")
        if not fenced and re.match(r"#{1,6} ", line):
            heading = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", heading).replace(" ", "-"))
    return anchors


def broken_link(target, anchor: str) -> str | None:
    """Why a link to the repository file ``target`` (with ``#anchor``, maybe empty) is broken; None if not."""
    if not target.exists():
        return f"{target.relative_to(REPO_ROOT) if target.is_relative_to(REPO_ROOT) else target} does not exist"
    if anchor and target.suffix == ".md" and anchor not in github_anchors(target.read_text(encoding="utf-8")):
        return f"{target.name} has no heading #{anchor}"
    return None


def test_the_link_check_catches_what_it_must(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Troubleshooting\n\n## Out of memory, from the command line\n\n```\n# not a heading\n```\n")
    assert broken_link(page, "") is None and broken_link(page, "troubleshooting") is None
    assert broken_link(page, "out-of-memory-from-the-command-line") is None
    assert broken_link(page, "not-a-heading") == "page.md has no heading #not-a-heading"
    assert "does not exist" in broken_link(tmp_path / "gone.md", "")


def test_every_relative_link_in_the_readme_and_docs_resolves():
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    assert len(pages) > 10
    problems = []
    for page in pages:
        for link in MARKDOWN_LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", link):  # https:, mailto:
                continue
            path, _, anchor = link.partition("#")
            problem = broken_link((page.parent / path).resolve() if path else page, anchor)
            if problem:
                problems.append(f"{page.relative_to(REPO_ROOT)}: ({link}) {problem}")
    assert problems == []
    docs = {p.name for p in (REPO_ROOT / "docs").glob("*.md")} - {"README.md"}
    index = (REPO_ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    assert {page for page in docs if f"({page})" not in index} == set()  # every page is in the index


def test_every_repository_link_in_the_notebooks_resolves():
    problems, seen = [], set()
    for name in ALL:
        text = (NOTEBOOK_DIR / name).read_text(encoding="utf-8")
        for link in re.findall(re.escape(f"{REPO_URL}/blob/{RELEASE}/") + r"[^)\s\"'\\]+", text):
            seen.add(link)
            path, _, anchor = link.removeprefix(f"{REPO_URL}/blob/{RELEASE}/").partition("#")
            problem = broken_link(REPO_ROOT / path, anchor)
            if problem:
                problems.append(f"{name}: {link}: {problem}")
    assert problems == []
    assert TROUBLESHOOTING_URL in seen and f"{REPO_URL}/blob/{RELEASE}/docs/workshop.md" in seen


# --- The course's code is in the notebooks as editable cells, the same code as helpers/ ---

LOADED = {"02_preprocess.ipynb": ["prepare_dataset"], "03_collate.ipynb": ["DataCollatorSpeechSeq2SeqWithPadding"],
          "04_train.ipynb": ["make_compute_metrics", "DataCollatorSpeechSeq2SeqWithPadding"]}


def definitions_in(cell_source: str) -> dict[str, str]:
    """The top-level functions and classes a cell defines, each as its source text."""
    import ast

    tree = ast.parse(cell_source)
    lines = cell_source.splitlines()
    return {node.name: "\n".join(lines[min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1:
                                       node.end_lineno])
            for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


@pytest.mark.parametrize("name", ALL)
def test_each_editable_cell_holds_the_helpers_code_exactly(name):
    import importlib
    import inspect

    cells = [cell for cell in load(name).cells if loaded_name(cell)]
    if name != WORKSHOP:
        assert [loaded_name(cell) for cell in cells] == LOADED.get(name, [])
    for cell in cells:
        module = re.match(r"# %load -s \w+ (helpers/\w+)\.py", cell.source).group(1).replace("/", ".")
        original = getattr(importlib.import_module(module), loaded_name(cell))
        assert definitions_in(cell.source) == {loaded_name(cell): inspect.getsource(original).rstrip("\n")}, (
            f"{name}: the cell of {loaded_name(cell)} differs from {module}; run python tools/sync_notebooks.py")


def test_a_cell_that_differs_from_the_helpers_is_caught(monkeypatch):
    import inspect

    from helpers.metrics import make_compute_metrics

    cell = next(c for c in load("04_train.ipynb").cells if loaded_name(c) == "make_compute_metrics")
    edited = cell.source.replace("label_ids[label_ids == -100]", "label_ids[label_ids == -1]")
    assert edited != cell.source
    assert definitions_in(edited)["make_compute_metrics"] != inspect.getsource(make_compute_metrics).rstrip("\n")
    # A source whose %load cell hides more than the stand-in import is refused, not silently dropped.
    source = sync_notebooks.read_source("04_train.ipynb")
    stand_in = next(c for c in source.cells if sync_notebooks.load_target(c))
    stand_in.source += "\nprint('lost')"
    monkeypatch.setattr(sync_notebooks, "read_source", lambda name: source)
    with pytest.raises(ValueError, match="must hold only"):
        sync_notebooks.build("04_train.ipynb")


@pytest.mark.parametrize("name", ALL)
def test_the_cells_after_an_editable_cell_use_the_notebook_s_definition_and_no_bookkeeping(name):
    defined: set[str] = set()
    for cell in load(name).cells:
        if cell.cell_type != "code":
            continue
        # Stamps are written and checked by the workspace's savers and loaders, never by a learner's cell.
        assert not re.search(r"\b(stamp|claim|require|check|write_stamp|set_run)\(", cell.source), cell.source
        if loaded_name(cell):
            defined.add(loaded_name(cell))
            continue
        for imported in defined:  # an import from helpers would replace the learner's version
            assert not re.search(rf"import[^\n]*\b{imported}\b", cell.source), (name, imported, cell.source)
    if name in LOADED or name == WORKSHOP:
        assert defined


def test_the_notebook_s_edited_preparation_function_is_what_prepares_the_clips(prepared, processor, tmp_path):
    from datasets import load_from_disk

    from helpers.preparation import prepare_split

    cell = next(c for c in load("02_preprocess.ipynb").cells if loaded_name(c) == "prepare_dataset")
    # On disk, as 02 loads it: datasets then caches each map's result beside it, under the map's fingerprint.
    prepared[0]["test"].select(range(6)).save_to_disk(tmp_path / "loaded")
    split = load_from_disk(tmp_path / "loaded")
    scope: dict = {"__name__": "__main__"}
    exec(compile(cell.source, "<02 prepare_dataset>", "exec"), scope)
    as_shipped, report = prepare_split(split, processor, prepare=scope["prepare_dataset"])
    theirs, their_report = prepare_split(split, processor)
    assert as_shipped["labels"][:] == theirs["labels"][:] and report == their_report
    # The learner's change: a shorter limit (the median clip's duration). The map's cache must not answer
    # for the edited function with the rows of the original.
    durations = sorted(theirs["duration"])
    cut = durations[len(durations) // 2]
    edited = cell.source.replace("if duration > MAX_AUDIO_SECONDS:", f"if duration > {cut!r}:")
    assert edited != cell.source
    exec(compile(edited, "<02 prepare_dataset, edited>", "exec"), scope)
    shorter, report = prepare_split(split, processor, prepare=scope["prepare_dataset"])
    assert sorted(shorter["duration"]) == [d for d in durations if d <= cut] != durations
    assert report["dropped_by_reason"] == {"too_long_audio": sum(d > cut for d in durations)}
    assert len(list((tmp_path / "loaded").glob("cache-*.arrow"))) >= 2  # each function's rows cached apart

