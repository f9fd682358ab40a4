"""Whole-split evaluation of a whisper-small sized model in fp16: our ``transcribe`` against the course's path.

    python -m benchmarks.gpu_eval                                   # on a CUDA machine; no Hub access needed
    python -m benchmarks.gpu_eval --tiny --device cpu --clips 16 --max-length 16   # checks the code on a CPU

Run on an H100 and an H200 on 2026-11-26 (``scripts/gpu_checks.sh``; figures in docs/evaluation-speed.md). The goal:
the course's whole-split evaluation (2,212 Common Voice Dhivehi test clips) within 5 minutes on a T4-class budget of
15 GB. Two ways over the same synthetic test split, each timed with its peak GPU memory:

* ``course``: ``Seq2SeqTrainer.evaluate`` as the course sets it up, through our ``CourseSeq2SeqTrainer``,
  since the plain class stops there (see its docstring): ``predict_with_generate``,
  ``fp16_full_eval``, ``per_device_eval_batch_size=16``, ``generation_max_length=225``, dataset order,
  ``compute_metrics`` decoding and scoring, the loss computed too;
* ``ours``: ``helpers.evaluation.evaluate_model`` (fp16 copy on the GPU, clips sorted by duration, batch
  16, the same ``max_length``), also with ``sort_by_length`` off (``ours_unsorted``).

The model is built from whisper-small's shape (``benchmarks.gpu_step.whisper_small_config``) with random
weights and the real multilingual tokenizer and generation config (the smoke model's, whisper-small's
settings). Random weights rarely emit an end of text, so every row decodes to ``--max-length`` tokens: the
worst case, a model that loops as a zero-shot model often does on Dhivehi; ``--max-length 64`` stands in for
transcripts of typical length. The clips are noise of Common Voice's lengths (``--min-seconds`` to
``--max-seconds``), stored as our prepared datasets store audio (16 kHz FLAC), with random labels of
``--label-tokens`` tokens for the loss. Prints a table and a last line of JSON; writes
``benchmarks/results/gpu-eval-<timestamp>.json`` and ``gpu-eval-latest.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.gpu_step import MEMORY_BUDGET_BYTES, RESULTS_DIR, whisper_small_config

TIME_BUDGET_S = 5 * 60  # the goal for the whole test split
COURSE_TEST_CLIPS = 2212  # Common Voice Dhivehi's test split, as the course evaluates it


def synthetic_test_split(n: int, min_seconds: float, max_seconds: float, label_tokens: int, seed: int = 0):
    """``n`` rows shaped like our prepared test split: FLAC audio, labels, duration, sentence."""
    from datasets import Dataset

    from helpers.audio import SAMPLING_RATE, to_flac

    rng = np.random.default_rng(seed)
    rows = {"audio_16k": [], "labels": [], "duration": [], "sentence": []}
    for _ in range(n):
        seconds = float(rng.uniform(min_seconds, max_seconds))
        rows["audio_16k"].append(to_flac(0.05 * rng.standard_normal(int(seconds * SAMPLING_RATE)).astype(np.float32)))
        # <|startoftranscript|><|si|><|transcribe|><|notimestamps|> ... <|endoftext|>, as prepared labels are.
        rows["labels"].append([50258, 50322, 50359, 50363, *rng.integers(220, 50000, label_tokens - 5).tolist(), 50257])
        rows["duration"].append(seconds)
        rows["sentence"].append("x")
    return Dataset.from_dict(rows)


def build_model(tiny: bool):
    """A whisper-small shaped model (random weights) and the smoke model's processor and generation config."""
    from transformers import GenerationConfig, WhisperForConditionalGeneration

    from helpers.config import SMOKE_MODEL_DIR
    from helpers.model import ensure_smoke_model, load_processor

    ensure_smoke_model()
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(whisper_small_config(tiny))
    model.generation_config = GenerationConfig.from_pretrained(SMOKE_MODEL_DIR)
    model.generation_config.language, model.generation_config.task = "sinhalese", "transcribe"
    model.generation_config.forced_decoder_ids = None
    return model, load_processor(str(SMOKE_MODEL_DIR), "sinhalese", "transcribe")


def _memory_start(cuda: bool) -> None:
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _memory_end(cuda: bool) -> dict:
    if not cuda:
        return {"peak_allocated_bytes": None, "peak_reserved_bytes": None, "fits_15GB": None}
    torch.cuda.synchronize()
    reserved = torch.cuda.max_memory_reserved()
    return {"peak_allocated_bytes": torch.cuda.max_memory_allocated(), "peak_reserved_bytes": reserved,
            "fits_15GB": reserved <= MEMORY_BUDGET_BYTES}


def course_path(model, processor, test, args, cuda: bool) -> dict:
    """``Seq2SeqTrainer.evaluate`` with the course's evaluation arguments; time and peak memory."""
    from transformers import Seq2SeqTrainingArguments

    from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding
    from helpers.metrics import make_compute_metrics
    from helpers.training import CourseSeq2SeqTrainer

    with tempfile.TemporaryDirectory() as output_dir:
        training_args = Seq2SeqTrainingArguments(
            output_dir=output_dir, per_device_eval_batch_size=args.batch_size, predict_with_generate=True,
            generation_max_length=args.max_length, fp16=cuda and args.fp16, fp16_full_eval=cuda and args.fp16,
            report_to=[], use_cpu=not cuda,
            remove_unused_columns=False,  # our collator reads audio_16k (the course's stored input_features)
        )
        collator = DataCollatorSpeechSeq2SeqWithPadding(processor, model.config.decoder_start_token_id)
        # The plain Seq2SeqTrainer stops here: evaluate() outside training with fp16_full_eval halves the model
        # but not the float32 features (transformers #30673); our subclass casts them, nothing else changes.
        trainer = CourseSeq2SeqTrainer(model=model, args=training_args, data_collator=collator,
                                       compute_metrics=make_compute_metrics(processor.tokenizer))
        _memory_start(cuda)
        start = time.perf_counter()
        metrics = trainer.evaluate(test)
        seconds = time.perf_counter() - start
        memory = _memory_end(cuda)
        del trainer
    return {"path": "course", "seconds": seconds, **memory, "eval_loss": metrics.get("eval_loss")}


def our_path(model, processor, test, args, cuda: bool, sort: bool) -> dict:
    """``helpers.evaluation`` (fp16 copy on the GPU, batched generate); time and peak memory."""
    from helpers.device import model_for_inference
    from helpers.evaluation import references_of, transcribe
    from helpers.metrics import wer_scores

    _memory_start(cuda)
    start = time.perf_counter()
    runner = model_for_inference(model, cuda and args.fp16)  # what evaluate_model does
    placement = (next(runner.parameters()).device, next(runner.parameters()).dtype)
    predictions = transcribe(runner, processor, test, args.batch_size, args.max_length, sort_by_length=sort,
                             placement=placement)
    wer_scores(predictions, references_of(test, processor))
    seconds = time.perf_counter() - start
    memory = _memory_end(cuda)
    del runner
    tokens = [len(processor.tokenizer(p, add_special_tokens=False).input_ids) for p in predictions]
    return {"path": "ours" if sort else "ours_unsorted", "seconds": seconds, **memory,
            "generated_tokens_mean": float(np.mean(tokens)) if tokens else 0.0}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--clips", type=int, default=COURSE_TEST_CLIPS, help="test clips (the course's: 2212)")
    parser.add_argument("--batch-size", type=int, default=16, help="the course's per_device_eval_batch_size")
    parser.add_argument("--max-length", type=int, default=225, help="the course's generation_max_length")
    parser.add_argument("--label-tokens", type=int, default=40, help="label length, for the course path's loss")
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--no-fp16", dest="fp16", action="store_false")
    parser.add_argument("--tiny", action="store_true", help="a tiny model, to check the script on a CPU")
    parser.add_argument("--paths", nargs="+", choices=("course", "ours", "ours_unsorted"),
                        default=["course", "ours", "ours_unsorted"])
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("No CUDA GPU here: pass --device cpu (with --tiny) to check the script.")
    if not cuda and torch.cuda.is_available():
        raise SystemExit("--device cpu on a CUDA machine: helpers.device would still place evaluation on the GPU.")
    import datasets

    datasets.disable_progress_bars()
    results = {
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__, "args": {k: str(v) for k, v in vars(args).items()}, "paths": [],
    }
    test = synthetic_test_split(args.clips, args.min_seconds, args.max_seconds, args.label_tokens)
    model, processor = build_model(args.tiny)
    for name in args.paths:
        print(f"-- {name}", flush=True)
        if name == "course":
            figures = course_path(model, processor, test, args, cuda)
            model = model.float().cpu()  # the trainer moved (and, with fp16_full_eval, halved) it
        else:
            figures = our_path(model, processor, test, args, cuda, sort=name == "ours")
        figures["clips_per_s"] = args.clips / figures["seconds"]
        figures["seconds_for_course_split"] = COURSE_TEST_CLIPS / figures["clips_per_s"]
        figures["within_5_min"] = figures["seconds_for_course_split"] <= TIME_BUDGET_S
        results["paths"].append(figures)
    course = next((p for p in results["paths"] if p["path"] == "course"), None)
    print(f"\n| path | clips/s | s for {COURSE_TEST_CLIPS} clips | vs course | peak reserved (GB) | fits 15 GB |\n"
          "|---|---|---|---|---|---|")
    summary = {}
    for p in results["paths"]:
        p["speedup_vs_course"] = p["clips_per_s"] / course["clips_per_s"] if course else None
        gb = f"{p['peak_reserved_bytes'] / 1024**3:.1f}" if p["peak_reserved_bytes"] else "n/a"
        speedup = f"{p['speedup_vs_course']:.2f}x" if p["speedup_vs_course"] else "n/a"
        print(f"| {p['path']} | {p['clips_per_s']:.2f} | {p['seconds_for_course_split']:.0f} | {speedup} | {gb} | "
              f"{p['fits_15GB']} |")
        summary[p["path"]] = {"clips_per_s": round(p["clips_per_s"], 3), "speedup_vs_course": p["speedup_vs_course"],
                              "within_5_min": p["within_5_min"], "fits_15GB": p["fits_15GB"]}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = results["started"][:19].replace("-", "").replace(":", "")
    for name in (f"gpu-eval-{stamp}.json", "gpu-eval-latest.json"):
        (args.results_dir / name).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(summary))
    return results


if __name__ == "__main__":
    main()
