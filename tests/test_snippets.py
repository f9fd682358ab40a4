"""Every snippet a learner or teacher is told to type names things that exist.

The snippets are found where a reader meets them: the notebooks' sources (code cells, and the code in their
text: exercises and folded solutions included), the workshop notebook (its own text is written by
tools/sync_notebooks.py), docs/*.md and README.md; fenced blocks and inline code alike. A snippet counts when
it uses ``helpers``, ``setup(...)`` or ``python -m helpers``. For each one:

* every ``import`` / ``from ... import`` of ``helpers`` imports, and every dotted ``helpers.x.y`` resolves;
* every call of a ``helpers`` function or class (imported in the same document, or ``setup`` /
  ``get_config`` by name) passes only keywords its signature takes; ``setup`` and ``get_config`` take
  :class:`~helpers.config.CourseConfig`'s fields and ``profile``, whose value must be a profile;
* every ``python -m helpers <command> --flag`` names a command and flags that the real argparse parser knows;
* every ``COURSE_PROFILE=<name>`` names a profile.

Nothing is run: the snippets are parsed with ``ast`` and ``shlex``, and checked against the real modules.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json
import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.cli import _parser
from helpers.config import PROFILES, REPO_ROOT, CourseConfig

NOTEBOOK_SOURCES = sorted((REPO_ROOT / "notebooks" / "src").glob("*.py"))
DOCUMENTS = [*NOTEBOOK_SOURCES, REPO_ROOT / "notebooks" / "workshop.ipynb",
             *sorted((REPO_ROOT / "docs").glob("*.md")), REPO_ROOT / "README.md"]
# Calls a reader types by name without importing them in the snippet: the set-up cell's and the config's.
KNOWN_CALLS = {"setup": "helpers.notebook.session.setup", "get_config": "helpers.config.get_config"}
# What setup(**overrides) and get_config(**overrides) accept beyond their own parameters.
CONFIG_KEYWORDS = {f.name for f in dataclasses.fields(CourseConfig)} | {"profile"}
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```[ \t]*(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
_INLINE = re.compile(r"(?<!`)`(?!`)(?P<body>[^`]+?)`(?!`)")
_RELEVANT = re.compile(r"\bhelpers\b|\bsetup\(|-m helpers\b")
_SHELL = {"bash", "sh", "shell", "console", "zsh"}


@dataclass
class Snippet:
    where: str  # file:line
    code: str
    fenced: bool  # a fenced block or code cell (must parse) rather than inline code (prose may look like code)
    language: str = ""  # a fence's language: "python" must parse; "" (none given) is checked when it parses


def _line_of(text: str, index: int, first: int) -> int:
    return first + text.count("\n", 0, index)


def markdown_snippets(text: str, where: str, first_line: int = 1) -> list[Snippet]:
    """Fenced blocks and inline code spans of a Markdown text (inline code outside the fences only)."""
    found = []
    for match in _FENCE.finditer(text):
        language = match["lang"].lower()
        language = "shell" if language in _SHELL else "python" if language in ("python", "py", "python3") else ""
        body = textwrap.dedent(match["body"])  # a block inside a list item is indented with it
        found.append(Snippet(f"{where}:{_line_of(text, match.start(), first_line)}", body, True, language))
    outside = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for match in _INLINE.finditer(outside):
        body = re.sub(r"\s*\n\s*", " ", match["body"]).strip()
        found.append(Snippet(f"{where}:{_line_of(outside, match.start(), first_line)}", body, False))
    return found


def _percent_cells(path: Path) -> list[tuple[str, str, int]]:
    """(kind, source, first line) of each cell of a jupytext py:percent file; markdown without its '# '."""
    cells, kind, lines, start = [], None, [], 1
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("# %%"):
            if kind is not None:
                cells.append((kind, "\n".join(lines), start))
            kind, lines, start = ("markdown" if "[markdown]" in line else "code"), [], number + 1
            continue
        if kind == "markdown":
            line = line[2:] if line.startswith("# ") else line.lstrip("#")
        lines.append(line)
    if kind is not None:
        cells.append((kind, "\n".join(lines), start))
    return cells


def _notebook_cells(path: Path) -> list[tuple[str, str, int]]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [(cell["cell_type"], "".join(cell["source"]), index) for index, cell in enumerate(cells, 1)]


def document_snippets(path: Path) -> list[Snippet]:
    """Every snippet of one document that uses helpers, setup(...) or python -m helpers."""
    name = path.relative_to(REPO_ROOT).as_posix()
    if path.suffix == ".md":
        found = markdown_snippets(path.read_text(encoding="utf-8"), name)
    else:
        cells = _percent_cells(path) if path.suffix == ".py" else _notebook_cells(path)
        found = []
        for kind, source, first in cells:
            where = f"{name}:{first}" if path.suffix == ".py" else f"{name} cell {first}"
            if kind == "markdown":
                found += (markdown_snippets(source, where, 1) if path.suffix == ".ipynb"
                          else markdown_snippets(source, name, first))
            elif kind == "code":
                found.append(Snippet(where, source, True, "python"))
    return [snippet for snippet in found if _RELEVANT.search(snippet.code)]


def _python(code: str) -> ast.Module | None:
    # IPython's magics and shell escapes are not Python: comment them out, keeping the line numbers.
    lines = [("# " + line) if line.lstrip().startswith(("%", "!")) else line for line in code.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def _resolve(dotted: str):
    """The object a dotted ``helpers...`` name means, importing modules on the way; raises when it does not exist."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            value = getattr(value, attribute)
        return value
    raise ModuleNotFoundError(dotted)


def _imports(tree: ast.Module) -> tuple[dict[str, str], list[str]]:
    """Names bound to helpers' objects (name -> dotted path), and what could not be imported."""
    names, problems = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "helpers" and not node.level:
            for alias in node.names:
                dotted = f"{node.module}.{alias.name}"
                try:
                    _resolve(dotted)
                except (ImportError, AttributeError) as error:
                    problems.append(f"from {node.module} import {alias.name}: cannot be imported ({error})")
                    continue
                names[alias.asname or alias.name] = dotted
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "helpers":
                    try:
                        importlib.import_module(alias.name)
                    except ImportError as error:
                        problems.append(f"import {alias.name}: {error}")
    return names, problems


def _dotted(node: ast.expr) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def _check_call(call: ast.Call, target: str) -> list[str]:
    try:
        function = _resolve(target)
        signature = inspect.signature(function)
    except (ImportError, AttributeError) as error:
        return [f"{target}: {type(error).__name__}: {error}"]
    except (TypeError, ValueError):  # no signature to check against (a builtin)
        return []
    parameters = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    config_call = target in KNOWN_CALLS.values()
    problems = []
    for keyword in call.keywords:
        if keyword.arg is None:  # **mapping
            continue
        known = keyword.arg in parameters and parameters[keyword.arg].kind is not inspect.Parameter.POSITIONAL_ONLY
        if config_call:
            known = known or keyword.arg in CONFIG_KEYWORDS
            if keyword.arg == "profile" and isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, str) \
                    and keyword.value.value not in PROFILES:
                problems.append(f"{target}(profile={keyword.value.value!r}): no such profile ({', '.join(PROFILES)})")
        elif takes_any:
            known = True
        if not known:
            problems.append(f"{target}(... {keyword.arg}=...): it takes no keyword {keyword.arg!r}")
    return problems


def python_problems(snippet: Snippet, document_names: dict[str, str]) -> list[str]:
    """What in a Python snippet does not exist: imports, dotted helpers names, keywords of helpers' calls."""
    tree = _python(snippet.code)
    if tree is None:
        if snippet.fenced and snippet.language == "python" and "-m helpers" not in snippet.code:
            return ["does not parse as Python"]
        return []
    names, problems = _imports(tree)
    names = {**document_names, **names}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            dotted = _dotted(node)
            if dotted and dotted.split(".")[0] == "helpers":
                try:
                    _resolve(dotted)
                except (ImportError, AttributeError) as error:
                    problems.append(f"{dotted}: {type(error).__name__}: {error}")
        if isinstance(node, ast.Call):
            dotted = _dotted(node.func)
            if dotted is None:
                continue
            head, _, rest = dotted.partition(".")
            if head in names:
                target = names[head] + (f".{rest}" if rest else "")
            elif dotted in KNOWN_CALLS:
                target = KNOWN_CALLS[dotted]
            elif head == "helpers":
                target = dotted
            else:
                continue
            if not rest or head == "helpers" or inspect.ismodule(_safe_resolve(names.get(head, ""))):
                problems += _check_call(node, target)
    return problems


def _safe_resolve(dotted: str):
    try:
        return _resolve(dotted) if dotted else None
    except (ImportError, AttributeError):
        return None


def _commands() -> dict[str, set[str]]:
    """Each ``python -m helpers`` command and the option strings its real parser knows."""
    parser = _parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return {name: set(sub._option_string_actions) for name, sub in action.choices.items()}


def cli_problems(snippet: Snippet) -> list[str]:
    """Commands and flags of every ``-m helpers`` in the snippet that the real parser does not know."""
    commands, problems = _commands(), []
    text = re.sub(r"\\\n", " ", snippet.code)
    for line in text.splitlines():
        for match in re.finditer(r"-m helpers\b(?P<rest>[^\n]*)", line):
            rest = re.split(r"\s(?:#|\||&&|;|>)", " " + match["rest"])[0]
            try:
                words = shlex.split(rest)
            except ValueError:
                words = rest.split()
            words = [word.strip("[]()`'\"") for word in words]
            if not words or words[0].startswith("-"):
                continue
            command = words[0]
            if command not in commands:
                problems.append(f"python -m helpers {command}: no such command ({', '.join(commands)})")
                continue
            for word in words[1:]:
                if word.startswith("--") and len(word) > 2:
                    flag = word.split("=", 1)[0]
                    if flag not in commands[command]:
                        problems.append(f"python -m helpers {command} {flag}: no such flag")
    return problems


def profile_problems(snippet: Snippet) -> list[str]:
    return [f"COURSE_PROFILE={name}: no such profile" for name in re.findall(r"COURSE_PROFILE=([a-z0-9]+)\b", snippet.code)
            if name not in PROFILES]


def problems_in(path: Path) -> tuple[list[Snippet], list[str]]:
    snippets = document_snippets(path)
    document_names: dict[str, str] = {}
    for snippet in snippets:  # a notebook's cells share one kernel: names imported anywhere are known everywhere
        tree = _python(snippet.code)
        if tree is not None:
            document_names.update(_imports(tree)[0])
    problems = []
    for snippet in snippets:
        for problem in python_problems(snippet, document_names) + cli_problems(snippet) + profile_problems(snippet):
            problems.append(f"{snippet.where}: {problem}\n    {snippet.code.strip()[:200]}")
    return snippets, problems


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_every_snippet_names_what_exists(path):
    _, problems = problems_in(path)
    assert not problems, "\n".join(problems)


def test_the_snippets_are_found_where_readers_meet_them():
    """The finder sees exercises, folded solutions, inline code and commands, so the check above cannot pass empty."""
    share = document_snippets(REPO_ROOT / "notebooks" / "src" / "06_share.py")
    assert any("import push_model" in s.code and not s.fenced for s in share)  # in a folded solution
    assert any("python -m helpers run" in s.code for s in share)
    train = document_snippets(REPO_ROOT / "notebooks" / "src" / "04_train.py")
    assert any(s.code.startswith("setup(needs_gpu=True, peft=") for s in train)
    every = [s for path in DOCUMENTS for s in document_snippets(path)]
    assert sum("-m helpers" in s.code for s in every) >= 15
    assert sum(s.code.lstrip().startswith("setup(") for s in every) >= 15


def test_the_checks_catch_what_a_reader_would_meet(tmp_path):
    """A wrong import, keyword, profile, command and flag are each reported; their right forms are not."""
    page = tmp_path / "page.md"
    page.write_text(
        "Push with `from helpers.services.hub import push_model`, or `from helpers.extras.sharing import push_model`.\n"
        "Then `push_model(model_dir, repo_id, public=True)` and `setup(needs_gpu=True, max_step=10)`;\n"
        "`setup(profile=\"gpu\")`, `setup(needs_gpu=True, max_steps=10, profile=\"cpu\")`.\n\n"
        "```bash\npython -m helpers run --max-steps 10 --epochs 3\npython -m helpers train --data x\n"
        "COURSE_PROFILE=laptop python -m helpers push --model-dir m --repo-id r\n```\n",
        encoding="utf-8")
    snippets = markdown_snippets(page.read_text(encoding="utf-8"), "page.md")
    names: dict[str, str] = {}
    for snippet in snippets:
        names.update(_imports(_python(snippet.code) or ast.Module(body=[], type_ignores=[]))[0])
    found = "\n".join(p for s in snippets for p in python_problems(s, names) + cli_problems(s) + profile_problems(s))
    assert "from helpers.services.hub import push_model: cannot be imported" in found
    assert "from helpers.extras.sharing" not in found
    assert "takes no keyword 'public'" in found
    assert "takes no keyword 'max_step'" in found and "'max_steps'" not in found
    assert "profile='gpu'" in found and "profile='cpu'" not in found
    assert "--epochs: no such flag" in found and "--max-steps" not in found
    assert "python -m helpers train: no such command" in found
    assert "COURSE_PROFILE=laptop" in found and "push --model-dir" not in found
