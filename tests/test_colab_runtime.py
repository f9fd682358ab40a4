"""The notebooks' set-up cell, unmodified, in a Colab-shaped runtime: what a learner's first cell really does.

The runtime is built as Colab's image has it: a fresh virtual environment with an older stack preinstalled
(transformers 4.x, datasets 4.0, huggingface_hub 0.x, ipykernel) and a torch build that must be kept; a
``google.colab`` stand-in (tests/colab_standin: Drive mounts a local folder, the HF_TOKEN secret exists but
this notebook may not read it); and a local git remote standing in for GitHub, holding the release tag made by
``tools/release.py`` (git's ``url.<base>.insteadOf`` redirects the cell's GitHub URL without changing the cell).

The cell writes to the absolute ``/content/...`` of Colab. The kernel therefore runs in a private mount
namespace (``unshare -m``) in which a temporary folder is bind-mounted on /content: the cell runs as written,
and nothing it writes reaches the machine's /content. That needs root, as CI has.

Torch is not installed a second time (minutes, gigabytes): the runtime sees this environment's torch through a
``.pth`` file, in a folder outside the runtime's own environment, as Colab's torch lives outside anything pip may
remove; pip sees it installed, and the test checks it is the same torch after the cell.

Then notebook 00 runs in that kernel (the t4 profile, as in Colab; offline), and 04 stops on this GPU-less
runtime with what to do. The first run downloads the packages from PyPI; pip's cache serves later runs.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import string
import subprocess
import venv
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from support import repository_copy

import helpers
from helpers.config import REPO_ROOT
from helpers.notebook.course import COLAB_CHECKOUT, CONSTRAINTS, RELEASE, REPO_URL
from tools.constraints import read as read_constraints
from tools.constraints import share_torch
from tools.release import git, release

# What Colab's image has preinstalled, older than what the course tested with: the cell must upgrade these.
COLAB_STACK = ["transformers>=4.50,<5", "datasets==4.0.0", "huggingface_hub<1", "ipykernel"]
STANDIN = Path(__file__).parent / "colab_standin"
# Made at run time, as the other token tests do: no token-shaped string sits in a tracked file.
SECRET = "hf_" + "".join(random.Random().choices(string.ascii_letters, k=34))
KERNEL = "colab-standin"

pytestmark = [pytest.mark.colab_runtime, pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare: the set-up cell writes to /content, bind-mounted in a private mount namespace",
)]


def python_in(runtime_python: Path, code: str, env: dict[str, str]) -> str:
    done = subprocess.run([str(runtime_python), "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def torch_seen(runtime_python: Path, env: dict[str, str]) -> tuple[str, str]:
    return tuple(python_in(runtime_python, "import torch; print(torch.__version__); print(torch.__file__)",
                           env).splitlines())


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """A Colab-shaped runtime; yields a dict of its paths, environment and the torch it saw first."""
    tmp = tmp_path_factory.mktemp("colab")
    # GitHub: a bare repository holding the release tag, made by the release command from this working tree.
    source = repository_copy(tmp / "source")
    tag = release(helpers.__version__, root=source)
    assert tag == RELEASE
    subprocess.run(["git", "clone", "-q", "--bare", str(source), str(tmp / "github.git")], check=True)
    gitconfig = tmp / "gitconfig"
    gitconfig.write_text(f'[url "{(tmp / "github.git").as_uri()}"]\n\tinsteadOf = {REPO_URL}\n')

    # The runtime: an environment with an older stack, and, outside it, torch and the google.colab stand-in.
    venv.create(tmp / "env", with_pip=True)
    python = tmp / "env" / "bin" / "python"
    site = Path(python_in(python, "import sysconfig; print(sysconfig.get_paths()['purelib'])", {}))
    runtime = share_torch(site, tmp / "runtime-usr-local")  # what Colab keeps outside the learner's reach
    shutil.copytree(STANDIN / "google", runtime / "google")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("COURSE_", "PYTHON", "VIRTUAL_ENV", "HF_TOKEN"))}  # pip's settings are kept
    env.update(PATH=f"{python.parent}{os.pathsep}{env['PATH']}", GIT_CONFIG_GLOBAL=str(gitconfig),
               HF_HUB_OFFLINE="1", HF_HOME=str(tmp / "hf-home"), OMP_NUM_THREADS="1", MPLBACKEND="agg")
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-compile", *COLAB_STACK],  # no .pyc: CPU
                             env=env, capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    before = {n: python_in(python, f"from importlib.metadata import version; print(version('{n}'))", env)
              for n in ("transformers", "datasets", "huggingface_hub")}
    assert before["transformers"].startswith("4.") and before["datasets"] == "4.0.0", before
    assert before["huggingface_hub"].startswith("0."), before

    # Colab's google.colab is imported when its kernel starts; its kernel runs in /content.
    content, drive = tmp / "content", tmp / "drive"
    content.mkdir()
    drive.mkdir()
    (tmp / "secrets.json").write_text(json.dumps({"HF_TOKEN": {"value": SECRET, "granted": False}}))
    env.update(COLAB_STANDIN_DRIVE=str(drive), COLAB_STANDIN_SECRETS=str(tmp / "secrets.json"))
    spec = tmp / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    launch = ('mount --bind "$1" /content && cd /content && exec "$2" -m ipykernel_launcher -f "$3" '
              '"--IPKernelApp.exec_lines=import google.colab"')
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": ["unshare", "-m", "sh", "-c", launch, "sh", str(content), str(python), "{connection_file}"],
        "display_name": "Colab stand-in", "language": "python"}))
    created = not Path("/content").exists()
    Path("/content").mkdir(exist_ok=True)  # the mount point; what the kernel writes there goes to `content`
    try:
        yield dict(tmp=tmp, python=python, env=env, content=content, drive=drive, source=source, tag=tag,
                   runtime=runtime, torch=torch_seen(python, env), before=before, jupyter=tmp / "jupyter")
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
    return run_notebook(colab, "00_hub_login.ipynb")


def test_the_setup_cell_fetches_the_release_tag_and_notebook_00_runs(colab, notebook_00):
    notebook, error = notebook_00
    assert error is None, str(error)[-3000:]
    checkout = colab["content"] / Path(COLAB_CHECKOUT).name
    tagged = git("rev-parse", f"{colab['tag']}^{{commit}}", root=colab["source"])
    assert git("rev-parse", "HEAD", root=checkout) == tagged
    assert (checkout / f".installed-{RELEASE}").is_file()
    printed = outputs(notebook)
    assert f"Fetching {REPO_URL} at {RELEASE} ..." in printed and "Installed in" in printed
    assert "Mounted at /content/drive" in printed and (colab["drive"] / "whisper-course" / "t4").is_dir()
    assert "Profile 't4'" in printed  # Colab gets the course's real profile
    assert f"helpers {helpers.__version__} in /content/whisper-finetune-companion" in printed
    # The secret exists but this notebook may not read it: no token, pushing skipped, the token never shown.
    assert "No Hugging Face token" in printed and "Not logged in" in printed
    assert SECRET not in printed


def test_the_project_is_installed_at_the_tested_versions_and_colabs_torch_is_kept(colab, notebook_00):
    pinned = read_constraints(REPO_ROOT / CONSTRAINTS)
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from tools.constraints import closure; "
            "print(json.dumps({n: d.version for n, d in closure(['whisper-course-helpers'], "
            "stop=('torch',)).items()}))")
    done = subprocess.run([str(colab["python"]), "-c", code, str(colab["content"] / Path(COLAB_CHECKOUT).name)],
                          env=colab["env"], capture_output=True, text=True, timeout=120)
    installed = json.loads(done.stdout)
    installed.pop("whisper-course-helpers")
    assert {"transformers", "datasets", "huggingface-hub", "peft", "ctranslate2", "datacollective"} <= set(installed)
    assert {n: v for n, v in installed.items() if pinned.get(n) != v} == {}  # every one at its pin
    assert installed["transformers"] != colab["before"]["transformers"]  # the older stack was upgraded
    assert torch_seen(colab["python"], colab["env"]) == colab["torch"]  # the same torch, from the same place
    assert Path(colab["torch"][1]).is_relative_to(colab["runtime"])


def test_04_on_a_runtime_without_a_gpu_stops_with_what_to_do(colab, notebook_00):
    notebook, error = run_notebook(colab, "04_train.ipynb")
    assert error is not None and error.ename == "CourseError", error
    assert "needs a GPU, and this runtime has none" in error.evalue
    assert "Runtime > Change runtime type > T4 GPU" in error.evalue
    setup_index = next(i for i, c in enumerate(notebook.cells) if "setup" in c.metadata.get("tags", []))
    assert all(not c.get("outputs") for c in notebook.cells[setup_index + 1:])  # nothing ran after it
