"""The notebooks' set-up cell, unmodified, in a Colab-shaped runtime: what a learner's first cell really does.

The runtime is built from what Colab publishes of its own (tests/colab_runtime.txt: the lines of Colab's
pip-freeze.txt this test needs): numpy 2.1.3, pandas 2.2.3, matplotlib 3.10.0, requests 2.32.4, IPython 7.34.0,
ipykernel 6.17.1, tornado 6.5.7, transformers 5.15.0, datasets 4.0.0, huggingface_hub 1.27.0, ..., installed
exactly, without their dependencies' resolution, as the image has them. Outside that environment, as Colab keeps
them out of a notebook pip's reach, lie ``google.colab``'s stand-in (tests/colab_standin: Drive mounts a local
folder, the HF_TOKEN secret exists but this notebook may not read it), with google-colab's pins in its metadata,
and torch. Three departures from Colab's image, the first two for want of a download: the runtime's Python is this
one (3.11, Colab's is 3.13), and its torch is this environment's CPU build (2.13.0, shared through a ``.pth`` file,
not a second download), since Colab's CPU torch 2.11 for 3.13 is published on download.pytorch.org only and PyPI's is
the CUDA build (gigabytes); since the notebooks import torch and transformers in their set-up, they need a real one.
And so, third, the runtime's setuptools is the one that torch 2.13 requires (>=77.0.3; Colab's torch 2.11 runs with
its 75.2.0): it is loaded at start (its ``.pth`` hook), so a runtime whose own torch needed it moved would not be
Colab's.
The kernel starts as Colab's does, with google.colab, numpy, pandas and
matplotlib imported, and records the version of every imported module's distribution. A local git remote stands
in for GitHub, holding the release tag made by ``tools/release.py`` (git's ``url.<base>.insteadOf`` redirects the
cell's GitHub URL without changing the cell).

The cell writes to the absolute ``/content/...`` of Colab. The kernel therefore runs in a private mount
namespace (``unshare -m``) in which a temporary folder is bind-mounted on /content: the cell runs as written,
and nothing it writes reaches the machine's /content. That needs root, as CI has.

Then notebook 00 runs in that kernel (the t4 profile, as in Colab; offline): the set-up cell must install what the
runtime lacks and leave every package the runtime owns (what was imported, what google-colab pins, torch) as it
was, so that no restart is asked for: where our datasets needs a newer pyarrow than the one pandas has loaded, the
runtime's own datasets 4.0.0 is kept. requests stays at google-colab's 2.32.4 too: the course speaks the Mozilla Data
Collective's HTTP API itself, where every release of the MDC's SDK needs requests>=2.32.5. 04, whose cell adds the
LoRA extra, stops on this GPU-less runtime with what to do. The first run downloads the packages from PyPI; pip's cache serves later runs.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import random
import re
import shutil
import string
import subprocess
import venv
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from packaging.utils import canonicalize_name
from support import repository_copy

import helpers
from helpers.config import REPO_ROOT
from helpers.notebook.colab_install import RUNTIME_OWNED
from helpers.notebook.course import COLAB_CHECKOUT, CONSTRAINTS, RELEASE, REPO_URL
from tools.constraints import read as read_constraints
from tools.constraints import share_torch
from tools.release import git, release

# Colab's runtime, from its published pip-freeze.txt (the file's header says which, and when).
COLAB_RUNTIME = Path(__file__).parent / "colab_runtime.txt"
# The setuptools the shared torch requires (the module's docstring says why it departs from Colab's).
SETUPTOOLS = read_constraints(REPO_ROOT / CONSTRAINTS)["setuptools"]
STANDIN = Path(__file__).parent / "colab_standin"
# Made at run time, as the other token tests do: no token-shaped string sits in a tracked file.
SECRET = "hf_" + "".join(random.Random().choices(string.ascii_letters, k=34))
KERNEL = "colab-standin"
TORCH = importlib.metadata.version("torch")  # this environment's, which the runtime shares

pytestmark = [pytest.mark.colab_runtime, pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare: the set-up cell writes to /content, bind-mounted in a private mount namespace",
)]


def colab_pins() -> dict[str, str]:
    """``{canonical name: version}`` of tests/colab_runtime.txt, and of the google-colab stand-in."""
    return {**read_constraints(COLAB_RUNTIME), "google-colab": "1.0.0", "setuptools": SETUPTOOLS}


def python_in(runtime_python: Path, code: str, env: dict[str, str]) -> str:
    done = subprocess.run([str(runtime_python), "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def versions_in(runtime_python: Path, env: dict[str, str]) -> dict[str, str]:
    """``{canonical name: version}`` of every distribution the runtime's Python sees."""
    code = ("import importlib.metadata as m, json, re; print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name'])"
            ".lower(): d.version for d in m.distributions()}))")
    return json.loads(python_in(runtime_python, code, env))


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """A Colab-shaped runtime; yields a dict of its paths, environment and the versions it started with."""
    tmp = tmp_path_factory.mktemp("colab")
    # GitHub: a bare repository holding the release tag, made by the release command from this working tree.
    source = repository_copy(tmp / "source")
    tag = release(helpers.__version__, root=source)
    assert tag == RELEASE
    subprocess.run(["git", "clone", "-q", "--bare", str(source), str(tmp / "github.git")], check=True)
    gitconfig = tmp / "gitconfig"
    gitconfig.write_text(f'[url "{(tmp / "github.git").as_uri()}"]\n\tinsteadOf = {REPO_URL}\n')

    # The runtime: Colab's published versions in an environment; outside it, torch and the google.colab stand-in.
    venv.create(tmp / "env", with_pip=True)
    python = tmp / "env" / "bin" / "python"
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("COURSE_", "PYTHON", "VIRTUAL_ENV", "HF_TOKEN"))}  # pip's settings are kept
    env.update(PATH=f"{python.parent}{os.pathsep}{env['PATH']}", GIT_CONFIG_GLOBAL=str(gitconfig),
               HF_HUB_OFFLINE="1", HF_HOME=str(tmp / "hf-home"), OMP_NUM_THREADS="1", MPLBACKEND="agg")
    site = Path(python_in(python, "import sysconfig; print(sysconfig.get_paths()['purelib'])", env))
    runtime = share_torch(site, tmp / "runtime-usr-local")  # what Colab keeps outside the learner's reach
    shutil.copytree(STANDIN, runtime, dirs_exist_ok=True)
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-compile", "--no-deps",  # no .pyc: CPU
                              "-r", str(COLAB_RUNTIME)], env=env, capture_output=True, text=True, timeout=1200)
    assert install.returncode == 0, install.stderr[-3000:]
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-compile", "--no-deps",
                              f"setuptools=={SETUPTOOLS}"], env=env, capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    before = versions_in(python, env)
    assert {name: before.get(name) for name in colab_pins()} == colab_pins()  # Colab's, exactly
    assert before["torch"] == TORCH

    # Colab's kernel starts with google.colab, numpy, pandas and matplotlib imported; it runs in /content.
    content, drive = tmp / "content", tmp / "drive"
    content.mkdir()
    drive.mkdir()
    (tmp / "secrets.json").write_text(json.dumps({"HF_TOKEN": {"value": SECRET, "granted": False}}))
    env.update(COLAB_STANDIN_DRIVE=str(drive), COLAB_STANDIN_SECRETS=str(tmp / "secrets.json"),
               COLAB_STANDIN_IMPORTED=str(tmp / "imported-at-start.json"))
    spec = tmp / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    launch = ('mount --bind "$1" /content && cd /content && exec "$2" -m ipykernel_launcher -f "$3" '
              '"--IPKernelApp.exec_lines=import colab_kernel_startup"')
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": ["unshare", "-m", "sh", "-c", launch, "sh", str(content), str(python), "{connection_file}"],
        "display_name": "Colab stand-in", "language": "python"}))
    created = not Path("/content").exists()
    Path("/content").mkdir(exist_ok=True)  # the mount point; what the kernel writes there goes to `content`
    try:
        yield dict(tmp=tmp, python=python, env=env, content=content, drive=drive, source=source, tag=tag,
                   runtime=runtime, before=before, jupyter=tmp / "jupyter", imported=tmp / "imported-at-start.json")
    finally:
        if created:
            Path("/content").rmdir()


def run_notebook(colab, name: str) -> tuple[nbformat.NotebookNode, CellExecutionError | None]:
    """Run ``notebooks/<name>``, as committed, in the Colab-shaped kernel: the notebook and the error it stopped on."""
    notebook = nbformat.read(REPO_ROOT / "notebooks" / name, as_version=4)
    saved = dict(os.environ)
    os.environ.clear()  # the kernel gets the runtime's environment, not this test's (PYTHONPATH, COURSE_PROFILE)
    os.environ.update(colab["env"], JUPYTER_PATH=str(colab["jupyter"]))
    try:
        client = NotebookClient(notebook, kernel_name=KERNEL, timeout=900,
                                resources={"metadata": {"path": str(colab["tmp"])}})
        client.execute()
    except CellExecutionError as error:
        return notebook, error
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return notebook, None


def outputs(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(o.get("text", "") + json.dumps(o.get("data", {})) + " ".join(o.get("traceback", []))
                     for cell in notebook.cells for o in cell.get("outputs", []))


@pytest.fixture(scope="module")
def notebook_00(colab):
    """Notebook 00 run twice, each in a fresh kernel (the second as after Runtime > Restart session): both runs'
    notebooks and errors, the runtime's versions after them, and those of the distributions the first kernel had
    loaded when it started."""
    first = run_notebook(colab, "00_hub_login.ipynb")
    imported = {canonicalize_name(n): v for n, v in json.loads(colab["imported"].read_text()).items()}
    again = run_notebook(colab, "00_hub_login.ipynb")
    return first, again, versions_in(colab["python"], colab["env"]), imported


# Our datasets 5 needs pyarrow>=21 (Colab: 18.1.0, loaded by pandas when the kernel starts): the runtime's own
# datasets, the floor the suite also passes at, is kept instead, with what it needs at Colab's versions.
KEPT_AT_COLABS = {"datasets": "4.0.0", "fsspec": "2025.3.0", "dill": "0.3.8", "multiprocess": "0.70.16"}


def test_the_setup_cell_fetches_the_release_tag_and_notebook_00_runs(colab, notebook_00):
    (notebook, error), (again, error_again), _, _ = notebook_00
    checkout = colab["content"] / Path(COLAB_CHECKOUT).name
    tagged = git("rev-parse", f"{colab['tag']}^{{commit}}", root=colab["source"])
    assert git("rev-parse", "HEAD", root=checkout) == tagged
    assert (checkout / f".installed-{RELEASE}").is_file()
    printed = outputs(notebook)
    assert f"Fetching {REPO_URL} at {RELEASE} ..." in printed
    assert re.search(r"Set-up took \d+ s\.", printed), printed[-3000:]
    # No restart asked for: the notebook runs through on the first run, and on a second (as after a restart).
    assert error is None, str(error)[-3000:]
    assert re.search(r"Set-up took \d+ s\. No restart needed\.", printed), printed[-3000:]  # and nothing moved
    assert "It moved" not in printed
    assert "Mounted at /content/drive" in printed and (colab["drive"] / "whisper-course" / "t4").is_dir()
    assert error_again is None, str(error_again)[-3000:]
    assert "Fetching" not in outputs(again) and "Set-up took" not in outputs(again)  # the install is not repeated
    for printed in outputs(notebook), outputs(again):
        assert "Profile 't4'" in printed  # Colab gets the course's real profile
        assert f"helpers {helpers.__version__} in /content/whisper-finetune-companion" in printed
        # The secret exists but this notebook may not read it: no token, pushing skipped, the token never shown.
        assert "No Hugging Face token" in printed and "Not logged in" in printed
        assert SECRET not in printed


def test_the_setup_cell_moves_none_of_the_runtimes_own_packages(colab, notebook_00):
    """What was loaded when the kernel started, what google-colab pins and Colab's list: as they were, requests
    (google-colab's pin) included; Colab asks for a restart when an install changes the distribution of a loaded
    module. The MDC's SDK, which would have moved requests, is not installed."""
    _, _, after, imported = notebook_00
    before = colab["before"]
    assert {"numpy", "pandas", "matplotlib", "ipython", "ipykernel", "tornado", "google-colab"} <= set(imported)
    pinned_by_colab = ("google-auth", "ipykernel", "ipython", "pandas", "jupyter-server", "portpicker", "requests",
                       "tornado")
    owned = {*imported, *pinned_by_colab, *(n for n in RUNTIME_OWNED if n in before)}
    assert {name for name in owned if after.get(name) != before[name]} == set()
    assert "datacollective" not in after
    assert {"pyarrow", "setuptools"} <= set(imported)  # loaded at start, and kept
    # Colab's published versions, named: the ones a set-up cell used to move.
    assert {name: after[name] for name in ("numpy", "pandas", "matplotlib", "requests", "ipython", "ipykernel",
                                           "tornado", "torch")} == {
        "numpy": "2.1.3", "pandas": "2.2.3", "matplotlib": "3.10.0", "requests": "2.32.4", "ipython": "7.34.0",
        "ipykernel": "6.17.1", "tornado": "6.5.7", "torch": TORCH}
    torch = python_in(colab["python"], "import torch; print(torch.__file__)", colab["env"])
    assert Path(torch).is_relative_to(colab["runtime"])  # the same torch, from the same place


def test_what_the_runtime_lacks_is_installed_at_the_tested_versions(colab, notebook_00):
    pinned = read_constraints(REPO_ROOT / CONSTRAINTS)
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from tools.constraints import closure; "
            "print(json.dumps({n: d.version for n, d in closure(['whisper-course-helpers'], "
            "stop=('torch',)).items()}))")
    done = subprocess.run([str(colab["python"]), "-c", code, str(colab["content"] / Path(COLAB_CHECKOUT).name)],
                          env=colab["env"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    installed = json.loads(done.stdout)
    installed.pop("whisper-course-helpers")
    _, _, after, imported = notebook_00
    # The runtime's own stay at Colab's versions; everything else the course needs is at the tested pin.
    ours = {n: v for n, v in installed.items()
            if n not in imported and n not in RUNTIME_OWNED and n not in KEPT_AT_COLABS}
    assert {n: v for n, v in ours.items() if pinned.get(n) != v} == {}
    # Colab's datasets and what it needs, kept as Colab has them (ours would have moved pyarrow)
    assert {n: installed[n] for n in KEPT_AT_COLABS} == {n: after[n] for n in KEPT_AT_COLABS} == KEPT_AT_COLABS
    assert {"transformers", "huggingface-hub", "accelerate", "python-dotenv", "jiwer"} <= set(ours)
    assert "datacollective" not in installed and installed["requests"] == "2.32.4"  # Colab's, which ours accept
    before = colab["before"]
    assert before["transformers"] == "5.15.0" and installed["transformers"] == pinned["transformers"]
    assert {n: before[n] for n in KEPT_AT_COLABS} == KEPT_AT_COLABS
    # 00 offers no extra: Colab's peft stays, and ctranslate2 is not installed.
    assert after["peft"] == before["peft"] == "0.20.0" and "ctranslate2" not in after


def test_04_installs_the_lora_extra_and_on_a_runtime_without_a_gpu_stops_with_what_to_do(colab, notebook_00):
    notebook, error = run_notebook(colab, "04_train.ipynb")
    assert error is not None and error.ename == "CourseError", error
    assert "needs a GPU, and this runtime has none" in error.evalue
    assert "Runtime > Change runtime type > T4 GPU" in error.evalue
    assert re.search(r"Set-up took \d+ s\. No restart needed\.", outputs(notebook))  # adding peft moves nothing loaded
    setup_index = next(i for i, c in enumerate(notebook.cells) if "setup" in c.metadata.get("tags", []))
    assert all(not c.get("outputs") for c in notebook.cells[setup_index + 1:])  # nothing ran after it
    after = versions_in(colab["python"], colab["env"])
    assert after["peft"] == read_constraints(REPO_ROOT / CONSTRAINTS)["peft"]  # the extra 04 offers, at its pin
    assert after["numpy"] == "2.1.3" and after["torch"] == TORCH
