"""The committed notebooks: clean, token-free, generated from one source, badges from one URL, in order.

(Running them is nbmake's job: ``pytest`` executes ``notebooks/*.ipynb`` after these tests.)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import nbformat
import pytest

from helpers.config import REPO_ROOT
from helpers.notebook import ARTIFACTS, NOTEBOOKS, REPO_URL, colab_badge, colab_url
from tools import make_notebooks

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
TOKEN = re.compile(r"hf_[A-Za-z0-9]{20,}")
LINK = re.compile(r"https://colab\.research\.google\.com/github/[^)\s\"']+")
GITHUB = re.compile(r"https://github\.com/[^)\s\"'/]+/[^)\s\"'/]+")


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


def test_the_seven_stages_are_there_in_order():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == list(NOTEBOOKS)
    assert len(NOTEBOOKS) == 7


@pytest.mark.parametrize("name", NOTEBOOKS)
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


def test_no_token_anywhere_in_the_notebook_sources():
    for path in [*NOTEBOOK_DIR.glob("*.ipynb"), REPO_ROOT / "tools" / "make_notebooks.py"]:
        assert not TOKEN.search(path.read_text(encoding="utf-8")), path


def test_nbstripout_would_change_nothing():
    # The pre-commit hook (nbstripout) and the generator agree, so neither rewrites the other's output.
    result = subprocess.run([sys.executable, "-m", "nbstripout", "--verify", *map(str, sorted(NOTEBOOK_DIR.glob("*.ipynb")))],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    config = (REPO_ROOT / ".pre-commit-config.yaml").read_text()
    assert "kynan/nbstripout" in config and "id: nbstripout" in config


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_what_the_generator_writes(name):
    # Badges and the set-up cell come from helpers.notebook; a hand edit here would drift from them.
    assert (NOTEBOOK_DIR / name).read_text(encoding="utf-8") == make_notebooks.render(name), (
        "edit tools/make_notebooks.py and run it instead of editing the notebook")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_header_has_the_badge_title_purpose_and_inputs(name):
    first = load(name).cells[0]
    assert first.cell_type == "markdown"
    lines = first.source.splitlines()
    assert lines[0] == colab_badge(name)
    assert any(line.startswith("# ") for line in lines)
    for part in ("**What this stage does.**", "**Why.**", "**Needs:**"):
        assert part in first.source


def test_every_link_points_at_this_repository():
    text = "".join((NOTEBOOK_DIR / name).read_text(encoding="utf-8") for name in NOTEBOOKS)
    links = set(LINK.findall(text))
    assert links == {colab_url(name) for name in NOTEBOOKS}
    assert set(GITHUB.findall(text)) == {REPO_URL}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_one_setup_cell_installs_only_in_colab_and_prints_the_profile(name):
    cells = code_cells(load(name))
    setup = [source for source in cells if "setup()" in source]
    assert len(setup) == 1 and cells[0] == setup[0]
    lines = setup[0].splitlines()
    colab = lines.index('if "google.colab" in sys.modules:')
    installs = [i for i, line in enumerate(lines) if "pip install" in line or "git clone" in line]
    assert installs and all(i > colab and lines[i].startswith("    ") for i in installs)
    assert not any("torch" in lines[i] for i in installs)  # Colab's own torch is never touched
    assert REPO_URL in setup[0]
    for source in cells[1:]:  # no other cell installs anything outside Colab
        for line in source.splitlines():
            if "pip install" in line:
                assert line.startswith("    "), line


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_code_cells_stay_short(name):
    for source in code_cells(load(name))[1:]:
        assert len(source.splitlines()) <= 12, source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stages_only_need_what_earlier_stages_make(name):
    position = NOTEBOOKS.index(name)
    text = "\n".join(code_cells(load(name)))
    for artifact in re.findall(r"require\(\"(\w+)\"\)", text):
        maker = ARTIFACTS[artifact][1]
        assert NOTEBOOKS.index(maker) < position, f"{name} needs {artifact}, made later by {maker}"
    header = load(name).cells[0].source
    for artifact in set(re.findall(r"require\(\"(\w+)\"\)", text)):
        assert ARTIFACTS[artifact][1] in header  # the header says which notebook to run first


def test_a_stage_run_alone_without_its_input_says_which_notebook_makes_it(tmp_path):
    """03_collate in an empty workspace stops at its first real cell with one sentence, not a traceback wall."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = load("03_collate.ipynb")
    env = {"COURSE_WORKSPACE": str(tmp_path), "COURSE_PROFILE": "smoke", "HF_HUB_OFFLINE": "1",
           "COURSE_NONINTERACTIVE": "1", "TQDM_DISABLE": "1"}
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        with pytest.raises(CellExecutionError):
            client.execute()
    failed = next(cell for cell in notebook.cells if cell.cell_type == "code" and 'require("prepared")' in cell.source)
    stderr = "".join(o.get("text", "") for o in failed.outputs if o.get("name") == "stderr")
    assert "run 02_preprocess.ipynb first" in stderr
    assert "Traceback" not in json.dumps(failed.outputs)
