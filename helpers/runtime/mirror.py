"""Checkpoints on the runtime's disk, and on Drive only what a new runtime needs to go on (issue 17).

A whisper-small checkpoint holds fp32 weights (0.97 GB) and AdamW's two moments (1.93 GB): about 2.9 GB.
Saving one every 100 steps straight into a mounted Drive writes about 15 GB over 500 steps, and the
checkpoints the trainer rotates away sit in Drive's bin, counting against the free 15 GB for 30 days.

So the trainer saves its full checkpoints on the runtime's own disk (fast, free, gone after a
disconnect), and :class:`CheckpointMirror`, a ``TrainerCallback``, copies to Drive after each save:

* the weights in float16 (0.48 GB for whisper-small; the fp32 master weights round to fp16 once, on resume);
* ``optimizer.pt`` with the optimizer's hyper-parameters and no moments (kilobytes instead of 1.93 GB);
* the scheduler, the fp16 grad scaler, the RNG states, ``trainer_state.json`` (step, logs, best
  checkpoint), the training arguments and the processor, as the trainer wrote them.

The newest and the best copy stay on Drive; older ones are deleted. On a new runtime :func:`restore` copies
them back to the runtime's disk and the Trainer resumes from them through its own code path: step, learning
rate schedule, RNG and the order of the data continue where they were, the weights come back (rounded to
fp16), and AdamW's moments start again from zero, like a restart with its bias correction (see
docs/checkpoints-and-drive.md for what that costs in WER). A run that is not interrupted never reads the copies.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import TrainerCallback

from helpers.runtime.checkpoints import STATE, checkpoint_is_complete, last_checkpoint
from helpers.runtime.errors import explain_disk_error, first_line

OPTIMIZER = "optimizer.pt"
PARTIAL_PREFIX = ".partial-"  # a copy being written: renamed to checkpoint-N once complete


def _is_model_weights(path: Path) -> bool:
    """The full model's safetensors file(s), not a LoRA adapter (small, and kept as it is)."""
    return path.suffix == ".safetensors" and path.name.startswith("model")


def write_fp16(source: Path, target: Path) -> None:
    """Copy a safetensors file with every floating-point tensor cast to float16."""
    tensors = {}
    with safe_open(str(source), framework="pt") as handle:
        metadata = handle.metadata()
        for key in handle.keys():  # noqa: SIM118 - safe_open is not a dict
            tensor = handle.get_tensor(key)
            tensors[key] = tensor.to(torch.float16) if tensor.is_floating_point() else tensor
    save_file(tensors, str(target), metadata=metadata or {"format": "pt"})


def _optimizer_without_moments(checkpoint: Path, optimizer) -> dict:
    """The optimizer's state dict with its hyper-parameters (param_groups) and no per-parameter state.

    ``torch.optim.Optimizer.load_state_dict`` accepts it, so the Trainer's own resume loads it, and with it
    the scheduler (which the Trainer loads only beside an optimizer file); AdamW then starts its moments again.
    """
    if optimizer is not None:
        groups = optimizer.state_dict()["param_groups"]
    else:  # no optimizer handed to the callback: read the groups from the full file
        groups = torch.load(checkpoint / OPTIMIZER, map_location="cpu", weights_only=True)["param_groups"]
    return {"state": {}, "param_groups": groups}


class CheckpointMirror(TrainerCallback):
    """After every checkpoint save, copy what resuming needs to ``folder`` (on Drive in Colab), smaller.

    Pass it to the trainer (``callbacks=[CheckpointMirror(folder)]``) and train with ``helpers.training.train``,
    which restores from ``folder`` when the trainer's own output folder has nothing newer. ``claim``, when
    given, is called by :meth:`claim` once ``train`` knows whether it resumes (the workspace's stamp check).
    """

    def __init__(self, folder: str | Path, claim: Callable[[bool], None] | None = None):
        self.folder = Path(folder)
        self.claim_for_run = claim

    def claim(self, resume: bool, output_dir: str | Path) -> None:
        """Make the checkpoints here and in ``output_dir`` this run's, once ``resume`` is known.

        Calls the ``claim`` given to the mirror with whether earlier checkpoints (here or in ``output_dir``)
        are to be resumed: it stops a resume of another run's before anything is touched, and marks the folder
        as this run's (:func:`helpers.runtime.workspace.checkpoint_copies_on_drive`). Starting over,
        ``train`` has deleted them first.
        """
        if self.claim_for_run is not None:
            earlier = any(path.is_dir() for folder in (self.folder, Path(output_dir))
                          for path in folder.glob("checkpoint-*"))
            self.claim_for_run(resume and earlier)

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        source = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        try:
            self.copy(source, kwargs.get("optimizer"))
        except Exception as error:  # noqa: BLE001 - whatever failed, only the safety copy is lost, not the run
            # A full Drive reaches us as safetensors' SafetensorError or torch.save's RuntimeError as often as
            # an OSError; training goes on either way, with the learner told what is at risk and why.
            needed = copy_bytes(source)
            why = explain_disk_error(error, self.folder, needed) or f"{type(error).__name__}: {first_line(error)}"
            print(f"warning: could not copy {source.name} to {self.folder}: {why} Training goes on, but a "
                  "disconnect now would lose the steps since the last copy.", file=sys.stderr)
            return
        keep = {source.name} | ({Path(state.best_model_checkpoint).name} if state.best_model_checkpoint else set())
        for old in self.folder.glob("checkpoint-*"):
            if old.is_dir() and old.name not in keep:
                self._delete(old)

    def _delete(self, old: Path) -> None:
        """Delete an older copy; when that fails, say what is left where (it counts against Drive's space)."""
        failed = _remove_tree(old)
        if failed:
            left = sum(p.stat().st_size for p in old.rglob("*") if p.is_file()) if old.exists() else 0
            why = explain_disk_error(failed[0], old) or first_line(failed[0])
            print(f"warning: could not delete the older copy {old} ({why}); {left / 1e6:.1f} MB of it are left "
                  f"there: delete that folder yourself (on Drive, then empty Drive's bin).", file=sys.stderr)

    def copy(self, checkpoint: Path, optimizer=None) -> Path:
        """Write the small copy of ``checkpoint`` into the mirror folder; ``trainer_state.json`` last.

        The copy is written under a temporary name (no ``checkpoint-N``, so nothing takes it for a checkpoint)
        and renamed when complete: a full Drive or a disconnect mid-copy leaves no half copy where a resume looks.
        """
        target = self.folder / checkpoint.name
        partial = self.folder / f"{PARTIAL_PREFIX}{checkpoint.name}"
        for stale in self.folder.glob(f"{PARTIAL_PREFIX}*"):  # what an earlier failed or cut-off copy left
            shutil.rmtree(stale, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            for path in sorted(p for p in checkpoint.iterdir() if p.is_file() and p.name != STATE):
                if _is_model_weights(path):
                    write_fp16(path, partial / path.name)
                elif path.name == OPTIMIZER:
                    torch.save(_optimizer_without_moments(checkpoint, optimizer), partial / OPTIMIZER)
                else:
                    shutil.copy2(path, partial / path.name)
            shutil.copy2(checkpoint / STATE, partial / STATE)
            if target.exists():  # the same step saved again (a run started over)
                shutil.rmtree(target)
            partial.rename(target)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)  # frees the space the half copy took
            raise
        return target

    def restore(self, output_dir: str | Path) -> str | None:
        """Copy the mirror's checkpoints into ``output_dir`` when it has nothing as new; returns a note or None.

        A new runtime's disk is empty; a runtime that only restarted its kernel still has its full
        checkpoints, and those (with AdamW's moments) win when they are as new as the mirror's.
        """
        newest = last_checkpoint(self.folder, verbose=False)
        if newest is None:
            return None
        local = last_checkpoint(output_dir, verbose=False)
        if local is not None and _step(local) >= _step(newest):
            return None
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        for folder in sorted(self.folder.glob("checkpoint-*"), key=_step):
            target = output_dir / folder.name
            if checkpoint_is_complete(folder) and not target.exists():
                partial = target.with_name(target.name + ".partial")
                shutil.rmtree(partial, ignore_errors=True)
                shutil.copytree(folder, partial)
                partial.rename(target)
        step = _step(newest)
        return (f"Restored the Drive copy of step {step} from {self.folder}: weights (saved in fp16), learning-rate "
                "schedule, step, random state and data order continue; AdamW's moments start again from zero.")


def _step(folder: str | Path) -> int:
    return int(Path(folder).name.split("-")[1].split(".")[0])


def _remove_tree(folder: Path) -> list[BaseException]:
    """``shutil.rmtree(folder)``, going on past what cannot be deleted; returns the errors met."""
    failed: list[BaseException] = []
    if sys.version_info >= (3, 12):
        shutil.rmtree(folder, onexc=lambda function, path, error: failed.append(error))
    else:  # onexc is new in 3.12; onerror is deprecated there
        shutil.rmtree(folder, onerror=lambda function, path, info: failed.append(info[1]))
    return failed


def copy_bytes(checkpoint: Path) -> int:
    """About how many bytes :meth:`CheckpointMirror.copy` writes for ``checkpoint``: fp16 weights (half the
    fp32 file), the optimizer without moments (a few kilobytes), every other file as it is."""
    total = 0
    for path in (p for p in Path(checkpoint).iterdir() if p.is_file()) if Path(checkpoint).is_dir() else ():
        size = path.stat().st_size
        total += size // 2 if _is_model_weights(path) else (0 if path.name == OPTIMIZER else size)
    return total


def find_mirror(trainer) -> CheckpointMirror | None:
    """The trainer's :class:`CheckpointMirror` callback, if it has one."""
    return next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, CheckpointMirror)), None)


def save_costs(parameters: int, trainable: int | None = None) -> dict[str, int]:
    """Bytes one save writes, for a model of ``parameters`` parameters (``trainable`` of them trained).

    ``full``: an ordinary checkpoint (fp32 weights, AdamW's two fp32 moments); ``mirror``: the copy on Drive
    (fp16 weights); ``final_model``: the fp32 model folder 04 saves at the end. Files of a few megabytes
    (processor, states) are left out here; :mod:`benchmarks.drive` measures them.
    """
    trainable = parameters if trainable is None else trainable
    return {"full": 4 * parameters + 8 * trainable, "mirror": 2 * parameters, "final_model": 4 * parameters}


def describe_cost(parameters: int, saves: int) -> str:
    """One paragraph for 04: what each save writes, and where."""
    cost = save_costs(parameters)
    drive = saves * cost["mirror"] + cost["final_model"]
    return (f"Each save writes {cost['full'] / 1e9:.2f} GB to the runtime's disk (fp32 weights and AdamW's moments) "
            f"and {cost['mirror'] / 1e9:.2f} GB to the workspace (fp16 weights, no moments); {saves} saves and "
            f"the final fp32 model write about {drive / 1e9:.1f} GB to the workspace in all, deleted copies included.")
