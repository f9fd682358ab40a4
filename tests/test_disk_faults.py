"""A full or read-only disk, as a learner meets it: a full Drive during 04, a full runtime disk during a
checkpoint save, a read-only output folder. Small tmpfs mounts play those disks (root mounts them; see
``tests.support.mount_tmpfs``); the libraries write into them for real and fail as they do on Colab.

What must hold: one sentence saying what is full (or read-only), how much is needed and where to free it;
training goes on when only the Drive copy fails; no half copy is ever taken for a checkpoint; and after
space is freed, running the same thing again goes on without training again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from safetensors.torch import save_file

from benchmarks.drive import SMOKE_SAVE_STEPS, SMOKE_STEPS, small_data, smoke_trainer
from helpers.config import REPO_ROOT, get_config
from helpers.model import load_processor
from helpers.runtime.errors import DiskError, check_writable, explain_disk_error
from helpers.training import checkpoint_is_complete, last_checkpoint, train
from tests.support import mount_tmpfs, remount_read_only, unmount

ENV = {"COURSE_PROFILE": "smoke", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}
TINY_RUN = ["--max-steps", "4", "--save-steps", "2", "--eval-steps", "2", "--logging-steps", "1", "--batch-size", "2",
            "--max-train-samples", "8", "--max-test-samples", "2", "--validation-size", "2", "--num-proc", "1",
            "--generation-max-length", "4", "--eval-num-beams", "1"]


@pytest.fixture
def disk(tmp_path):
    """``disk(size)`` mounts a tmpfs of ``size`` at a new folder and returns it; all are unmounted after the test."""
    mounted: list[Path] = []

    def mount(size: str, name: str = "disk") -> Path:
        folder = tmp_path / name
        mount_tmpfs(folder, size)
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        unmount(folder)


def resize(folder: Path, size: str) -> None:
    """Free space the way a learner does, all at once: the same disk, bigger."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True, capture_output=True)


def helpers_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "helpers", *args], check=False, cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


# The sentence, from whichever library met the disk


def _writes(folder: Path):
    tensors = {"weights": torch.zeros(2_000_000)}  # 8 MB: more than the small disk holds
    return {
        "safetensors": lambda: save_file(tensors, str(folder / "model.safetensors")),
        "torch.save": lambda: torch.save(tensors, folder / "optimizer.pt"),
        "open().write": lambda: (folder / "plain.bin").write_bytes(bytes(8_000_000)),
    }


def test_a_full_disk_reads_as_one_sentence_whichever_library_wrote(disk):
    folder = disk("1m")
    for library, write in _writes(folder).items():
        with pytest.raises(Exception) as caught:
            write()
        sentence = explain_disk_error(caught.value, folder, needed=8_000_000)
        assert sentence is not None, f"{library}: {caught.value!r} not recognised"
        assert sentence.startswith(f"The disk that holds {folder} is full (")
        assert "about 8.0 MB needed" in sentence and f"mounted at {folder}" in sentence, sentence
        for leftover in folder.iterdir():
            leftover.unlink()


def test_a_read_only_disk_reads_as_one_sentence_whichever_library_wrote(disk):
    folder = disk("1m")
    remount_read_only(folder)
    for library, write in _writes(folder).items():
        with pytest.raises(Exception) as caught:
            write()
        sentence = explain_disk_error(caught.value, folder)
        assert sentence is not None, f"{library}: {caught.value!r} not recognised"
        assert f"{folder} is on a read-only file system" in sentence, sentence
    with pytest.raises(DiskError, match="read-only file system"):
        check_writable(folder / "out")


def test_an_error_that_is_not_the_disk_stays_itself(tmp_path):
    assert explain_disk_error(ValueError("a bug of ours"), tmp_path) is None
    assert explain_disk_error(RuntimeError("CUDA out of memory"), tmp_path) is None  # a roomy disk: not its fault


# The Drive copies during training (issue 27 §1) and their clean-up (§4)


@pytest.fixture(scope="module")
def smoke_prepared():
    config = get_config("smoke")
    return small_data(load_processor(config.model, config.language, config.task))


def test_a_drive_that_fills_during_training_warns_and_training_goes_on(disk, tmp_path, smoke_prepared, capsys):
    drive = disk("30m", "drive")  # one fp16 copy of the smoke model (about 19 MB) fits, a second does not
    trainer, _ = smoke_trainer(smoke_prepared, drive, tmp_path / "runtime")
    train(trainer, resume=False)
    assert trainer.state.global_step == SMOKE_STEPS  # the run went on to the end
    err = capsys.readouterr().err
    assert f"could not copy checkpoint-{2 * SMOKE_SAVE_STEPS} to {drive / 'training'}: The disk that holds" in err
    assert "MB needed" in err and "Training goes on" in err
    # Only whole copies are named checkpoint-N, and no half copy is left taking space.
    copies = sorted(p.name for p in (drive / "training").iterdir())
    assert copies == [f"checkpoint-{SMOKE_SAVE_STEPS}"], copies
    assert checkpoint_is_complete(drive / "training" / copies[0])
    assert last_checkpoint(drive / "training", verbose=False) == str(drive / "training" / copies[0])


def test_a_failed_deletion_of_an_older_drive_copy_says_what_is_left_and_where(tmp_path, smoke_prepared, capsys):
    from types import SimpleNamespace

    from helpers.runtime.mirror import CheckpointMirror

    runtime, drive = tmp_path / "runtime", tmp_path / "drive"
    trainer, _ = smoke_trainer(smoke_prepared, drive, runtime, max_steps=2 * SMOKE_SAVE_STEPS)
    train(trainer, resume=False)
    capsys.readouterr()
    old = drive / "training" / f"checkpoint-{SMOKE_SAVE_STEPS}"
    # The older copy sits on a disk that refuses deletions: a read-only mount of its own, holding the copy.
    files = {path.name: path.read_bytes() for path in old.iterdir()}
    for name in files:
        (old / name).unlink()
    mount_tmpfs(old, "30m")
    try:
        for name, data in files.items():
            (old / name).write_bytes(data)
        remount_read_only(old)
        args = SimpleNamespace(output_dir=str(runtime))
        state = SimpleNamespace(global_step=2 * SMOKE_SAVE_STEPS, is_world_process_zero=True, best_model_checkpoint=None)
        CheckpointMirror(drive / "training").on_save(args, state, control=None)
        err = capsys.readouterr().err
    finally:
        unmount(old)
    assert f"could not delete the older copy {old}" in err and "read-only file system" in err, err
    assert " MB of it are left there" in err and "0.0 MB" not in err


# Through the command line (§2)


@pytest.mark.parametrize("command", ["prepare", "run"])
def test_a_read_only_output_folder_stops_the_cli_before_any_work(disk, corpus, command):
    folder = disk("1m")
    remount_read_only(folder)
    result = helpers_cli(command, "--data", str(corpus), "--output-dir", str(folder / "out"), *TINY_RUN[:2])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and result.stderr.strip().startswith("error:")
    assert f"{folder / 'out'} is on a read-only file system" in result.stderr
    assert "kept" not in result.stdout  # stopped before preprocessing, not after it


def test_an_output_folder_without_room_for_a_checkpoint_stops_the_run_before_training(disk, corpus):
    folder = disk("20m")
    result = helpers_cli("run", "--data", str(corpus), "--output-dir", str(folder), *TINY_RUN)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert f"The disk that holds {folder} has too little room for a checkpoint and the model" in result.stderr
    assert "MB needed" in result.stderr and "kept" not in result.stdout


def test_a_disk_that_fills_during_a_checkpoint_save_is_one_sentence_and_the_next_run_resumes(disk, corpus):
    # A smoke checkpoint (weights and AdamW's moments) is about 100 MB and the model 37 MB: the first save
    # and the final model fit, the second checkpoint does not.
    folder = disk("160m")
    result = helpers_cli("run", "--data", str(corpus), "--output-dir", str(folder), *TINY_RUN)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: The disk that holds {folder} is full (") and "MB needed" in error, error
    assert "run this again: it resumes from the last complete checkpoint" in error
    assert last_checkpoint(folder, verbose=False) == str(folder / "checkpoint-2")

    resize(folder, "400m")
    again = helpers_cli("run", "--data", str(corpus), "--output-dir", str(folder), *TINY_RUN)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"Resuming from {folder / 'checkpoint-2'}" in again.stdout
    assert json.loads((folder / "results.json").read_text())["finetuned"]["n"] == 2


# Through notebook 04 (§1, §2)


def _execute(notebook_name: str, workspace: Path, runtime: Path, edit=None):
    """A notebook's client with its kernel started in ``workspace``'s environment; cells are run one by one."""
    from nbclient import NotebookClient

    notebook = nbformat.read(REPO_ROOT / "notebooks" / notebook_name, as_version=4)
    if edit:
        edit(notebook)
    env = {**os.environ, **ENV, "COURSE_WORKSPACE": str(workspace), "COURSE_RUNTIME_DIR": str(runtime),
           "PYTHONPATH": str(REPO_ROOT)}
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO_ROOT / "notebooks")}})
    client.km = client.create_kernel_manager()
    client.start_new_kernel(env=env)
    client.start_new_kernel_client()
    return client, notebook


def _error_of(cell) -> str:
    return "\n".join(o.get("ename", "") + ": " + o.get("evalue", "") + "\n" + "\n".join(o.get("traceback", []))
                     for o in cell.outputs if o.output_type == "error")


def _run_cells(client, notebook) -> int | None:
    """Run every cell in order; the index of the first that fails, or None."""
    from nbclient.exceptions import CellExecutionError

    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        try:
            client.execute_cell(cell, index)
        except CellExecutionError:
            return index
    return None


def _smaller_run(notebook) -> None:
    """04 as it is, with the set-up cell asking for a shorter run (as a learner may): two saves, short evaluations."""
    for cell in notebook.cells:
        if cell.cell_type == "code" and "config = setup(needs_gpu=True)" in cell.source:
            cell.source = cell.source.replace(
                "config = setup(needs_gpu=True)",
                "config = setup(needs_gpu=True, max_steps=4, save_steps=2, eval_steps=2, logging_steps=1, "
                "generation_max_length=4)")
            return
    raise AssertionError("04's set-up cell not found")


def test_a_read_only_workspace_stops_04_at_its_set_up_cell(disk, tmp_path):
    workspace = disk("1m", "workspace")
    remount_read_only(workspace)
    client, notebook = _execute("04_train.ipynb", workspace, tmp_path / "runtime")
    try:
        failed = _run_cells(client, notebook)
    finally:
        client._cleanup_kernel()
    assert failed is not None and "config = setup(" in notebook.cells[failed].source
    error = _error_of(notebook.cells[failed])
    assert f"is on a read-only file system (mounted at {workspace})" in error and "Traceback" not in error, error


def test_a_workspace_that_fills_during_04_keeps_training_and_the_save_can_be_run_again(disk, tmp_path):
    workspace = disk("36m", "workspace")  # 01 and 02's data (9 MB) and one Drive copy fit; a second and the model do not
    runtime = tmp_path / "runtime"
    for earlier in ("01_load.ipynb", "02_preprocess.ipynb"):
        client, notebook = _execute(earlier, workspace, runtime)
        try:
            assert _run_cells(client, notebook) is None, earlier
        finally:
            client._cleanup_kernel()

    client, notebook = _execute("04_train.ipynb", workspace, runtime, edit=_smaller_run)
    try:
        failed = _run_cells(client, notebook)
        assert failed is not None, "the save to a full workspace did not fail"
        cell = notebook.cells[failed]
        assert "saving_to_workspace" in cell.source, cell.source  # training itself went through
        error = _error_of(cell)
        assert "DiskError: The disk that holds" in error and "is full (" in error, error
        assert "then run this cell again, which saves what is still in memory without training again" in error
        assert "Traceback" not in error
        training = next(c for c in notebook.cells if c.cell_type == "code" and "train(trainer, resume=RESUME)" in c.source)
        printed = "".join(o.get("text", "") for o in training.outputs if o.output_type == "stream")
        assert "could not copy checkpoint-4" in printed and "Training goes on" in printed, printed
        model = workspace / "smoke" / "model"
        assert not model.exists()  # no half model left where 05 would load it

        resize(workspace, "200m")
        client.execute_cell(cell, failed)
        assert (model / "model.safetensors").is_file() and (model / "processor_config.json").is_file()
        check = nbformat.v4.new_code_cell("print('steps', trainer.state.global_step)")
        notebook.cells.append(check)
        client.execute_cell(check, len(notebook.cells) - 1)
        assert "steps 4" in check.outputs[0]["text"]
    finally:
        client._cleanup_kernel()
