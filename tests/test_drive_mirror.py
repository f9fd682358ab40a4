"""Google Drive does not fill up during 04, and a disconnect still loses at most one save interval (issue 17).

A folder that counts every byte written and deleted under it (``benchmarks.drive.DriveStandIn``, inotify)
plays Drive. The smoke model trains with the t4 profile's cadence (five saves), full checkpoints in a
runtime folder, :class:`helpers.runtime.mirror.CheckpointMirror` copying to the stand-in. What it wrote, scaled
to whisper-small, must fit the 4 GB budget. Then the same run is SIGKILLed in a real process between saves,
the runtime folder is wiped (a new Colab runtime has an empty disk), and the run resumes from the stand-in.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from benchmarks.drive import (
    BUDGET_BYTES,
    SMOKE_STEPS,
    DriveStandIn,
    measure,
    small_data,
    smoke_trainer,
)
from helpers.config import REPO_ROOT, get_config
from helpers.model import load_processor
from helpers.training import last_checkpoint, train
from tests.support import kill_when

ENV = {"COURSE_PROFILE": "smoke", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}


@pytest.fixture(scope="module")
def measured(tmp_path_factory, one_torch_thread):
    work = tmp_path_factory.mktemp("drive")
    return work, measure(work)


def test_five_saves_and_the_final_model_fit_the_drive_budget_at_whisper_small_size(measured):
    _, figures = measured
    assert figures["saves"] == 5 and not figures["inotify_overflowed"]
    # Rotation ran on the stand-in (deleted copies still count: Drive's bin), newest and best stay.
    assert figures["bytes_deleted"] > 0 and figures["copies_kept"][-1] == f"checkpoint-{SMOKE_STEPS}"
    assert len(figures["copies_kept"]) <= 2
    small = figures["whisper_small"]
    assert small["scaled_from_smoke_bytes"] <= BUDGET_BYTES
    assert small["from_parameters_bytes"] == pytest.approx(small["scaled_from_smoke_bytes"], rel=0.05)
    assert small["full_checkpoints_on_drive_bytes"] > 3 * BUDGET_BYTES  # what saving full checkpoints there costs
    # On the runtime's disk, full checkpoints: weights and AdamW's two moments (3 x the fp32 weights' bytes).
    assert figures["runtime_checkpoint_bytes"] > 2 * 3 * 4 * figures["smoke_parameters"]


def test_drive_holds_fp16_weights_and_no_optimizer_moments(measured):
    work, _ = measured
    copy = work / "drive" / "training" / f"checkpoint-{SMOKE_STEPS}"
    full = work / "runtime" / "training" / f"checkpoint-{SMOKE_STEPS}"
    with safe_open(str(copy / "model.safetensors"), framework="pt") as small, \
            safe_open(str(full / "model.safetensors"), framework="pt") as whole:
        assert set(small.keys()) == set(whole.keys())
        for key in small.keys():  # noqa: SIM118 - safe_open is not a dict
            assert small.get_tensor(key).dtype == torch.float16
            assert torch.allclose(small.get_tensor(key).float(), whole.get_tensor(key), rtol=1e-3, atol=1e-4)
    optimizer = torch.load(copy / "optimizer.pt", weights_only=True)
    assert optimizer["state"] == {} and optimizer["param_groups"]
    assert torch.load(full / "optimizer.pt", weights_only=True)["state"]  # the runtime's copy has the moments
    for name in ("scheduler.pt", "rng_state.pth", "training_args.bin"):
        assert (copy / name).read_bytes() == (full / name).read_bytes()
    assert json.loads((copy / "trainer_state.json").read_text()) == json.loads((full / "trainer_state.json").read_text())


def test_the_stand_in_counts_a_file_found_mid_write_once(tmp_path):
    """A new folder's scan can find a file still being written (a busy machine: the copy runs ahead of the
    watcher); its close then replaces that count. Counted twice, one checkpoint copy was 0.45 GB too many."""
    (tmp_path / "copy").mkdir()
    with open(tmp_path / "copy" / "model.safetensors", "wb") as file:
        file.write(b"x" * 1000)
        file.flush()
        with DriveStandIn(tmp_path) as stand_in:  # its first scan finds 1000 bytes of a file not yet closed
            file.write(b"x" * 3000)
            file.close()
            (tmp_path / "other.json").write_bytes(b"y" * 10)
    assert stand_in.written == {"copy/model.safetensors": 4000, "other.json": 10}


def test_the_stand_in_counts_a_folder_renamed_before_its_creation_was_read(tmp_path):
    """The mirror writes ``.partial-N`` and renames it ``checkpoint-N``; on a busy machine both happen before the
    watcher reads the creation, so no watch under the old name ever existed. Uncounted, one checkpoint copy was
    0.45 GB too few at whisper-small's size."""
    stand_in = DriveStandIn(tmp_path)  # watching, but reading no event until entered
    (tmp_path / ".partial-6").mkdir()
    (tmp_path / ".partial-6" / "model.safetensors").write_bytes(b"x" * 4000)
    (tmp_path / ".partial-6").rename(tmp_path / "checkpoint-6")
    with stand_in:
        (tmp_path / "checkpoint-6" / "trainer_state.json").write_bytes(b"y" * 10)
    assert stand_in.written == {"checkpoint-6/model.safetensors": 4000, "checkpoint-6/trainer_state.json": 10}


def run_until_killed(work: Path, runtime: Path) -> int:
    """Train the same run in a real process; SIGKILL it once Drive has a copy at step 4 or later."""
    mirror = work / "drive" / "training"

    def step_on_drive() -> int:
        newest = last_checkpoint(mirror, verbose=False)
        return int(Path(newest).name.split("-")[1]) if newest else 0

    code = ("import sys; from pathlib import Path; from datasets import load_from_disk; "
            "from benchmarks.drive import smoke_trainer; from helpers.training import train; "
            "work = Path(sys.argv[1]); "
            "trainer, _ = smoke_trainer(load_from_disk(str(work / 'prepared')), work / 'drive', Path(sys.argv[2])); "
            "train(trainer, resume=False)")
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO_ROOT)}
    kill_when([sys.executable, "-c", code, str(work), str(runtime)], env, lambda: step_on_drive() >= 4)
    return step_on_drive()


def train_log(state: dict) -> dict[int, dict]:
    return {entry["step"]: entry for entry in state["log_history"] if "loss" in entry}


def test_a_run_killed_between_saves_resumes_from_what_is_on_drive(measured, tmp_path, capsys):
    reference_work, _ = measured
    reference = json.loads((reference_work / "drive" / "training" / f"checkpoint-{SMOKE_STEPS}" /
                            "trainer_state.json").read_text())
    config = get_config("smoke")
    prepared = small_data(load_processor(config.model, config.language, config.task))
    prepared.save_to_disk(str(tmp_path / "prepared"))
    runtime = tmp_path / "runtime" / "training"
    killed_at = run_until_killed(tmp_path, runtime)
    assert 4 <= killed_at < SMOKE_STEPS
    shutil.rmtree(tmp_path / "runtime")  # a new runtime: its disk is empty, only Drive kept anything

    trainer, _ = smoke_trainer(prepared, tmp_path / "drive", runtime)
    train(trainer, resume=True)
    printed = capsys.readouterr().out
    assert f"Restored the Drive copy of step {killed_at}" in printed
    assert f"Resuming from {runtime / f'checkpoint-{killed_at}'}" in printed
    assert trainer.state.global_step == SMOKE_STEPS
    before, after = train_log(reference), train_log(trainer.state.__dict__)
    assert sorted(after) == list(range(1, SMOKE_STEPS + 1))
    for step in range(1, killed_at + 1):  # the log up to the save came back from Drive as it was
        assert after[step] == before[step]
    for step in range(killed_at + 1, SMOKE_STEPS + 1):  # the learning-rate schedule went on where it was
        assert after[step]["learning_rate"] == pytest.approx(before[step]["learning_rate"], rel=1e-6)
    # The first step after the resume: the same weights (rounded to fp16) on the same batch (data order and
    # RNG restored) give the reference's loss; AdamW's moments start again, so later steps drift apart.
    assert after[killed_at + 1]["loss"] == pytest.approx(before[killed_at + 1]["loss"], rel=0.02)
    assert trainer.state.best_model_checkpoint is not None and Path(trainer.state.best_model_checkpoint).is_dir()


def test_a_copy_that_cannot_be_written_warns_and_training_goes_on(measured, tmp_path, capsys):
    """Drive full or unmounted: the run keeps its checkpoint on the runtime's disk and says what is at risk."""
    from types import SimpleNamespace

    from helpers.runtime.mirror import CheckpointMirror

    work, _ = measured
    blocked = tmp_path / "drive-gone"
    blocked.write_text("a file where the folder should be: every write under it fails")
    args = SimpleNamespace(output_dir=str(work / "runtime" / "training"))
    state = SimpleNamespace(global_step=SMOKE_STEPS, is_world_process_zero=True, best_model_checkpoint=None)
    CheckpointMirror(blocked).on_save(args, state, control=None)
    assert f"could not copy checkpoint-{SMOKE_STEPS} to {blocked}" in capsys.readouterr().err


def test_full_checkpoints_on_the_runtime_win_over_the_drive_copies(measured, tmp_path):
    """A restarted kernel on the same runtime keeps AdamW's moments; only an empty (new) runtime takes Drive's."""
    from helpers.runtime.mirror import CheckpointMirror

    work, figures = measured
    mirror = CheckpointMirror(work / "drive" / "training")
    assert mirror.restore(work / "runtime" / "training") is None  # as new as Drive's newest: nothing copied
    fresh = tmp_path / "new-runtime"
    assert f"step {SMOKE_STEPS}" in mirror.restore(fresh)
    assert sorted(p.name for p in fresh.iterdir()) == sorted(figures["copies_kept"])
    assert last_checkpoint(fresh, verbose=False) == str(fresh / f"checkpoint-{SMOKE_STEPS}")
