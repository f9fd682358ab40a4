"""Finding the checkpoint to resume from: the newest ``checkpoint-N`` folder that was saved to the end.

Used by training (which checkpoint to resume) and by the Drive mirror (which copies to restore), so it sits
below both.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
            "adapter_model.safetensors")
# Written last by ``Trainer._save_checkpoint`` (a private method: tests/test_private_apis.py checks the order).
STATE = "trainer_state.json"


def _file_is_whole(path: Path) -> bool:
    """Whether a checkpoint file holds all the bytes its own format says it has (read from its ends only).

    ``torch.save`` writes zip archives, whose directory is at the very end; a safetensors file starts
    with its header's length and the header gives every tensor's end offset. A copy cut short, as a
    Drive upload interrupted by a disconnect leaves it, fails these checks; a complete file passes them
    without being loaded.
    """
    try:
        size = path.stat().st_size
        if size == 0:
            return False
        with open(path, "rb") as handle:
            start = handle.read(8)
            if path.suffix in (".pt", ".pth", ".bin") and start[:4] == b"PK\x03\x04":
                return zipfile.is_zipfile(path)
            if path.suffix == ".safetensors":
                header_size = int.from_bytes(start, "little")
                header = json.loads(handle.read(header_size))
                ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
                return size == 8 + header_size + max(ends, default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False
    return True


def checkpoint_is_complete(folder: str | Path) -> bool:
    """Whether a checkpoint folder was saved to the end and can be resumed from.

    ``Trainer._save_checkpoint`` writes the weights, then optimizer, scheduler and RNG states, and
    ``trainer_state.json`` last, straight into ``checkpoint-N`` (transformers 5 uses no temporary folder).
    A kill during saving therefore leaves ``trainer_state.json`` missing or cut off. A readable state,
    weights, and every file whole (a Drive folder synced up to a disconnect may hold cut or empty
    copies; see ``_file_is_whole``) mean complete.
    """
    folder = Path(folder)
    try:
        state = json.loads((folder / STATE).read_text(encoding="utf-8"))
        files = [p for p in folder.iterdir() if p.is_file()]
    except (OSError, ValueError):
        return False
    if not isinstance(state, dict) or "global_step" not in state:
        return False
    if not any((folder / name).is_file() for name in _WEIGHTS):
        return False
    return all(_file_is_whole(p) for p in files)


def last_checkpoint(output_dir: str | Path, verbose: bool = True) -> str | None:
    """The newest *complete* ``checkpoint-N`` folder in ``output_dir``, or ``None``.

    transformers' ``get_last_checkpoint`` takes the highest N even when its save was cut off, and resuming
    from it fails or silently restarts the optimizer; here such a folder is skipped (and left in place:
    the trainer overwrites it when it reaches that step again).
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    found = sorted(
        ((int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))),
        reverse=True,
    )
    for _, folder in found:
        if checkpoint_is_complete(folder):
            return str(folder)
        if verbose:
            print(f"Skipping {folder}: its save was interrupted (a file is missing or cut short).")
    return None
