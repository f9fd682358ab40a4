"""A cached, Common Voice-shaped benchmark corpus made with the bundled corpus's generator.

Large corpora are made in shards, one per core, each a ``tools.make_corpus.make_corpus`` run with its own seed, then
merged into one Common Voice locale folder (``clips/`` + ``train.tsv``/``dev.tsv``/``test.tsv``/
``validated.tsv``). The result is cached under ``benchmarks/work/``, keyed by clip count, seed and
durations, so reruns start at once.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tools.make_corpus import _write_tsv, make_corpus

WORK_DIR = Path(__file__).resolve().parent / "work"
SPLITS = ("train", "dev", "test")
# A shard gives 5/8 of its clips to train, 1/8 to dev, 2/8 to test (speakers never cross splits), so a
# shard needs a few dozen clips for every split to get some; smaller corpora are made in one piece.
MIN_CLIPS_PER_SHARD = 32


def _shard(args: tuple[Path, int, int, float, float]) -> Path:
    out, n_clips, seed, min_seconds, max_seconds = args
    return make_corpus(out, "si", n_clips, seed, min_seconds, max_seconds)


def read_rows(path: Path) -> list[dict]:
    """The rows of one tsv written by the generator."""
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\"))


def corpus_dir(n_clips: int, seed: int = 0, min_seconds: float = 2.0, max_seconds: float = 12.0,
               work_dir: Path = WORK_DIR) -> Path:
    """Where the corpus with these parameters is (or will be) cached."""
    return Path(work_dir) / f"cv-si-{n_clips}clips-seed{seed}-{min_seconds:g}-{max_seconds:g}s"


def ensure_corpus(
    n_clips: int, seed: int = 0, min_seconds: float = 2.0, max_seconds: float = 12.0, workers: int | None = None,
    work_dir: Path = WORK_DIR,
) -> Path:
    """Return a Common Voice locale folder with ``n_clips`` 48 kHz mono MP3 clips, making it once."""
    out = corpus_dir(n_clips, seed, min_seconds, max_seconds, work_dir)
    stamp = out / "corpus.json"
    params = {"n_clips": n_clips, "seed": seed, "min_seconds": min_seconds, "max_seconds": max_seconds}
    if stamp.is_file() and json.loads(stamp.read_text())["params"] == params:
        return out
    if out.exists():
        shutil.rmtree(out)  # a half-made corpus from an interrupted run
    workers = workers or os.cpu_count() or 1
    shards = max(1, min(workers, n_clips // MIN_CLIPS_PER_SHARD))
    sizes = [n_clips // shards + (1 if k < n_clips % shards else 0) for k in range(shards)]
    # Shard k uses seed (seed * 1000 + k): distinct clip names, speakers and sentences per shard.
    jobs = [(out / f"shard-{k}", size, seed * 1000 + k, min_seconds, max_seconds) for k, size in enumerate(sizes)]
    print(f"Making a {n_clips}-clip corpus in {out} ({shards} shard(s); once, then cached)", flush=True)
    if shards == 1:
        shard_dirs = [_shard(jobs[0])]
    else:
        with ProcessPoolExecutor(shards) as pool:
            shard_dirs = list(pool.map(_shard, jobs))
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for shard in shard_dirs:
        for clip in (shard / "clips").iterdir():
            clip.rename(out / "clips" / clip.name)
        for split in SPLITS:
            rows[split] += read_rows(shard / f"{split}.tsv")
        shutil.rmtree(shard)
    for split in SPLITS:
        _write_tsv(out / f"{split}.tsv", rows[split])
    _write_tsv(out / "validated.tsv", [row for split in SPLITS for row in rows[split]])
    stamp.write_text(json.dumps({"params": params, "splits": {s: len(r) for s, r in rows.items()}}, indent=2))
    return out
