"""The course's map: the notebooks, where they live, the release they install, and what the course reports.

Everything a notebook links to or installs is written here once: the repository (:data:`REPO_URL`), the
pinned release every set-up cell installs and every badge opens (:data:`RELEASE`), the set-up cell itself
(:func:`setup_cell`), the course unit and blog post, and the figures the course reports for the real run
(:data:`COURSE_FIGURES`). ``tools/sync_notebooks.py`` builds the notebooks from their sources with these.
"""

from __future__ import annotations

from helpers import __version__

# Where the course is published: every badge, link and set-up cell points here. A fork publishes under its own
# name with `python -m tools.release VERSION --repo-url https://github.com/OWNER/NAME` (docs/versions-and-releases.md).
REPO_URL = "https://github.com/whisper-course/whisper-finetune-companion"
# The tag every set-up cell installs and every badge opens, so a learner who re-runs a notebook mid-course
# gets the code the notebook was written against, not whatever main has become: the package's version
# (helpers/__init__.py), which `python -m tools.release` bumps, tags and checks.
RELEASE = f"v{__version__}"
# What the set-up cell installs with: the versions the test suite passed with (tools/constraints.py).
CONSTRAINTS = "constraints.txt"
NOTEBOOK_FOLDER = "notebooks"
# Where the set-up cell puts the project in Colab (an editable install keeps data/ and helpers/ together).
COLAB_CHECKOUT = "/content/whisper-finetune-companion"

NOTEBOOKS: tuple[str, ...] = (
    "00_hub_login.ipynb",
    "01_load.ipynb",
    "02_preprocess.ipynb",
    "03_collate.ipynb",
    "04_train.ipynb",
    "05_evaluate.ipynb",
    "06_share.ipynb",
)
# All seven stages in one notebook and one runtime, built from the same sources (tools/sync_notebooks.py).
WORKSHOP = "workshop.ipynb"

COURSE_UNIT = "https://huggingface.co/learn/audio-course/chapter5/fine-tuning"
BLOG_POST = "https://huggingface.co/blog/fine-tune-whisper"
# Why the course's collator never strips the start token (it compares with bos_token_id).
COLLATOR_ISSUE = "https://github.com/huggingface/audio-transformers-course/issues/85"

# What the course reports for whisper-small on Common Voice 13 Dhivehi, in percent: "normalised" is after
# Whisper's BasicTextNormalizer ("wer", as the course names it and we do), "orthographic" on the raw text
# ("wer_ortho").
COURSE_FIGURES: dict[str, dict[str, float]] = {
    "zero-shot": {"wer_ortho": 167.3, "wer": 125.7},
    "fine-tuned": {"wer_ortho": 63.9, "wer": 14.1},
}


def colab_url(notebook: str) -> str:
    """The Colab link that opens ``notebook`` from the repository at :data:`RELEASE`."""
    path = REPO_URL.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{path}/blob/{RELEASE}/{NOTEBOOK_FOLDER}/{notebook}"


def colab_badge(notebook: str) -> str:
    """Markdown for the "Open in Colab" badge of ``notebook``."""
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(notebook)})"


def repo_file_url(path: str, anchor: str = "") -> str:
    """A file of the repository at :data:`RELEASE` on GitHub (links that work from Colab, too)."""
    return f"{REPO_URL}/blob/{RELEASE}/{path}" + (f"#{anchor}" if anchor else "")


def docs_url(page: str, anchor: str = "") -> str:
    """A page of the repository's ``docs/`` at :data:`RELEASE` on GitHub."""
    return repo_file_url(f"docs/{page}", anchor)


TROUBLESHOOTING_URL = docs_url("troubleshooting.md")
# The docs pages each notebook's footer links, beyond troubleshooting: where its topic goes deeper.
NOTEBOOK_DOCS: dict[str, tuple[tuple[str, str], ...]] = {
    "00_hub_login.ipynb": (("common-voice-and-hub.md", "the Hub token"),),
    "01_load.ipynb": (("common-voice-and-hub.md", "Common Voice and other data"),),
    "02_preprocess.ipynb": (("troubleshooting.md#bad-data", "bad data"), ("benchmarks.md", "benchmarks")),
    "03_collate.ipynb": (("benchmarks.md", "log-mel at batch time"),),
    "04_train.ipynb": (("checkpoints-and-drive.md", "checkpoints and Drive"), ("lora-and-8bit.md", "LoRA and 8-bit"),
                       ("several-gpus.md", "several GPUs")),
    "05_evaluate.ipynb": (("metrics.md", "which WER is which"), ("evaluation-speed.md", "evaluation speed")),
    "06_share.ipynb": (("ctranslate2.md", "CTranslate2"), ("profiles-and-recipes.md", "the whole path in one command")),
    "workshop.ipynb": (("workshop.md", "the teacher's guide"), ("README.md", "all the documentation")),
}

# What each notebook that offers an extra installs with the course (pyproject.toml's optional dependencies):
# LoRA in 04, the CTranslate2 export in 06, both in the workshop's one runtime.
EXTRAS: dict[str, tuple[str, ...]] = {
    "04_train.ipynb": ("lora",),
    "06_share.ipynb": ("ct2",),
    WORKSHOP: ("lora", "ct2"),
}

# The set-up cell's first part: in Colab, fetch the pinned release and install it beside the runtime's own
# packages (helpers.notebook.colab_install, imported from the fetched folder), saying what it does and how long
# it took, and stopping with the tool's own error when a step fails. Elsewhere it does nothing.
_INSTALL = f'''# Set-up. In Colab: install the course at release {RELEASE}, beside the runtime's own packages.
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess
    import time

    repo, release = "{REPO_URL}", "{RELEASE}"
    checkout, extras = "{COLAB_CHECKOUT}", {{extras}}
    installed = f"{{checkout}}/.installed-{{release}}" + "".join(f"-{{extra}}" for extra in extras)
    if not os.path.exists(installed):  # once per runtime
        start = time.time()
        print(f"Fetching {{repo}} at {{release}} ...", flush=True)
        done = subprocess.run(f"rm -rf {{checkout}} && git init -q {{checkout}} && cd {{checkout}} && "
                              f"git fetch -q --depth 1 {{repo}} {{release}} && git checkout -q FETCH_HEAD",
                              shell=True, capture_output=True, text=True)
        if done.returncode:  # stop here, with the tool's own words, rather than fail later on an import
            raise RuntimeError(f"Fetching {{repo}} at {{release}} failed (exit {{done.returncode}}):\\n"
                               + done.stderr[-3000:])
        sys.path.insert(0, checkout)
        from helpers.notebook.colab_install import install

        install(checkout, extras, installed, start=start)  # says how long set-up took
    if checkout not in sys.path:
        sys.path.insert(0, checkout)
'''


def setup_call(args: str = "") -> str:
    """The lines a notebook's source holds in its set-up cell: the import and ``config = setup(args)``."""
    return f"from helpers.notebook.session import setup\n\nconfig = setup({args})"


def setup_cell(args: str = "", extras: tuple[str, ...] = ()) -> str:
    """The whole set-up cell: the Colab install of :data:`RELEASE` with ``extras`` (:data:`EXTRAS`), then
    :func:`setup_call`."""
    return _INSTALL.replace("{extras}", repr(tuple(extras))) + "\n" + setup_call(args)
