"""Small results files (JSON) written so that a killed session never leaves half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json(path: str | Path, data) -> None:
    """Write ``data`` as JSON atomically: a kill mid-write leaves the old file (or none), never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(temporary, path)  # atomic on POSIX and Windows when both are on the same file system


def read_json(path: str | Path):
    """The JSON in ``path``, or ``None`` when it is missing or unreadable (then it is simply recomputed)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
