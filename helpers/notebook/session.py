"""What a notebook's cells call around the course's code: the set-up, the Hub login, the workspace's load and
save, and where checkpoints go.

A learner's cell imports the course's pieces (``helpers.data``, ``preparation``, ``collator``, ``metrics``,
``model``, ``training``, ``evaluation``), what is shown (:mod:`.display`, :mod:`.plots`) and this module, never
the machinery behind it (``helpers.runtime``, ``helpers.services``): tests/test_architecture.py checks it.
Most names here are that machinery's, handed on; :func:`setup` and :func:`login` are this module's own.

:func:`setup` is every notebook's set-up cell (``helpers.notebook.course.setup_cell`` installs the course in
Colab first): readable outputs, Google Drive mounted once with a sentence saying why, the profile and recipe
in use and why, and this notebook's run for the stamps :mod:`helpers.runtime.workspace` checks. The same
code runs in a plain Jupyter kernel, offline and without a token, with no project-specific switch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import huggingface_hub
import torch

from helpers.config import (
    CPU_PROFILES,
    PROFILE_ENV,
    REPO_ROOT,
    CourseConfig,
    describe,
    get_config,
    workspace_dir,
)
from helpers.evaluation import evaluate_once
from helpers.runtime.colab import interactive, mount_drive, quiet, short_course_errors
from helpers.runtime.device import pipeline_placement
from helpers.runtime.errors import CourseError, DiskError, check_writable, explain_disk_error
from helpers.runtime.mirror import describe_cost
from helpers.runtime.secrets import SecretNotGranted, in_colab
from helpers.runtime.workspace import (
    WORKSPACE_ENV,
    artifact_path,
    checkpoint_copies_on_drive,
    embed_audio,
    helpers_version,
    load_from_workspace,
    runtime_dir,
    save_to_workspace,
    saved_path,
    saving_to_workspace,
    set_run,
)
from helpers.services.hub import find_token, hub_reachable, login_status, who_am_i
from helpers.services.mdc import find_common_voice

__all__ = [
    # this module's own
    "SHORT_RUN", "SHORT_RUN_FOLDER", "setup", "login",
    # handed on: Colab, the Hub, the MDC's catalogue
    "in_colab", "login_status", "who_am_i", "find_common_voice",
    # handed on: the workspace's load and save
    "save_to_workspace", "load_from_workspace", "saving_to_workspace", "saved_path", "artifact_path", "embed_audio",
    "evaluate_once",
    # handed on: checkpoints and inference
    "runtime_dir", "checkpoint_copies_on_drive", "describe_cost", "pipeline_placement",
]


# The workshop's shortened run, per profile: fewer clips and steps, its own folder in the workspace (its
# subsets must never feed the full course's stages). On a free T4 the whole workshop then computes for about
# 20 minutes (the unit's budget, benchmarks/budget.py); the smoke profile's about 4 minutes of CPU time.
SHORT_RUN: dict[str, dict[str, Any]] = {
    "t4": dict(max_train_samples=2000, max_test_samples=500, max_steps=200, eval_steps=100, save_steps=100,
               validation_size=100),
    "smoke": dict(max_train_samples=32, max_test_samples=8, max_steps=10, eval_steps=5, save_steps=5,
                  logging_steps=5),
    # The notebooks' 20 steps (10 left the model looping in Sinhala script: CER 139 %), and 4 test clips for
    # the zero-shot and fine-tuned passes: the whole main command (the seven notebooks, then this) in about
    # 6 minutes on 2 CPU cores (docs/offline-run.md).
    "offline": dict(max_test_samples=4),
    "cpu": dict(max_train_samples=200, max_test_samples=50, max_steps=50, eval_steps=50, save_steps=50),
}
SHORT_RUN_FOLDER = "short-run"


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
    short_course_errors()
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
    print(f"Course code: helpers {helpers_version()} in {REPO_ROOT}")
    print(f"Workspace: {_writable_workspace(config.profile)}")
    return config


def _writable_workspace(profile: str) -> Path:
    """The profile's workspace, checked now, not when the notebook saves what it made minutes later."""
    then = "then run the set-up cell again"
    try:
        folder = workspace_dir(profile)  # may make the folder: a read-only Drive stops here
    except OSError as error:
        sentence = explain_disk_error(error, then=then)
        if sentence is None:
            raise
        raise DiskError(sentence) from error
    return check_writable(folder, then=then)


def login() -> None:
    """Use a token that is already there (``HF_TOKEN``, a Colab secret, a cached login); else offer the login.

    Offline, or in a batch run with nobody to log in, it says that pushing will be skipped and goes on.
    The token itself is never printed.
    """
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
        huggingface_hub.notebook_login()
        return
    print("No Hugging Face token and nobody to ask for one: continuing without logging in; pushing will be "
          "skipped.")
