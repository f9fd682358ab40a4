"""The kernel a notebook runs in: readable outputs, Google Drive, whether a person is looking.

:func:`helpers.notebook.session.setup` calls these: quiet libraries, progress bars that a saved copy shows
finished, a ``CourseError`` shown as its one sentence, and Google Drive mounted once with a sentence saying
why. The same code runs in a plain Jupyter kernel, offline, with no project-specific switch. Colab's secrets
are :mod:`helpers.runtime.secrets`.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import datasets
import tqdm.auto
import tqdm.std
import transformers
from safetensors import SafetensorError

try:  # IPython comes with Jupyter and Colab; the command line runs without it
    from IPython import get_ipython
except ImportError:  # pragma: no cover - every test environment has IPython
    def get_ipython():
        return None

from helpers.runtime.errors import CourseError, explain_disk_error
from helpers.runtime.secrets import in_colab
from helpers.runtime.workspace import WORKSPACE_ENV

# Set by batch runners (scripts/run_notebooks.py) that execute notebooks online with nobody to log in:
# login() then goes on without showing the login prompt. Notebooks never need it.
NONINTERACTIVE_ENV = "COURSE_NONINTERACTIVE"


def interactive() -> bool:
    """True in a kernel a person may be looking at; False when a batch runner says it is one."""
    if os.environ.get(NONINTERACTIVE_ENV, "") not in ("", "0"):
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def text_progress_bars() -> None:
    """Outside Colab, make ``tqdm.auto`` (datasets, transformers, huggingface_hub) draw text progress bars.

    A widget bar is saved as the text of its first frame ("0%"): an executed notebook saved by Jupyter,
    nbclient or nbconvert would show every bar at 0 %. A text bar redraws in place with carriage returns, so
    the saved copy ends on its last frame. Called before those libraries are imported (they bind
    ``tqdm.auto.tqdm`` when imported); Colab keeps its widgets, which it renders well.
    """
    tqdm.auto.tqdm, tqdm.auto.trange = tqdm.std.tqdm, tqdm.std.trange


def quiet() -> None:
    """Readable notebook outputs: library warnings and info logs off, errors still shown."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # else a fork warning per datasets worker
    if not in_colab():
        text_progress_bars()
    transformers.logging.set_verbosity_error()
    datasets.logging.set_verbosity_error()
    for name in ("huggingface_hub", "accelerate", "torch.distributed.elastic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Deprecation notices are for library authors, not learners; they would repeat in every cell.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*non-GUI backend.*")


def short_course_errors() -> None:
    """Show a ``CourseError`` as its one sentence instead of a traceback wall (the cell still fails)."""
    shell = get_ipython()
    if shell is None:
        return

    def handler(shell, etype, value, tb, tb_offset=None):  # IPython's custom-exception signature
        if issubclass(etype, CourseError):
            sentence = [f"{etype.__name__}: {value}"]
        else:  # a full or read-only disk, in whichever library's words, is one sentence too; the rest a traceback
            disk = explain_disk_error(value, _workspace_root(), then="then run this cell again")
            if disk is None:
                sentence = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
            else:
                sentence = [f"{etype.__name__}: {disk}"]
        # Shown as the cell's error output, one line for the whole traceback: a printed message alone would
        # leave no error in the notebook, and nbmake (CI) would pass a notebook that stopped here.
        shell._showtraceback(etype, value, sentence)
        return sentence

    # Not every Exception: IPython hands these a cell's SyntaxError too, before its own handling of it.
    shell.set_custom_exc((CourseError, OSError, RuntimeError, SafetensorError), handler)


def _workspace_root() -> Path | None:
    """Where a notebook writes (for a disk error that names no file), or None when unset."""
    return Path(os.environ[WORKSPACE_ENV]) if os.environ.get(WORKSPACE_ENV) else None


def mount_drive() -> None:
    """Mount Google Drive in Colab (once per runtime) and say why; say what it means when it cannot."""
    if os.environ.get(WORKSPACE_ENV) or Path("/content/drive/MyDrive").is_dir():
        return
    print("Mounting Google Drive: the workspace (prepared data, checkpoints, results) lives there, so a "
          "disconnect loses nothing. Large downloads (the Common Voice archive) stay on this runtime's own disk.")
    try:
        from google.colab import drive  # type: ignore[import-not-found]  # only Colab has it

        drive.mount("/content/drive")
    except Exception as error:  # declined, or Drive unavailable: work locally, and say what that means
        print(f"Google Drive is not mounted ({type(error).__name__}): the workspace is on the Colab disk and "
              "is lost when the runtime disconnects.")
