"""Training step time both ways, and evaluation throughput with and without sorting, on the smoke model.

    python -m benchmarks.model_bench --recipe RECIPE_DIR --ours OURS_DIR --result model.json

Training: two copies of the same smoke model take the same batches (same rows, same order), one from the
recipe's prepared dataset with the course's collator (padding stored log-mel matrices), one from ours with
``helpers.collator`` (computing log-mel from stored audio). A step is what the Trainer does with
``dataloader_num_workers=0`` (the smoke profile): fetch the rows (``Dataset.__getitems__``, as the
DataLoader does), collate, forward, backward, optimiser step; each part is timed. The two sides alternate
step by step, and which goes first alternates too, so load from other processes hits both alike.

Evaluation: ``helpers.evaluation.transcribe`` on our test split with the model trained above, the same
number of passes with ``sort_by_length`` off and on, interleaved. A few training steps do not teach the
smoke model when to stop, so every clip generates up to ``max_length`` tokens and the measured gain of
sorting is the collator's (batches of similar length need a shorter STFT). What sorting saves a trained
model, whose transcripts end with the speech, is estimated without a model: a batch decodes (rows x its
longest reference transcript) token slots, summed over batches, sorted and unsorted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def train_steps(recipe_dir: Path, ours_dir: Path, steps: int, batch_size: int, warmup: int, seed: int) -> tuple[dict, object, object]:
    """Time ``steps`` training steps each way after ``warmup`` untimed ones; return figures and our model."""
    from datasets import load_from_disk

    from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding
    from helpers.config import SMOKE_MODEL_DIR
    from helpers.model import load_model_and_processor

    from .recipe import DataCollatorSpeechSeq2SeqWithPadding as RecipeCollator

    recipe_train = load_from_disk(str(recipe_dir))["train"]
    ours_train = load_from_disk(str(ours_dir))["train"]
    if len(recipe_train) != len(ours_train):
        raise SystemExit(f"train splits differ: recipe {len(recipe_train)} rows, ours {len(ours_train)}")
    sides = {}
    for name, dataset in (("recipe", recipe_train), ("ours", ours_train)):
        torch.manual_seed(seed)
        model, processor = load_model_and_processor(str(SMOKE_MODEL_DIR), "sinhalese", "transcribe")
        model.train()
        collator = (
            RecipeCollator(processor)
            if name == "recipe"
            else DataCollatorSpeechSeq2SeqWithPadding(processor, model.config.decoder_start_token_id)
        )
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        sides[name] = dict(model=model, processor=processor, dataset=dataset, collator=collator, optimizer=optimizer,
                           fetch=[], collate=[], compute=[], loss=[])
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    while len(order) < (warmup + steps) * batch_size:
        order += torch.randperm(len(ours_train), generator=generator).tolist()
    for step in range(warmup + steps):
        indices = order[step * batch_size : (step + 1) * batch_size]
        names = ["recipe", "ours"] if step % 2 == 0 else ["ours", "recipe"]
        for name in names:
            side = sides[name]
            t0 = time.perf_counter()
            rows = side["dataset"].__getitems__(indices)
            t1 = time.perf_counter()
            batch = side["collator"](rows)
            t2 = time.perf_counter()
            loss = side["model"](**batch).loss
            loss.backward()
            side["optimizer"].step()
            side["optimizer"].zero_grad(set_to_none=True)
            t3 = time.perf_counter()
            if step >= warmup:
                side["fetch"].append(t1 - t0)
                side["collate"].append(t2 - t1)
                side["compute"].append(t3 - t2)
            side["loss"].append(float(loss.detach()))
            if step == 0:
                side["first_features"] = batch["input_features"]
    figures = {}
    for name, side in sides.items():
        totals = [a + b + c for a, b, c in zip(side["fetch"], side["collate"], side["compute"])]
        figures[name] = {
            "step_s_median": _median(totals),
            "fetch_s_median": _median(side["fetch"]),
            "collate_s_median": _median(side["collate"]),
            "compute_s_median": _median(side["compute"]),
            "step_s_all": totals,
            "loss_first": side["loss"][0],
            "loss_last": side["loss"][-1],
        }
    figures["steps"], figures["warmup"], figures["batch_size"] = steps, warmup, batch_size
    # The same clips through both paths: how far our log-mel (from stored 16-bit audio) is from the recipe's.
    difference = (sides["ours"]["first_features"] - sides["recipe"]["first_features"]).abs()
    figures["features_max_abs_diff"] = float(difference.max())
    figures["features_mean_abs_diff"] = float(difference.mean())
    return figures, sides["ours"]["model"], sides["ours"]["processor"]


def evaluation(model, processor, ours_dir: Path, batch_size: int, max_length: int, passes: int) -> dict:
    """Throughput of batched generation on our test split, unsorted vs sorted by duration, interleaved."""
    from datasets import load_from_disk

    from helpers.evaluation import transcribe

    test = load_from_disk(str(ours_dir))["test"]
    model.eval()
    times: dict[str, list[float]] = {"unsorted": [], "sorted": []}
    texts: dict[str, list[str]] = {}
    for _ in range(passes):
        for name in ("unsorted", "sorted"):
            start = time.perf_counter()
            texts[name] = transcribe(model, processor, test, batch_size, max_length, sort_by_length=name == "sorted")
            times[name].append(time.perf_counter() - start)
    same = sum(a == b for a, b in zip(texts["unsorted"], texts["sorted"]))
    lengths = [len(processor.tokenizer(t, add_special_tokens=False).input_ids) for t in texts["sorted"]]
    return {
        "n_clips": len(test),
        "batch_size": batch_size,
        "max_length": max_length,
        "passes": passes,
        "unsorted_s": times["unsorted"],
        "sorted_s": times["sorted"],
        "unsorted_clips_per_s": len(test) / _median(times["unsorted"]),
        "sorted_clips_per_s": len(test) / _median(times["sorted"]),
        "same_predictions": same,
        "generated_tokens_mean": sum(lengths) / max(1, len(lengths)),
        "generated_tokens_max": max(lengths, default=0),
        **token_slots(test, batch_size),
    }


def token_slots(test, batch_size: int) -> dict:
    """Token slots a model decodes per clip if each transcript stops at its reference length.

    ``generate`` runs a batch until its longest transcript ends, so a batch costs (rows x longest labels)
    token slots; divided by the clips, unsorted vs sorted by duration, with the padding-free minimum.
    """
    labels = [len(ids) for ids in test.select_columns(["labels"]).to_dict()["labels"]]
    durations = test.select_columns(["duration"]).to_dict()["duration"]
    orders = {"unsorted": list(range(len(labels))), "sorted": sorted(range(len(labels)), key=durations.__getitem__)}
    slots = {}
    for name, order in orders.items():
        batches = [order[k : k + batch_size] for k in range(0, len(order), batch_size)]
        slots[name] = sum(len(batch) * max(labels[i] for i in batch) for batch in batches)
    n = max(1, len(labels))
    return {
        "reference_token_slots_per_clip_unsorted": slots["unsorted"] / n,
        "reference_token_slots_per_clip_sorted": slots["sorted"] / n,
        "reference_tokens_per_clip": sum(labels) / n,
        "reference_token_slots_ratio": slots["sorted"] / max(1, slots["unsorted"]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, required=True, help="the recipe's prepared dataset (save_to_disk)")
    parser.add_argument("--ours", type=Path, required=True, help="our prepared dataset (save_to_disk)")
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per side")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8, help="the smoke profile's train batch size")
    parser.add_argument("--eval-batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64, help="the smoke profile's generation_max_length")
    parser.add_argument("--eval-passes", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import datasets

    datasets.disable_progress_bars()
    training, model, processor = train_steps(args.recipe, args.ours, args.steps, args.batch_size, args.warmup, args.seed)
    evaluated = evaluation(model, processor, args.ours, args.eval_batch_size, args.max_length, args.eval_passes)
    result = {"training": training, "evaluation": evaluated, "torch_threads": torch.get_num_threads()}
    args.result.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
