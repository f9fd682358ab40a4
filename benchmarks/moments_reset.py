"""What resuming from the Drive copy costs: AdamW's moments start again (issue 17), measured on real weights.

    .venv/bin/python -m benchmarks.moments_reset [--steps 20] [--result moments.json]

OpenAI's tiny.en (converted offline, ``tools.pretrained_whisper``) is fine-tuned with the course's recipe on
the bundled corpus's English clips, twice with the same seed: once without a break, once resumed half-way
from the :class:`helpers.runtime.mirror.CheckpointMirror` copy alone (fp16 weights, schedule, step, RNG; moments
from zero) in an empty runtime folder, as after a Colab disconnect. Both final models are scored on the
English test clips; the difference is the cost of the reset. Minutes of CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def english(splits):
    from datasets import DatasetDict

    return DatasetDict({name: split.filter(lambda s: s.isascii(), input_columns="sentence")
                        for name, split in splits.items()})


def run(steps: int, batch_size: int, work: Path) -> dict:
    from helpers.config import BUNDLED_CORPUS, get_config
    from helpers.data import load_common_voice
    from helpers.evaluation import evaluate_model
    from helpers.model import load_model_and_processor
    from helpers.preparation import prepare_splits
    from helpers.runtime.mirror import CheckpointMirror
    from helpers.training import build_trainer, train
    from tools.pretrained_whisper import ensure_pretrained

    model_dir = str(ensure_pretrained("tiny.en"))
    half = steps // 2
    config = get_config("smoke", model=model_dir, language=None, task=None, max_steps=steps, save_steps=half,
                        eval_steps=half, logging_steps=1, train_batch_size=batch_size, eval_batch_size=8,
                        generation_max_length=96, save_total_limit=3)
    _, processor = load_model_and_processor(model_dir, None, None)
    prepared = prepare_splits(english(load_common_voice(BUNDLED_CORPUS)), processor, num_proc=1)[0]

    def trained(runtime: Path, drive: Path, resume: bool) -> dict:
        model, _ = load_model_and_processor(model_dir, None, None)
        trainer = build_trainer(model, processor, prepared, config, runtime, callbacks=[CheckpointMirror(drive)],
                                disable_tqdm=True, report_to=[], load_best_model_at_end=False, eval_strategy="no")
        train(trainer, resume=resume)
        scores = evaluate_model(trainer.model, processor, prepared["test"], 8, 96)["scores"]
        losses = {e["step"]: e["loss"] for e in trainer.state.log_history if "loss" in e}
        return {"test": scores, "losses": losses}

    unbroken = trained(work / "a" / "runtime", work / "a" / "drive", resume=False)
    # The interrupted run: Drive holds the copy of step `half` only (made from the unbroken run's full
    # checkpoint by the same code as during training); the new runtime's disk is empty.
    drive = work / "b" / "drive"
    CheckpointMirror(drive).copy(work / "a" / "runtime" / f"checkpoint-{half}")
    resumed = trained(work / "b" / "runtime", drive, resume=True)
    model, _ = load_model_and_processor(model_dir, None, None)
    zero_shot = evaluate_model(model, processor, prepared["test"], 8, 96)["scores"]
    return {"model": "tiny.en", "steps": steps, "batch_size": batch_size, "resumed_at": half, "recipe": config.recipe,
            "learning_rate": config.learning_rate, "train_clips": len(prepared["train"]),
            "test_clips": len(prepared["test"]), "zero_shot": zero_shot, "unbroken": unbroken,
            "resumed_from_drive_copy": resumed,
            "wer_difference": resumed["test"]["wer"] - unbroken["test"]["wer"]}


def main(argv: list[str] | None = None) -> dict:
    from benchmarks.drive import in_temporary_folder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="steps of each run; the break is half-way")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--result", type=Path)
    args = parser.parse_args(argv)
    return in_temporary_folder(lambda folder: run(args.steps, args.batch_size, folder), args)


if __name__ == "__main__":
    main()
