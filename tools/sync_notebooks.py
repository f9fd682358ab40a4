"""Build the course notebooks from their sources: ``notebooks/src/*.py`` (jupytext ``py:percent``).

    python tools/sync_notebooks.py            # write notebooks/*.ipynb and notebooks/workshop.ipynb
    python tools/sync_notebooks.py --check    # exit 1 if a committed notebook differs from its source

The sources are the reviewable, linted code of the course: edit them (in an editor, or in Jupyter with
jupytext), never the ``.ipynb`` files. What every notebook shares is added here from ``helpers.notebook.course``,
never typed seven times: the "Open in Colab" badge, the set-up cell (installing the pinned release), a
note before it, links between notebooks as Colab links, and a footer linking the next notebook and the
troubleshooting section. A source marks its set-up cell with the tag ``setup`` and holds only its last
two lines (``from helpers.notebook.session import setup`` and ``config = setup(...)``); the arguments it passes are
kept, and a notebook whose set-up asks for a GPU (``needs_gpu=True``) asks Colab for one in its metadata.

The course's own code (the preparation function, the collator, ``compute_metrics``) is in the notebooks as
editable cells, the way IPython's ``%load -s NAME FILE`` puts a definition into a cell: a source cell
starting ``# %load -s NAME helpers/module.py`` becomes, in the notebook, NAME's definition copied from that
file with the imports it needs, so the learner can change it and the cells below run the change. The rest
of that source cell (``from helpers.module import NAME``, then ``# isort: split`` so that the linter keeps
it in its cell) only stands in for it, keeping the source lintable and runnable. ``helpers/`` keeps the one copy (the command line runs it), and ``tests/test_notebooks.py``
fails when a notebook's cell and the helpers' code disagree. In the workshop, one runtime, a NAME that an
earlier stage loaded is not loaded again (that would undo the learner's change): a note points back to it.

``workshop.ipynb`` is the seven stages in one notebook and one runtime, from the same sources: one
badge, the teacher's agenda (``helpers.notebook.workshop.AGENDA``), one set-up (with the optional short run and a
data choice for learners without a Mozilla Data Collective key), a pre-flight check, each stage's cells
after its header, headings one level down. What holds for one of the two only is marked in the sources: a
cell tagged ``notebook-only`` (or ``workshop-only``) goes only into the stage's own notebook (or only into
the workshop), and inside a markdown cell the lines between ``<!-- notebook-only -->`` and
``<!-- /notebook-only -->`` (or the ``workshop-only`` pair) likewise; the markers themselves are dropped.
The output is clean (no outputs, no execution counts) with stable cell ids, so building twice gives
identical files; ``tests/test_notebooks.py`` fails when a notebook and its source disagree.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import jupytext
import nbformat

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from helpers.notebook.course import (
    EXTRAS,
    NOTEBOOK_DOCS,
    NOTEBOOKS,
    RELEASE,
    TROUBLESHOOTING_URL,
    WORKSHOP,
    colab_badge,
    colab_url,
    docs_url,
    repo_file_url,
    setup_call,
    setup_cell,
)
from helpers.notebook.workshop import agenda_table  # noqa: E402

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
SOURCE_DIR = NOTEBOOK_DIR / "src"
_SETUP_CALL = re.compile(r"from helpers\.notebook\.session import setup\n\nconfig = setup\((?P<args>.*)\)")
_SIBLING_LINK = re.compile(r"\]\((\d\d_\w+\.ipynb)\)")
_REPO_LINK = re.compile(r"\]\(\.\./(?P<path>[^)#\s]+)(?:#(?P<anchor>[^)\s]+))?\)")  # ](../docs/x.md#y)
ONLY = {False: "notebook-only", True: "workshop-only"}  # the marker or tag of text for one of the two only
_BLOCK = re.compile(r"^<!-- (?P<end>/?)(?P<kind>notebook-only|workshop-only) -->\n?", re.MULTILINE)


# IPython's own syntax (jupytext turns the source's "# %load" comment into the magic when it reads a source).
_LOAD = re.compile(r"%load -s (?P<name>\w+) (?P<path>helpers/\w+\.py)")

SETUP_NOTE = f"""## Set-up

Run this first. In Colab it installs the course at release `{RELEASE}` and mounts Google Drive, where the
**workspace** lives: the folder in which each notebook leaves its results for the next, so that a disconnect
loses nothing. Then it prints the **profile** in use: `t4`, the course's real run (`openai/whisper-small` on
Common Voice Dhivehi); `cpu`, `openai/whisper-tiny` on a few hundred of those clips, for a Colab runtime without
a GPU; `offline`, OpenAI's whisper-base learning the bundled Sinhala clips in minutes on a CPU, no network
needed; or `smoke`, a tiny random Whisper: the same code in seconds, with meaningless numbers (CI). Colab always
gets `t4` unless you pick another with `setup(profile="cpu")` (or `COURSE_PROFILE=cpu`). Any setting can be
changed here, e.g. `setup(max_steps=1000)`."""
GPU_NOTE = ("**This notebook needs a GPU:** pick *Runtime > Change runtime type > T4 GPU* before running it. On a "
            "runtime without one, the set-up cell stops and says what to do.")
STUCK = (f"**Stuck?** [Troubleshooting]({TROUBLESHOOTING_URL}): out of GPU memory, Drive full, GPU quota used "
         "up, disconnects.")


def more(name: str) -> str:
    """The footer's links to the docs pages on notebook ``name``'s topic (``helpers.notebook.course.NOTEBOOK_DOCS``)."""
    links = []
    for page, label in NOTEBOOK_DOCS[name]:
        path, _, anchor = page.partition("#")
        links.append(f"[{label}]({docs_url(path, anchor)})")
    return "**More:** " + ", ".join(links) + "."


def source_path(name: str) -> Path:
    """The source of notebook ``name`` (``01_load.ipynb`` -> ``notebooks/src/01_load.py``)."""
    return SOURCE_DIR / f"{Path(name).stem}.py"


def read_source(name: str) -> nbformat.NotebookNode:
    """The cells of notebook ``name``'s source, as jupytext reads them."""
    return jupytext.read(source_path(name), fmt="py:percent")


def title(name: str) -> str:
    """The title of notebook ``name``: its source's first heading, without the ``#``."""
    first = read_source(name).cells[0].source.splitlines()[0]
    if not first.startswith("# "):
        raise ValueError(f"{source_path(name)} must start with a markdown cell whose first line is '# <title>'")
    return first[2:].strip()


def setup_args(name: str, cells: list) -> str:
    """The arguments the source's one set-up cell (tag ``setup``) passes to ``setup``."""
    found = [cell for cell in cells if "setup" in cell.metadata.get("tags", [])]
    if len(found) != 1:
        raise ValueError(f"{source_path(name)} needs exactly one cell tagged setup, found {len(found)}")
    match = _SETUP_CALL.fullmatch(found[0].source.strip())
    if not match:
        raise ValueError(f"the set-up cell of {source_path(name)} must be exactly:\n{setup_call('...')}")
    return match.group("args")


def for_one(text: str, in_workshop: bool) -> str:
    """``text`` with the other kind's marked blocks removed and this kind's markers dropped."""
    out, position, open_kind = [], 0, None
    for match in _BLOCK.finditer(text):
        kind, end = match.group("kind"), bool(match.group("end"))
        if end != (open_kind == kind):
            raise ValueError(f"unbalanced <!-- {'/' if end else ''}{kind} --> in:\n{text}")
        if open_kind is None or open_kind == ONLY[in_workshop]:
            out.append(text[position:match.start()])
        open_kind, position = (None if end else kind), match.end()
    if open_kind:
        raise ValueError(f"<!-- {open_kind} --> is never closed in:\n{text}")
    return re.sub(r"\n{3,}", "\n\n", "".join(out) + text[position:]).strip("\n")


def load_target(cell: nbformat.NotebookNode) -> tuple[str, str] | None:
    """``(name, path)`` when ``cell`` is a source's ``%load -s NAME helpers/module.py`` cell, else ``None``."""
    if cell.cell_type != "code" or not cell.source:
        return None
    match = _LOAD.fullmatch(cell.source.lstrip("# ").splitlines()[0].strip())
    return (match.group("name"), match.group("path")) if match else None


def definition(name: str, path: str) -> tuple[str, ast.Module, ast.stmt]:
    """The source text of top-level function or class ``name`` in ``path`` (decorators included), the
    module's syntax tree and the definition's node."""
    text = (REPO_ROOT / path).read_text(encoding="utf-8")
    tree = ast.parse(text)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            return "\n".join(text.splitlines()[start - 1 : node.end_lineno]), tree, node
    raise ValueError(f"{path} defines no top-level function or class {name} (named in a %load cell)")


def _isort_key(name: str) -> tuple[int, str]:
    # isort's (and ruff's) order within one import: constants, then classes, then everything else.
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def _imports_for(tree: ast.Module, node: ast.stmt, module: str) -> str:
    """The import lines ``node`` needs in a notebook: the module's own imports of the names it uses, and
    ``from <module> import ...`` for what the module itself defines. Grouped and sorted as isort does."""
    package = module.rpartition(".")[0]
    bound: dict[str, tuple[str, str, str]] = {}  # name -> (section, statement kind, module)
    for statement in tree.body:
        if isinstance(statement, ast.ImportFrom) and statement.module != "__future__":
            source = f"{package}.{statement.module}" if statement.level else statement.module
            for alias in statement.names:
                bound[alias.asname or alias.name] = ("from", source, alias.name if not alias.asname
                                                     else f"{alias.name} as {alias.asname}")
        elif isinstance(statement, ast.Import):
            for alias in statement.names:
                bound[alias.asname or alias.name] = ("import", alias.name, alias.asname or "")
        elif isinstance(statement, (ast.FunctionDef, ast.ClassDef)):
            bound[statement.name] = ("from", module, statement.name)
        elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    bound[target.id] = ("from", module, target.id)
    used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} - {getattr(node, "name", "")}
    plain: dict[int, set[str]] = {0: set(), 1: set(), 2: set()}  # stdlib, third party, this project
    froms: dict[int, dict[str, set[str]]] = {0: {}, 1: {}, 2: {}}
    for name in sorted(used & bound.keys()):
        kind, source, what = bound[name]
        top = source.split(".")[0]
        section = 0 if top in sys.stdlib_module_names else 2 if top == package.split(".")[0] else 1
        if kind == "import":
            plain[section].add(f"import {source}" + (f" as {what}" if what else ""))
        else:
            froms[section].setdefault(source, set()).add(what)
    blocks = []
    for section in (0, 1, 2):
        lines = sorted(plain[section]) + [f"from {source} import {', '.join(sorted(names, key=_isort_key))}"
                                          for source, names in sorted(froms[section].items())]
        if lines:
            blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _check_stand_in(notebook: str, cell: nbformat.NotebookNode, name: str, path: str) -> None:
    # Anything else in a %load cell would vanish from the notebook without a word.
    module = ".".join(Path(path).with_suffix("").parts)
    rest = [line for line in cell.source.splitlines()[1:] if line.strip() and line.strip() != "# isort: split"]
    if rest != [f"from {module} import {name}"]:
        raise ValueError(f"the %load cell of {source_path(notebook)} must hold only its first line and "
                         f"'from {module} import {name}' (the notebook gets the definition instead)")


def loaded_cell(name: str, path: str) -> str:
    """The notebook cell a ``%load -s name path`` source cell becomes: the definition, with its imports."""
    code, tree, node = definition(name, path)
    module = ".".join(Path(path).with_suffix("").parts)
    header = (f"# %load -s {name} {path}\n"
              "# The course's code, yours to change: edit it and run this cell, and the cells below use your "
              f"version.\n# ({path} keeps the original, which the command line runs.)")
    imports = _imports_for(tree, node, module)
    return f"{header}\n{imports}\n\n\n{code}" if imports else f"{header}\n\n\n{code}"


def _link_notebooks(text: str) -> str:
    # Relative links break when a notebook is opened from GitHub in Colab; Colab links and links to the
    # repository's files at the release work everywhere.
    text = _REPO_LINK.sub(lambda m: f"]({repo_file_url(m.group('path'), m.group('anchor') or '')})", text)
    return _SIBLING_LINK.sub(lambda m: f"]({colab_url(m.group(1))})", text)


def _demote(text: str) -> str:
    """Markdown headings one level down (outside fenced code), for a stage inside the workshop."""
    lines, fenced = [], False
    for line in text.splitlines():
        fenced ^= line.lstrip().startswith("```")
        lines.append("#" + line if not fenced and re.match(r"#+ ", line) else line)
    return "\n".join(lines)


def _cell(kind: str, source: str, tags: list[str] | None = None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def _stage_cells(name: str, in_workshop: bool = False, loaded: set[str] | None = None) -> list[nbformat.NotebookNode]:
    """The source's cells after its header, the set-up cell expanded (or, in the workshop, left out) and
    each ``%load`` cell replaced by the code it names; ``loaded`` collects those names across the workshop's
    stages, so that a later stage does not load one again."""
    cells = read_source(name).cells
    args = setup_args(name, cells)
    loaded = set() if loaded is None else loaded
    out = []
    for cell in cells[1:]:
        if ONLY[not in_workshop] in cell.metadata.get("tags", []):
            continue
        tags = [tag for tag in cell.metadata.get("tags", []) if tag not in ONLY.values()]
        target = load_target(cell)
        if target and target[0] in loaded:
            out.append(_cell("markdown", f"*The workshop defined `{target[0]}` above, in an earlier stage: this "
                                         "stage uses that definition (change it there).*"))
        elif target:
            _check_stand_in(name, cell, *target)
            loaded.add(target[0])
            out.append(_cell("code", loaded_cell(*target), tags))
        elif "setup" in tags:
            if not in_workshop:
                note = SETUP_NOTE + ("\n\n" + GPU_NOTE if "needs_gpu=True" in args else "")
                out += [_cell("markdown", note), _cell("code", setup_cell(args, EXTRAS.get(name, ())), tags)]
        elif cell.cell_type == "markdown":
            text = _link_notebooks(for_one(cell.source, in_workshop))
            out.append(_cell("markdown", _demote(text) if in_workshop else text, tags))
        else:
            out.append(_cell("code", cell.source, tags))
    return out


def _metadata(gpu: bool) -> dict:
    metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    }
    if gpu:  # Colab offers the GPU runtime when the notebook opens; the others run on a CPU runtime
        metadata["colab"]["gpuType"] = "T4"
        metadata["accelerator"] = "GPU"
    return metadata


def _notebook(cells: list[nbformat.NotebookNode], gpu: bool) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = _metadata(gpu)
    for index, cell in enumerate(cells):
        cell.id = str(index)  # what nbstripout writes, so its hook and this script agree
        notebook.cells.append(cell)
    nbformat.validate(notebook)
    return notebook


def build(name: str) -> nbformat.NotebookNode:
    """The clean notebook ``name`` (one of ``NOTEBOOKS`` or ``WORKSHOP``): badge, set-up, footer added."""
    if name == WORKSHOP:
        return build_workshop()
    source = read_source(name)
    header = _link_notebooks(for_one(source.cells[0].source, in_workshop=False))
    position = NOTEBOOKS.index(name)
    following = NOTEBOOKS[position + 1] if position + 1 < len(NOTEBOOKS) else None
    footer = (f"**Next:** [{title(following)}]({colab_url(following)}) · " if following else
              f"**That was the last stage.** All seven in one runtime: [the workshop]({colab_url(WORKSHOP)}). ")
    cells = [_cell("markdown", f"{colab_badge(name)}\n\n{header}"), *_stage_cells(name),
             _cell("markdown", "---\n\n" + footer + STUCK + "\n\n" + more(name))]
    return _notebook(cells, gpu="needs_gpu=True" in setup_args(name, source.cells))


WORKSHOP_SETUP = "needs_gpu=True, short_run=SHORT_RUN, data=DATA"
WORKSHOP_HEADER = """# Fine-tune Whisper on Common Voice Dhivehi: the workshop

All seven stages of the Hugging Face Audio course's
[fine-tune Whisper unit](https://huggingface.co/learn/audio-course/chapter5/fine-tuning) in one notebook, for
a class: log in, load Common Voice, prepare it, look at a batch, train, evaluate and share. One GPU runtime
for the whole session, one set-up cell, one login; every stage leaves its results in the workspace on
Google Drive, so a disconnect loses nothing. (The same stages as separate notebooks, for learning alone:
{links}.)

**Runtime: a T4 GPU from start to end** (*Runtime > Change runtime type > T4 GPU*).
**Teachers:** the [teacher's guide]({guide}) has the plan below with what to say at each stage, what to do
when a learner is stuck, and what the figures should look like.

## Agenda: three hours

{agenda}

The compute times are for `SHORT_RUN = True` (at most 2,000 training and 500 test clips, 200 steps,
evaluations on 100 clips): about 20 minutes of computing in all on a free T4, from the unit's budget (the
course's 45 T4 minutes for its 500 steps, divided among passes by work measured side by side), not yet
measured on a T4. `SHORT_RUN = False` is the course's full run (500 steps on every clip, about 40 minutes of
computing): too long for one session with teaching. With the
smoke profile (a CPU, offline) the whole notebook takes about 4 minutes of CPU time.

**What the short run should show** (not yet measured on a T4): a zero-shot score near the course's
(orthographic about 167 %, normalised about 126 %: zero-shot Whisper writes Dhivehi in other scripts or
loops), then the course's normalised WER (`wer`) that falls at each evaluation, ending well below the zero-shot
score but above the full run's 14 %; 200 steps on 2,000 clips are two fifths of the course's run on less
than half its data. If `wer` has not fallen by step 200, look for a problem (the data, the learning
rate), not for a slow start. The short run keeps its files in its own folder of the workspace
(`short-run/`), so its subsets never feed a full run."""

WORKSHOP_BEFORE = f"""## The day before: set-up and pre-flight

Each learner opens this notebook on the runtime they will use, runs the set-up cell and the pre-flight
cell below, and fixes every line marked TODO. It needs, as Colab secrets (the key icon in the left bar):

- `MDC_API_KEY`: a Mozilla Data Collective API key, with the terms of the Common Voice Dhivehi release
  accepted on its page (stage 1 lists the steps). **No key?** Set `DATA = "bundled"` in the next cell:
  whisper-small then learns from the course's 96 bundled clips (Sinhala sentences spoken by espeak-ng, in
  Common Voice's layout). Every stage runs the same code in a few minutes; the figures are about a synthetic
  voice, not Dhivehi. A release downloaded in a browser and unpacked on Drive works too:
  `DATA = "/content/drive/MyDrive/cv-corpus-XX/dv"`. **The teacher shared the release?** Set the `DATA` they
  give: `DATA = "mirror:ORG/NAME"` (a private Hub dataset) or the shared Drive folder's path; no MDC key needed.
- `HF_TOKEN` (optional): a Hugging Face token with write access, to push the model in stage 6; without
  one, stage 6 writes an export folder instead.

{SETUP_NOTE.removeprefix("## Set-up").strip()}"""

# The cell before the set-up: the two choices a learner makes (plain Python: it runs before the install).
WORKSHOP_CHOICES = '''\
SHORT_RUN = True  # 2,000 clips and 200 steps at most (about 20 minutes on a T4); False: the full run
DATA = None  # None: Common Voice Dhivehi from the MDC (needs MDC_API_KEY); the teacher's mirror: "mirror:ORG/NAME"
# or the shared Drive folder's path; no key: "bundled"'''

PREFLIGHT_NOTE = """One line per check, each `ok` or what to do: the GPU, free space where the workspace lives (Drive
in Colab: small fp16 copies of the checkpoints, about 0.5 GB each, and the model), free disk on the runtime (the
full checkpoints, about 3 GB each, and the Common Voice archive),
access to the Mozilla Data Collective, and a Hub token."""


def build_workshop() -> nbformat.NotebookNode:
    """All seven stages in one notebook: agenda, one set-up, the pre-flight check, then each stage."""
    links = " · ".join(f"[{Path(name).stem[:2]}]({colab_url(name)})" for name in NOTEBOOKS)
    header = WORKSHOP_HEADER.format(links=links, guide=docs_url("workshop.md"), agenda=agenda_table())
    cells = [
        _cell("markdown", f"{colab_badge(WORKSHOP)}\n\n{header}"),
        _cell("markdown", WORKSHOP_BEFORE),
        _cell("code", WORKSHOP_CHOICES),
        _cell("code", setup_cell(WORKSHOP_SETUP, EXTRAS[WORKSHOP]), ["setup"]),
        _cell("markdown", PREFLIGHT_NOTE),
        _cell("code", "from helpers.notebook.workshop import preflight\n\nchecks = preflight(config)"),
    ]
    loaded: set[str] = set()
    for name in NOTEBOOKS:
        header = _link_notebooks(for_one(read_source(name).cells[0].source, in_workshop=True))
        cells += [_cell("markdown", _demote(header)), *_stage_cells(name, in_workshop=True, loaded=loaded)]
    cells.append(_cell("markdown", "---\n\n" + STUCK + "\n\n" + more(WORKSHOP)))
    return _notebook(cells, gpu=True)


def render(name: str) -> str:
    """The file text of notebook ``name``, as it is committed."""
    return nbformat.writes(build(name)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that notebooks/ matches the sources")
    args = parser.parse_args(argv)
    sources = sorted(p.stem for p in SOURCE_DIR.glob("*.py"))
    if sources != [Path(name).stem for name in NOTEBOOKS]:
        parser.error(f"notebooks/src holds {sources}; helpers.notebook.course.NOTEBOOKS lists {list(NOTEBOOKS)}")
    stale = []
    for name in (*NOTEBOOKS, WORKSHOP):
        path = NOTEBOOK_DIR / name
        text = render(name)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        elif not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python tools/sync_notebooks.py")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
