"""Execute the seven course notebooks in order, then the workshop, as a learner would; keep the executed copies.

    .venv/bin/python scripts/run_notebooks.py                      # offline profile, ./workspace
    COURSE_PROFILE=smoke .venv/bin/python scripts/run_notebooks.py # the tiny random model, as CI runs them
    .venv/bin/python scripts/run_notebooks.py --workspace /tmp/ws --only 04_train 05_evaluate

Each notebook runs with nbclient in a fresh kernel started in ``notebooks/`` (as Jupyter and nbmake do),
with ``COURSE_WORKSPACE`` pointing at the workspace, so the stages hand their artifacts to each other
there (the workshop, in its shortened run, keeps its own folder in it). The executed copies, with their
outputs and plots, go to ``<workspace>/executed/`` (with each kernel's own log beside it); the notebooks in
``notebooks/`` stay clean. Progress bars are saved as their last frame (text bars, with the carriage returns
of their redraws applied). The profile is ``offline`` unless ``COURSE_PROFILE`` says otherwise: OpenAI's real
multilingual whisper-base fine-tuned on the bundled Sinhala clips, about 6 minutes on 2 CPU cores
(docs/offline-run.md). A summary per notebook follows: time, plots, and anything written to stderr (warnings).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from helpers.config import get_config  # noqa: E402
from helpers.notebook.course import NOTEBOOKS, WORKSHOP  # noqa: E402
from helpers.runtime.colab import NONINTERACTIVE_ENV  # noqa: E402

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
# A real model learning (whisper-base on the Sinhala clips); CI's nbmake run keeps the faster smoke profile.
DEFAULT_PROFILE = "offline"
_PROGRESS_BAR = re.compile(r"\|\s*\d+/\d+ \[")


def output_summary(notebook: nbformat.NotebookNode) -> dict:
    """Counts a reader cares about in an executed notebook: plots, audio players, stderr lines, errors."""
    plots = audio = errors = 0
    stderr: list[str] = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            plots += "image/png" in data
            audio += "<audio" in str(data.get("text/html", ""))
            errors += output.get("output_type") == "error"
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                # a progress bar's last frame ("name: 100%|####| 72/72 [00:03<00:00, ...]") is not a warning
                stderr += [line for line in output.get("text", "").splitlines()
                           if line.strip() and not _PROGRESS_BAR.search(line)]
    return {"plots": plots, "audio": audio, "errors": errors, "stderr": stderr}


def run_notebook(name: str, workspace: Path, timeout: int) -> tuple[nbformat.NotebookNode, float, str | None]:
    """Execute ``notebooks/<name>``; return the executed notebook, seconds taken and the error, if any."""
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    # coalesce_streams applies each progress bar's carriage returns: the saved copy shows its last frame.
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", coalesce_streams=True,
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    executed = workspace / "executed" / name
    executed.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    error = None
    # The kernel process's own messages (start-up and shutdown notices) go to a log file, not the screen;
    # what the cells print is in the executed notebook.
    with open(executed.with_suffix(".kernel.log"), "w") as kernel_log:
        try:
            client.execute(stderr=kernel_log)
        except CellExecutionError as failure:
            lines = re.sub(r"\x1b\[[0-9;]*m", "", str(failure)).strip().splitlines()  # no terminal colours
            error = lines[-1] if lines else repr(failure)
    seconds = time.perf_counter() - start
    nbformat.write(notebook, executed)
    return notebook, seconds, error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path,
                        default=Path(os.environ.get("COURSE_WORKSPACE", REPO_ROOT / "workspace")),
                        help="folder the stages share (default: COURSE_WORKSPACE, else ./workspace)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these notebooks (e.g. 04_train, workshop), in course order")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds one cell may take")
    args = parser.parse_args(argv)

    names = [*NOTEBOOKS, WORKSHOP]
    if args.only:
        wanted = {Path(n).stem for n in args.only}
        unknown = wanted - {Path(n).stem for n in names}
        if unknown:
            parser.error(f"unknown notebook(s): {', '.join(sorted(unknown))}; choose from {', '.join(names)}")
        names = [n for n in names if Path(n).stem in wanted]
    workspace = args.workspace.resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    # The kernels inherit these: the shared workspace, the offline profile unless asked otherwise, and no
    # login prompt (online without a token, nobody is there to log in; offline, 00 goes on by itself).
    os.environ["COURSE_WORKSPACE"] = str(workspace)
    os.environ.setdefault("COURSE_PROFILE", DEFAULT_PROFILE)
    os.environ[NONINTERACTIVE_ENV] = "1"
    config = get_config(os.environ["COURSE_PROFILE"])
    missing = [path for path in (config.model, config.data) if Path(path).is_absolute() and not Path(path).exists()]
    if missing:  # the offline profile's model and clips are made by the set-up, not shipped
        print(f"Profile {config.profile} needs {' and '.join(missing)}: run 'bash scripts/setup.sh' first.")
        return 2
    print(f"Running {len(names)} notebook(s), profile {os.environ['COURSE_PROFILE']}, workspace {workspace}")

    total = 0.0
    for name in names:
        print(f"{name} ...", flush=True)
        notebook, seconds, error = run_notebook(name, workspace, args.timeout)
        total += seconds
        summary = output_summary(notebook)
        print(f"  {seconds:6.1f} s, {summary['plots']} plot(s), {summary['audio']} audio player(s), "
              f"{len(summary['stderr'])} stderr line(s) -> {workspace / 'executed' / name}")
        for line in summary["stderr"][:10]:
            print(f"    stderr: {line[:160]}")
        if error:
            print(f"  FAILED: {error}")
            print(f"Stopped: later notebooks need what {name} makes. The executed copy shows the error.")
            return 1
    print(f"All {len(names)} notebook(s) ran in {total:.0f} s; executed copies in {workspace / 'executed'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
