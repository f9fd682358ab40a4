"""The runtime a notebook runs in: its set-up, Google Drive, Colab secrets and the Hub login.

Every notebook's set-up cell (``helpers.notebook.course.setup_cell``) installs the course in Colab and then calls
:func:`setup`: readable outputs (quiet libraries, progress bars that a saved copy shows finished), Google
Drive mounted once with a sentence saying why, the profile and recipe in use and why, and this notebook's
run for the stamps :mod:`helpers.runtime.workspace` checks. The same code runs in a plain Jupyter kernel, offline
and without a token, with no project-specific switch.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from helpers.config import (
    CPU_PROFILES,
    PROFILE_ENV,
    REPO_ROOT,
    WORKSPACE_ENV,
    CourseConfig,
    describe,
    get_config,
    in_colab,
    workspace_dir,
)
from helpers.runtime.errors import (
    CourseError,
    DiskError,
    check_writable,
    explain_disk_error,
)
from helpers.runtime.workspace import set_run

# Set by batch runners (scripts/run_notebooks.py) that execute notebooks online with nobody to log in:
# login() then goes on without showing the login prompt. Notebooks never need it.
NONINTERACTIVE_ENV = "COURSE_NONINTERACTIVE"

# The workshop's shortened run, per profile: fewer clips and steps, its own folder in the workspace (its
# subsets must never feed the full course's stages). On a free T4 the whole workshop then takes about
# 45 minutes (an estimate, see the workshop notebook); the smoke profile's about 4 minutes of CPU time.
SHORT_RUN: dict[str, dict[str, Any]] = {
    "t4": dict(max_train_samples=2000, max_test_samples=500, max_steps=200, eval_steps=100, save_steps=100,
               validation_size=100),
    "smoke": dict(max_train_samples=32, max_test_samples=8, max_steps=10, eval_steps=5, save_steps=5,
                  logging_steps=5),
    # The whole main command (the seven notebooks, then this) fits about 10 minutes on 2 CPU cores: half the
    # notebooks' steps, and 4 test clips for the zero-shot and fine-tuned passes.
    # Measured: Sinhala script, but looping; CER 246 -> 139 % (the notebooks' 20 steps: 263 -> 69 %).
    "offline": dict(max_steps=10, eval_steps=10, save_steps=10, max_test_samples=4),
    "cpu": dict(max_train_samples=200, max_test_samples=50, max_steps=50, eval_steps=50, save_steps=50),
}
SHORT_RUN_FOLDER = "short-run"


def interactive() -> bool:
    """True in a kernel a person may be looking at; False when a batch runner says it is one."""
    if os.environ.get(NONINTERACTIVE_ENV, "") not in ("", "0"):
        return False
    try:
        from IPython import get_ipython
    except ImportError:
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
    import tqdm.auto
    import tqdm.std

    tqdm.auto.tqdm, tqdm.auto.trange = tqdm.std.tqdm, tqdm.std.trange


def quiet() -> None:
    """Readable notebook outputs: library warnings and info logs off, errors still shown."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # else a fork warning per datasets worker
    if not in_colab():
        text_progress_bars()
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    datasets.logging.set_verbosity_error()
    for name in ("huggingface_hub", "accelerate", "torch.distributed.elastic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Deprecation notices are for library authors, not learners; they would repeat in every cell.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*non-GUI backend.*")


def _short_course_errors() -> None:
    """Show a ``CourseError`` as its one sentence instead of a traceback wall (the cell still fails)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def handler(shell, etype, value, tb, tb_offset=None):  # IPython's custom-exception signature
        if issubclass(etype, CourseError):
            sentence = [f"{etype.__name__}: {value}"]
        else:  # a full or read-only disk, in whichever library's words, is one sentence too; the rest a traceback
            disk = explain_disk_error(value, _workspace_of_this_run(), then="then run this cell again")
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


def _workspace_of_this_run() -> Path | None:
    """Where a notebook writes (for an error that names no file), or None before a run is set up."""
    try:
        return workspace_dir(os.environ[PROFILE_ENV])
    except (KeyError, OSError):
        return None


def mount_drive() -> None:
    """Mount Google Drive in Colab (once per runtime) and say why; say what it means when it cannot."""
    if os.environ.get(WORKSPACE_ENV) or Path("/content/drive/MyDrive").is_dir():
        return
    print("Mounting Google Drive: the workspace (prepared data, checkpoints, results) lives there, so a "
          "disconnect loses nothing. Large downloads (the Common Voice archive) stay on this runtime's own disk.")
    try:
        from google.colab import drive  # type: ignore[import-not-found]

        drive.mount("/content/drive")
    except Exception as error:  # declined, or Drive unavailable: work locally, and say what that means
        print(f"Google Drive is not mounted ({type(error).__name__}): the workspace is on the Colab disk and "
              "is lost when the runtime disconnects.")


def _use_short_run_folder(profile: str) -> None:
    root = workspace_dir(profile).parent
    if root.name != SHORT_RUN_FOLDER:
        os.environ[WORKSPACE_ENV] = str(root / SHORT_RUN_FOLDER)


def setup(drive: bool = True, needs_gpu: bool = False, short_run: bool = False, **overrides: Any) -> CourseConfig:
    """Prepare a notebook: quiet logs, Drive in Colab, print profile, recipe and workspace; return the config.

    ``overrides`` go to :func:`helpers.config.get_config` (e.g. ``setup(max_steps=100)``). ``needs_gpu``
    (notebooks 04 and 05) stops a real run on a Colab runtime without a GPU with what to do, instead of
    training or evaluating whisper-small on two vCPUs for hours. ``short_run`` (the workshop) applies
    :data:`SHORT_RUN` for the profile, under its own folder of the workspace; ``overrides`` still win
    (``data=None`` keeps the profile's data; ``data="bundled"`` picks the 96 bundled clips). The
    profile is then kept for the rest of this kernel, and this notebook's artifacts are stamped with, and
    checked against, this run.
    """
    if "data" in overrides and overrides["data"] is None:  # the workshop's DATA = None: the profile's own data
        del overrides["data"]
    quiet()
    _short_course_errors()
    if drive and in_colab():
        mount_drive()
    if short_run:
        profile = get_config(**overrides).profile
        overrides = {**SHORT_RUN[profile], **overrides}
        _use_short_run_folder(profile)
    config = get_config(**overrides)
    os.environ[PROFILE_ENV] = config.profile  # later calls in this kernel see the same profile and workspace
    print(describe(config))
    if short_run:
        print(f"Short run: {config.max_train_samples} training and {config.max_test_samples} test clips at most, "
              f"{config.max_steps} steps, in its own folder of the workspace.")
    if needs_gpu and config.profile not in CPU_PROFILES:
        import torch

        if not torch.cuda.is_available():
            cpu = get_config("cpu")
            message = (f"This notebook runs {config.model} and needs a GPU, and this runtime has none. In Colab: "
                       "Runtime > Change runtime type > T4 GPU, then run the notebook again (the workspace on "
                       f"Drive is kept). If your GPU quota is used up, set {PROFILE_ENV}=cpu (or pass "
                       f'profile="cpu" to setup in the set-up cell) and start again from 01: it fine-tunes '
                       f"{cpu.model} (real, small, multilingual) on {cpu.max_train_samples} Common Voice clips "
                       f"for {cpu.max_steps} steps with its encoder frozen, in about 30 minutes on this CPU (an "
                       "estimate), in its own workspace folder; expect a falling CER and a WER far above the course's "
                       "14 %.")
            if in_colab():
                raise CourseError(message)
            print(f"Warning: {message}")
    set_run(config)
    from helpers.runtime.workspace import helpers_version

    print(f"Course code: helpers {helpers_version()} in {REPO_ROOT}")
    print(f"Workspace: {_writable_workspace(config.profile)}")
    return config


def _writable_workspace(profile: str) -> Path:
    """The profile's workspace, checked now, not when the notebook saves what it made minutes later."""
    then = "then run the set-up cell again"
    try:
        folder = workspace_dir(profile)  # makes the folder: a read-only Drive stops here
    except OSError as error:
        sentence = explain_disk_error(error, then=then)
        if sentence is None:
            raise
        raise DiskError(sentence) from error
    return check_writable(folder, then=then)


class SecretNotGranted(CourseError):
    """A Colab secret exists but this notebook was not given access to it; the message says how to grant it."""


def colab_secret(name: str) -> str | None:
    """The Colab secret ``name`` (never printed); ``None`` outside Colab or when there is no such secret.

    Raises ``SecretNotGranted`` when the secret exists but this notebook may not read it: Colab asks once
    per notebook, and a learner who closed that prompt would otherwise read "no key" and make another.
    """
    if not in_colab():
        return None
    try:
        from google.colab import userdata  # type: ignore[import-not-found]
        from google.colab.errors import Error as ColabError  # type: ignore[import-not-found]
    except ImportError:  # a Colab-like runtime without Colab's modules
        return None
    try:
        return userdata.get(name) or None
    except userdata.NotebookAccessError as error:
        raise SecretNotGranted(
            f"The Colab secret {name} exists but this notebook may not read it: open the key icon in the left bar, "
            f"switch on 'Notebook access' for {name}, then run this cell again."
        ) from error
    except ColabError:  # no such secret (SecretNotFoundError), or Colab did not answer in time
        return None


def login() -> None:
    """Use a token that is already there (``HF_TOKEN``, a Colab secret, a cached login); else offer the login.

    Offline, or in a batch run with nobody to log in, it says that pushing will be skipped and goes on.
    The token itself is never printed.
    """
    from helpers.services.hub import find_token, hub_reachable

    try:
        token = find_token()
    except SecretNotGranted as error:  # said here; 06 then exports instead of pushing
        print(error)
        token = None
    if token:
        print("A Hugging Face token was found (HF_TOKEN, a Colab secret or a cached login); it is not shown.")
        return
    if not hub_reachable():
        print("No Hugging Face token, and the Hub cannot be reached (offline): pushing will be skipped. Every "
              "other stage works the same; 06_share writes an export folder instead of pushing.")
        return
    if in_colab() or interactive():
        print("No token found: log in below with a token that has write access "
              "(https://huggingface.co/settings/tokens). This login lasts as long as this runtime; a Colab "
              "secret named HF_TOKEN works in every notebook and every runtime.")
        from huggingface_hub import notebook_login

        notebook_login()
        return
    print("No Hugging Face token and nobody to ask for one: continuing without logging in; pushing will be "
          "skipped.")
