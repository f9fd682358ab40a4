"""What training writes to Google Drive, measured on a stand-in folder and scaled to whisper-small (issue 17).

    .venv/bin/python -m benchmarks.drive [--result drive.json]

A smoke run with the t4 profile's save cadence (five saves: every 2 of 10 steps) trains with its full
checkpoints in a runtime folder and a :class:`helpers.runtime.mirror.CheckpointMirror` into a :class:`DriveStandIn`,
a folder whose every byte written and deleted is counted (Linux inotify, from outside the code under test),
then saves the final model there as notebook 04 does. The bytes in weight files scale with the parameter
count (the smoke model's to whisper-small's 241.7M), the rest (processor, states, arguments) is the same for
any Whisper with the same vocabulary and is kept as measured. The same figure is worked out from the
parameter count alone, and for the old way (full checkpoints straight onto Drive). A few seconds of CPU.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import select
import struct
import threading
from pathlib import Path
from typing import Self

WHISPER_SMALL_PARAMETERS = 241_734_912  # WhisperForConditionalGeneration("openai/whisper-small")
T4_SAVES = 5  # 500 steps, a save every 100
BUDGET_BYTES = 4 * 10**9  # issue 17: a whole t4 run writes at most 4 GB to Drive, deleted files included
SMOKE_STEPS, SMOKE_SAVE_STEPS = 10, 2  # five saves, as the t4 profile's 500 / 100

_IN_CLOSE_WRITE, _IN_MOVED_FROM, _IN_MOVED_TO = 0x8, 0x40, 0x80
_IN_CREATE, _IN_DELETE, _IN_ISDIR, _IN_Q_OVERFLOW = 0x100, 0x200, 0x40000000, 0x4000
_EVENT = struct.Struct("iIII")


class DriveStandIn:
    """A folder playing a mounted Google Drive: counts every byte written to and deleted from files under it.

    A file counts its full size each time it is closed after writing (Drive uploads whole files), and its
    last size when it is deleted (Drive keeps it in the bin). Watched with inotify, so whatever writes there
    (the trainer, our callback, ``save_pretrained``) is counted without being changed. Use as a context manager.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written: dict[str, int] = {}  # path relative to the folder -> bytes written in all
        self.deleted = 0
        self.overflowed = False
        self._sizes: dict[str, int] = {}
        self._scanned: set[str] = set()  # counted by a scan, not yet by their close
        self._watches: dict[int, Path] = {}
        self._moves: dict[int, str] = {}
        self._folder_moves: dict[int, Path] = {}
        self._libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self._fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._stop_read, self._stop_write = os.pipe()
        self._watch(self.folder)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        os.write(self._stop_write, b"x")
        self._thread.join(timeout=30)
        for fd in (self._fd, self._stop_read, self._stop_write):
            os.close(fd)

    @property
    def bytes_written(self) -> int:
        return sum(self.written.values())

    def _relative(self, path: Path) -> str:
        return str(path.relative_to(self.folder))

    def _count(self, path: Path, scanned: bool = False) -> None:
        try:
            size = path.stat().st_size
        except OSError:
            return  # gone already (renamed away): counted when its new name is closed or moved in
        key = self._relative(path)
        # A file found by a folder's scan may still have been being written: its close, if the new watch saw it,
        # replaces that count instead of adding to it (a busy machine scans mid-copy, then hears the close).
        earlier = self._sizes.get(key, 0) if key in self._scanned else 0
        self._scanned.discard(key)
        if scanned:
            self._scanned.add(key)
        self.written[key] = self.written.get(key, 0) - earlier + size
        self._sizes[key] = size

    def _watch(self, folder: Path) -> None:
        mask = _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
        wd = self._libc.inotify_add_watch(self._fd, str(folder).encode(), mask)
        if wd >= 0:
            self._watches[wd] = folder
        # Whatever was written before the watch existed (a folder and its files made at once) counts too.
        for path in folder.iterdir() if folder.is_dir() else ():
            if path.is_dir():
                self._watch(path)
            elif path.is_file() and self._relative(path) not in self._sizes:
                self._count(path, scanned=True)

    def _renamed(self, old: Path, new: Path) -> None:
        """A folder renamed inside the watched folder: Drive renames it in place, nothing is uploaded again.

        What was written under the old name counts under the new one (the mirror writes a copy under a
        temporary name and renames it when complete), and the watches follow the folder.
        """
        before, after = self._relative(old) + os.sep, self._relative(new) + os.sep
        for table in (self._sizes, self.written):
            for inner in [k for k in table if k.startswith(before)]:
                table[after + inner[len(before):]] = table.pop(inner)
        for inner in [k for k in self._scanned if k.startswith(before)]:
            self._scanned.remove(inner)
            self._scanned.add(after + inner[len(before):])
        for wd, folder in list(self._watches.items()):
            if folder == old or old in folder.parents:
                self._watches[wd] = new / folder.relative_to(old)
        # A busy machine may rename the folder before its creation is read: then no watch was ever added under
        # the old name, and what it holds is counted now (files counted under the old name are skipped).
        self._watch(new)

    def _run(self) -> None:
        while True:
            ready, _, _ = select.select([self._fd, self._stop_read], [], [])
            if self._fd in ready:
                self._drain()
            if self._stop_read in ready:
                self._drain()
                return

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            offset = 0
            while offset < len(data):
                wd, mask, cookie, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\0").decode()
                offset += _EVENT.size + length
                self._event(wd, mask, cookie, name)

    def _event(self, wd: int, mask: int, cookie: int, name: str) -> None:
        if mask & _IN_Q_OVERFLOW:
            self.overflowed = True
            return
        folder = self._watches.get(wd)
        if folder is None or not name:
            return
        path = folder / name
        key = self._relative(path)
        if mask & _IN_ISDIR:
            if mask & _IN_MOVED_TO and cookie in self._folder_moves:
                self._renamed(self._folder_moves.pop(cookie), path)
            elif mask & (_IN_CREATE | _IN_MOVED_TO):
                self._watch(path)
            elif mask & _IN_MOVED_FROM:
                self._folder_moves[cookie] = path  # renamed inside the folder, or moved out: known at MOVED_TO
            elif mask & _IN_DELETE:
                prefix = key + os.sep
                for inner in [k for k in self._sizes if k.startswith(prefix)]:
                    self.deleted += self._sizes.pop(inner)
            return
        if mask & _IN_CLOSE_WRITE:
            self._count(path)
        elif mask & _IN_MOVED_FROM:
            self._moves[cookie] = key
            self._sizes.pop(key, None)
        elif mask & _IN_MOVED_TO:
            if self._moves.pop(cookie, None) is None:  # moved in from outside: uploaded
                self._count(path)
            else:
                try:
                    self._sizes[key] = path.stat().st_size
                except OSError:
                    pass
        elif mask & _IN_DELETE:
            self.deleted += self._sizes.pop(key, 0)


def _step(name: str) -> int:
    return int(name.split("-")[1])


def parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def small_data(processor, train_clips: int = 8, validation_clips: int = 2):
    """A few bundled clips, prepared: the smoke profile's data, cut to what five saves need."""
    from datasets import DatasetDict

    from helpers.config import BUNDLED_CORPUS
    from helpers.data import load_common_voice
    from helpers.preparation import prepare_splits

    splits = load_common_voice(BUNDLED_CORPUS, validation_size=validation_clips)
    splits = DatasetDict(train=splits["train"].select(range(train_clips)), validation=splits["validation"])
    return prepare_splits(splits, processor, num_proc=1)[0]


def smoke_trainer(prepared, drive: Path, runtime: Path, max_steps: int = SMOKE_STEPS):
    """The smoke model's trainer with the t4 cadence scaled down, full checkpoints in ``runtime``, the
    small copies in ``drive / "training"``; as notebook 04 builds it."""
    from helpers.config import get_config
    from helpers.model import load_model_and_processor
    from helpers.runtime.mirror import CheckpointMirror
    from helpers.training import build_trainer

    config = get_config("smoke", max_steps=max_steps, save_steps=SMOKE_SAVE_STEPS, eval_steps=SMOKE_SAVE_STEPS,
                        logging_steps=1, train_batch_size=2, eval_batch_size=2, generation_max_length=4)
    model, processor = load_model_and_processor(config.model, config.language, config.task)
    return build_trainer(model, processor, prepared, config, runtime, callbacks=[CheckpointMirror(drive / "training")],
                         disable_tqdm=True, report_to=[]), processor


def weight_bytes(written: dict[str, int]) -> int:
    return sum(size for path, size in written.items() if Path(path).suffix == ".safetensors")


def projection(measured_weights: int, measured_other: int, smoke_parameters: int) -> dict:
    """Bytes a 500-step whisper-small run writes to Drive: the measured run scaled, and from parameters alone."""
    from helpers.runtime.mirror import save_costs

    scaled = measured_weights * WHISPER_SMALL_PARAMETERS / smoke_parameters + measured_other
    cost = save_costs(WHISPER_SMALL_PARAMETERS)
    return {
        "whisper_small_parameters": WHISPER_SMALL_PARAMETERS,
        "scaled_from_smoke_bytes": int(scaled),
        "from_parameters_bytes": T4_SAVES * cost["mirror"] + cost["final_model"],
        "full_checkpoints_on_drive_bytes": T4_SAVES * cost["full"] + cost["final_model"],  # the old way
        "full_checkpoint_bytes": cost["full"],
        "drive_copy_bytes": cost["mirror"],
        "final_model_bytes": cost["final_model"],
        "budget_bytes": BUDGET_BYTES,
        "within_budget": scaled <= BUDGET_BYTES,
    }


def measure(work: Path) -> dict:
    """The smoke run on a stand-in Drive; returns what it wrote there, and the whisper-small projection."""
    from helpers.config import get_config
    from helpers.model import load_processor
    from helpers.training import train

    config = get_config("smoke")
    prepared = small_data(load_processor(config.model, config.language, config.task))
    drive, runtime = work / "drive", work / "runtime" / "training"
    with DriveStandIn(drive) as stand_in:
        trainer, processor = smoke_trainer(prepared, drive, runtime)
        train(trainer, resume=False)
        trainer.save_model(str(drive / "model"))  # as 04: the kept model, fp32, into the workspace
        processor.save_pretrained(str(drive / "model"))
    written = dict(stand_in.written)
    weights = weight_bytes(written)
    smoke = parameters(trainer.model)
    copies = sorted({Path(p).parts[1] for p in written if p.startswith("training/checkpoint-")}, key=_step)
    return {
        "smoke_parameters": smoke,
        "saves": len(copies),
        "copies_written": copies,
        "copies_kept": sorted((p.name for p in (drive / "training").glob("checkpoint-*")), key=_step),
        "bytes_written": stand_in.bytes_written,
        "bytes_deleted": stand_in.deleted,
        "weight_bytes_written": weights,
        "other_bytes_written": stand_in.bytes_written - weights,
        "inotify_overflowed": stand_in.overflowed,
        "runtime_checkpoint_bytes": sum(f.stat().st_size for f in runtime.glob("checkpoint-*/*") if f.is_file()),
        "whisper_small": projection(weights, stand_in.bytes_written - weights, smoke),
    }


def in_temporary_folder(run, args: argparse.Namespace, *extra) -> dict:
    """``run(folder, *extra)`` in a temporary folder; its figures printed as JSON, and written to ``args.result``."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        figures = run(Path(tmp), *extra)
    text = json.dumps(figures, indent=2)
    if args.result:
        args.result.write_text(text + "\n")
    print(text)
    return figures


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--result", type=Path, help="write the figures here as JSON")
    return in_temporary_folder(measure, parser.parse_args(argv))


if __name__ == "__main__":
    main()
