"""One side of the preprocessing benchmark, run in its own process (``benchmarks.measure`` watches it).

    python -m benchmarks.prep recipe --data CORPUS --out DIR --result side.json
    python -m benchmarks.prep ours   --data CORPUS --out DIR --result side.json --num-proc 2

Setup (imports, the processor, librosa's first-call compilation) is timed apart from the work, which is
what a learner waits for on every new dataset: load the rows, preprocess every split, ``save_to_disk``.
The result file holds the timings, the bytes on disk and, per split, the kept clips' labels in order, so
the runner can check that both sides processed the same clips into the same labels.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

from .measure import dir_bytes


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its children that have ended (map workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _column(dataset, name: str) -> list:
    """A column as plain Python values (``datasets`` 5 returns a lazy ``Column`` object)."""
    return dataset.select_columns([name]).to_dict()[name]


def _clip_names(folder: Path, split_names: tuple[str, ...]) -> list[str]:
    from .corpus import read_rows

    return [row["path"] for name in split_names for row in read_rows(folder / f"{name}.tsv")]


def run_recipe(data: Path, out: Path, num_proc: int) -> dict:
    """The course's recipe (``benchmarks.recipe``): librosa decoding, per-clip log-mel, ``map(num_proc=1)``."""
    import librosa

    from helpers.config import SMOKE_MODEL_DIR
    from helpers.model import load_processor

    from . import recipe

    processor = load_processor(str(SMOKE_MODEL_DIR), "sinhalese", "transcribe")
    # librosa compiles its numba kernels on first use (tens of seconds once); keep that out of the timing.
    librosa.load(str(next((data / "clips").iterdir())), sr=16000)
    start, cpu = time.perf_counter(), cpu_seconds()
    mapped = recipe.map_dataset(data, processor, num_proc=num_proc)
    # The recipe keeps no clip name: rows stay in tsv order, and only train loses rows (clips of 30 s+).
    kept_train = [recipe.is_audio_in_length_range(length) for length in _column(mapped["train"], "input_length")]
    prepared = recipe.filter_train(mapped)
    prepared.save_to_disk(str(out))
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    names = {"train": _clip_names(data, ("train", "dev")), "test": _clip_names(data, ("test",))}
    names["train"] = [name for name, keep in zip(names["train"], kept_train) if keep]
    clips = {
        split: {"names": names[split], "labels": _column(dataset, "labels"), "seconds": _column(dataset, "input_length")}
        for split, dataset in prepared.items()
    }
    return {"seconds": seconds, "cpu_s": cpu, "clips": clips,
            "feature_dtype": str(prepared["train"].features["input_features"])}


def run_ours(data: Path, out: Path, num_proc: int) -> dict:
    """Our path: ``helpers.preparation.prepare_splits`` (16 kHz FLAC audio) over the course's splits."""
    from datasets import DatasetDict

    from helpers.config import SMOKE_MODEL_DIR
    from helpers.data import _cv_split
    from helpers.model import load_processor
    from helpers.preparation import prepare_splits

    processor = load_processor(str(SMOKE_MODEL_DIR), "sinhalese", "transcribe")
    start, cpu = time.perf_counter(), cpu_seconds()
    # The course's two splits (train + dev, test), as the recipe reads them: this compares preprocessing, and
    # load_common_voice would also hold a validation slice of dev out of training.
    splits = DatasetDict(train=_cv_split(Path(data), ("train", "dev")), test=_cv_split(Path(data), ("test",)))
    prepared, report = prepare_splits(splits, processor, max_label_tokens=448, num_proc=num_proc)
    prepared.save_to_disk(str(out))
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    names = {"train": _clip_names(data, ("train", "dev")), "test": _clip_names(data, ("test",))}
    clips = {}
    for split, dataset in prepared.items():
        dropped = {Path(row["source"]).name for row in report[split]["dropped_rows"]}
        kept = [n for n in names[split] if n not in dropped]
        clips[split] = {"names": kept, "labels": _column(dataset, "labels"), "seconds": _column(dataset, "duration")}
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "clips": clips,
        "dropped": {split: part["dropped_by_reason"] for split, part in report.items()},
        "feature_dtype": str(prepared["train"].features["audio_16k"]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("side", choices=("recipe", "ours"))
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--num-proc", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    import datasets

    datasets.disable_progress_bars()
    run = run_recipe if args.side == "recipe" else run_ours
    result = run(args.data, args.out, args.num_proc)
    n_clips = sum(len(part["labels"]) for part in result["clips"].values())
    result.update(
        side=args.side,
        num_proc=args.num_proc,
        n_clips=n_clips,
        clips_per_s=n_clips / result["seconds"],
        # What the run got of the machine (cores' worth of CPU time per second) and what a clip costs: on a
        # shared machine the first says why wall time moved, the second does not depend on the load.
        cores_used=result["cpu_s"] / result["seconds"],
        cpu_ms_per_clip=1000 * result["cpu_s"] / n_clips,
        setup_s=time.perf_counter() - started - result["seconds"],
        disk_bytes=dir_bytes(args.out),
        cpu_count=os.cpu_count(),
    )
    args.result.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
