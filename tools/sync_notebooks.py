"""Build the course notebooks from their sources: ``notebooks/src/*.py`` (jupytext ``py:percent``).

    python tools/sync_notebooks.py            # write notebooks/*.ipynb and notebooks/workshop.ipynb
    python tools/sync_notebooks.py --check    # exit 1 if a committed notebook differs from its source

The sources are the reviewable, linted code of the course: edit them (in an editor, or in Jupyter with
jupytext), never the ``.ipynb`` files. What every notebook shares is added here from ``helpers.course``,
never typed seven times: the "Open in Colab" badge, the set-up cell (installing the pinned release), a
note before it, links between notebooks as Colab links, and a footer linking the next notebook and the
troubleshooting section. A source marks its set-up cell with the tag ``setup`` and holds only its last
two lines (``from helpers.colab import setup`` and ``config = setup(...)``); the arguments it passes are
kept, and a notebook whose set-up asks for a GPU (``needs_gpu=True``) asks Colab for one in its metadata.

``workshop.ipynb`` is the seven stages in one notebook and one runtime, from the same sources: one
badge, one set-up (with the optional short run), each stage's cells after its header, headings one level
down. The output is clean (no outputs, no execution counts) with stable cell ids, so building twice gives
identical files; ``tests/test_notebooks.py`` fails when a notebook and its source disagree.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import jupytext
import nbformat

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from helpers.course import (  # noqa: E402
    NOTEBOOKS,
    RELEASE,
    TROUBLESHOOTING_URL,
    WORKSHOP,
    colab_badge,
    colab_url,
    setup_call,
    setup_cell,
)

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
SOURCE_DIR = NOTEBOOK_DIR / "src"
_SETUP_CALL = re.compile(r"from helpers\.colab import setup\n\nconfig = setup\((?P<args>.*)\)")
_SIBLING_LINK = re.compile(r"\]\((\d\d_\w+\.ipynb)\)")

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


def _link_notebooks(text: str) -> str:
    # Relative links break when a notebook is opened from GitHub in Colab; Colab links work everywhere.
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


def _stage_cells(name: str, in_workshop: bool = False) -> list[nbformat.NotebookNode]:
    """The source's cells after its header, the set-up cell expanded (or, in the workshop, left out)."""
    cells = read_source(name).cells
    args = setup_args(name, cells)
    out = []
    for cell in cells[1:]:
        tags = cell.metadata.get("tags", [])
        if "setup" in tags:
            if not in_workshop:
                note = SETUP_NOTE + ("\n\n" + GPU_NOTE if "needs_gpu=True" in args else "")
                out += [_cell("markdown", note), _cell("code", setup_cell(args), tags)]
        elif cell.cell_type == "markdown":
            text = _link_notebooks(cell.source)
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
    header = _link_notebooks(source.cells[0].source)
    position = NOTEBOOKS.index(name)
    following = NOTEBOOKS[position + 1] if position + 1 < len(NOTEBOOKS) else None
    footer = (f"**Next:** [{title(following)}]({colab_url(following)}) · " if following else
              f"**That was the last stage.** All seven in one runtime: [the workshop]({colab_url(WORKSHOP)}). ")
    cells = [_cell("markdown", f"{colab_badge(name)}\n\n{header}"), *_stage_cells(name),
             _cell("markdown", "---\n\n" + footer + STUCK)]
    return _notebook(cells, gpu="needs_gpu=True" in setup_args(name, source.cells))


WORKSHOP_HEADER = """# Fine-tune Whisper on Common Voice Dhivehi: the workshop

All seven stages of the Hugging Face Audio course's
[fine-tune Whisper unit](https://huggingface.co/learn/audio-course/chapter5/fine-tuning) in one notebook and
one runtime, for a session where seven runtimes and seven set-ups would not fit: load Common Voice, prepare
it, look at a batch, train, evaluate and share. The cells are those of the seven notebooks ({links}), built
from the same sources; each stage begins with what it does and why.

**Runtime: a GPU** (*Runtime > Change runtime type > T4 GPU*). **Before the session:** each learner needs a
Mozilla Data Collective API key, with the Common Voice Dhivehi terms accepted (stage 1 lists the steps), and,
to push, a Hugging Face token; both as Colab secrets (`MDC_API_KEY`, `HF_TOKEN`).

**Time on a free Colab T4** (estimates, not measured on a T4): with `SHORT_RUN = True` (at most 2,000 training
and 500 test clips, 200 steps, two evaluations of 100 clips) about 45 minutes: set-up 2, download 5-10,
preparing 3, zero-shot scoring 5, training 20, scoring 3, sharing 5. With `SHORT_RUN = False`, the course's
full run (500 steps on every clip), about 2 hours. The smoke profile (a CPU, offline) takes about 3 minutes
with the short run on two CPU cores. The short run keeps its files in its own folder of the workspace (`short-run/`), so its subsets
never feed the seven notebooks' full run; its WER stays well above the course's 14 %."""


def build_workshop() -> nbformat.NotebookNode:
    """All seven stages in one notebook: one set-up (``needs_gpu=True, short_run=SHORT_RUN``), then each stage."""
    links = " · ".join(f"[{Path(name).stem[:2]}]({colab_url(name)})" for name in NOTEBOOKS)
    cells = [
        _cell("markdown", f"{colab_badge(WORKSHOP)}\n\n{WORKSHOP_HEADER.format(links=links)}"),
        _cell("markdown", f"{SETUP_NOTE}\n\n{GPU_NOTE}\n\n`SHORT_RUN` chooses between the shortened run and the "
                          "course's full one (times above)."),
        _cell("code", "SHORT_RUN = True  # fewer clips and steps (about 45 minutes on a T4); False: the full run"),
        _cell("code", setup_cell("needs_gpu=True, short_run=SHORT_RUN"), ["setup"]),
    ]
    for name in NOTEBOOKS:
        header = _link_notebooks(read_source(name).cells[0].source)
        cells += [_cell("markdown", _demote(header)), *_stage_cells(name, in_workshop=True)]
    cells.append(_cell("markdown", "---\n\n" + STUCK))
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
        parser.error(f"notebooks/src holds {sources}; helpers.course.NOTEBOOKS lists {list(NOTEBOOKS)}")
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
