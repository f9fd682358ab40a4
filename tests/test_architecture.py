"""The layers of docs/architecture.md hold in the code: the import-linter contract in pyproject.toml passes, it
counts imports inside functions, no two helpers modules import each other (directly or round a circle), and
the notebooks' cells reach the machinery only through ``helpers.notebook``."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import nbformat
import pytest

from helpers.config import REPO_ROOT

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
MACHINERY = ("helpers.runtime", "helpers.services")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package in ``root`` with ``root``'s pyproject.toml, as a maintainer runs it."""
    return subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache", "--no-logo"], cwd=root,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=300, check=False)


def test_the_layer_contract_is_kept():
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "back_edge"), [
    ("runtime/errors.py", "from helpers.cli import main"),          # runtime reaching the top
    ("config.py", "from helpers.services.mdc import find_common_voice"),  # not a back-edge: still kept
    ("data.py", "from helpers.training import train"),              # a course piece reaching up
    ("services/hub.py", "from helpers.data import load_common_voice"),
])
def test_a_back_edge_inside_a_function_breaks_the_contract(tmp_path, module, back_edge):
    """The contract reads imports inside functions as well: one added to a copy of the package is caught."""
    shutil.copytree(REPO_ROOT / "helpers", tmp_path / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / "helpers" / module).open("a", encoding="utf-8") as source:
        source.write(f"\n\ndef _late():\n    {back_edge}\n")
    result = lint_imports(tmp_path)
    upward = module != "config.py"
    assert (result.returncode != 0) == upward, result.stdout[-3000:]
    if upward:
        imported = back_edge.split()[1]
        assert "BROKEN" in result.stdout and imported in result.stdout


def test_no_two_helpers_modules_import_each_other_even_inside_functions():
    graph = grimp.build_graph("helpers", exclude_type_checking_imports=True)  # function-local imports included
    cycles = sorted({tuple(sorted((module, imported)))
                     for module in graph.modules for imported in graph.find_modules_directly_imported_by(module)
                     if graph.chain_exists(importer=imported, imported=module)})
    assert cycles == [], f"import cycles: {cycles}"
    # and the same for the packages the layers are made of
    packages = {"helpers.runtime", "helpers.services", "helpers.extras", "helpers.notebook"}
    for package in packages:
        for other in packages - {package}:
            assert not (graph.chain_exists(importer=package, imported=other, as_packages=True)
                        and graph.chain_exists(importer=other, imported=package, as_packages=True)), (package, other)


def _imports(code: str) -> list[str]:
    """The modules ``code`` imports from (IPython's magics and shell lines left out)."""
    lines = [line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))]
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def test_the_notebooks_import_no_machinery():
    """A learner's cell imports the course's pieces and helpers.notebook (session, display, plots), never
    helpers.runtime or helpers.services: the sources, and every built notebook's code cells (the set-up cell
    and the workshop's own cells included)."""
    reached = {}
    for source in sorted((NOTEBOOK_DIR / "src").glob("*.py")):
        reached[source.name] = _imports(source.read_text(encoding="utf-8"))
    for built in sorted(NOTEBOOK_DIR.glob("*.ipynb")):
        notebook = nbformat.read(built, as_version=4)
        reached[built.name] = [name for cell in notebook.cells if cell.cell_type == "code"
                               for name in _imports(cell.source)]
    assert len(reached) >= 15 and all(reached.values())
    machinery = {name: sorted({m for m in modules if m.startswith(MACHINERY)}) for name, modules in reached.items()}
    assert {name: found for name, found in machinery.items() if found} == {}
    assert all("helpers.notebook.session" in modules for name, modules in reached.items()), "the set-up's import"
