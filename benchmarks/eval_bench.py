"""Evaluation throughput with OpenAI's real Whisper weights (tiny.en, base), offline, on the CPU.

    python -m benchmarks.eval_bench --ours PREPARED_DIR --result eval.json [--models tiny.en base] [--clips 24]

The smoke model never learns when to stop, so it says nothing about sorting or batching: every row runs to
``max_length``. Real checkpoints (``tools/pretrained_whisper.ensure_pretrained``) stop where the speech
ends. On the English clips of the benchmark corpus (espeak-ng voices, 2-12 s), each model transcribes the
same clips with ``helpers.evaluation.transcribe`` in several ways (``PASSES``):

* ``course``: dataset order, batch 16, greedy: what ``Seq2SeqTrainer.evaluate`` does in the course;
* ``sorted``: sorted by duration, batch 16, greedy: ``transcribe``'s default;
* ``sorted_b4`` / ``unsorted_b4``: the same at batch 4;
* ``beam5``: sorted, batch 16, 5 beams: what ``pipeline("automatic-speech-recognition")`` uses by default.

For each pass: clips/s and CPU seconds per clip (on a shared machine the wall time follows the load, the
CPU time much less), the time and CPU spent in the encoder (a forward hook) and in decoding (the rest of
``generate``), the four error rates, and the token slots the batches computed. The greedy passes must
give the same error rates as the course's pass (asserted: the benchmark fails otherwise); how many
transcripts are identical is recorded too.

**Stopping of finished rows.** ``generate`` runs a batch until its longest row ends; a row that has ended
is still computed, as padding, at every later step. Greedy transcripts do not depend on the batch (checked
above), so the lengths of the course pass's transcripts give exactly what any order and batch size
costs the decoder (``batching``): token slots per clip (rows x steps: what a CPU pays), sequential decoder
steps per clip (steps: what a GPU, which computes a batch's rows at once, pays) and the share of slots
spent on rows already finished. For tiny.en that pass covers more clips (``--analysis-clips``, 96 by
default), and its transcripts of the timed passes' clips must equal theirs too (batch 32).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

PASSES = {  # name: (sorted by duration, batch size, beams)
    "course": (False, 16, 1),
    "sorted": (True, 16, 1),
    "unsorted_b4": (False, 4, 1),
    "sorted_b4": (True, 4, 1),
    "beam5": (True, 16, 5),
}
DEFAULT_PASSES = {"tiny.en": ["course", "sorted", "sorted_b4", "beam5"], "base": ["course", "sorted", "beam5"]}
# Clips whose greedy transcript lengths feed ``batching`` (one more pass, dataset order, batch 32): the timed
# passes' 24 clips make only two batches of 16, too few to see what sorting does at that size.
DEFAULT_ANALYSIS_CLIPS = {"tiny.en": 96, "base": 0}
BATCH_SIZES = (1, 4, 8, 16, 32)


def english_clips(prepared_dir: Path, n: int):
    """The first ``n`` English clips (test split first, then train) of a prepared benchmark corpus."""
    from datasets import concatenate_datasets, load_from_disk

    prepared = load_from_disk(str(prepared_dir))
    rows = concatenate_datasets([prepared["test"], prepared["train"]])
    sentences = rows.select_columns(["sentence"]).to_dict()["sentence"]
    # The corpus speaks a third of its clips in English; both models hear English.
    english = [i for i, sentence in enumerate(sentences) if sentence.isascii()][:n]
    return rows.select(english)


class GenerateRecorder:
    """Wraps ``model.generate`` and the encoder: time and CPU in each, and every batch's token ids."""

    def __init__(self, model, processor, max_length: int):
        tokenizer = processor.tokenizer
        self.model, self.special_ids, self.eos_id = model, set(tokenizer.all_special_ids), tokenizer.eos_token_id
        self.prompt, self.max_length = len(tokenizer.prefix_tokens), max_length
        self.batches: list[dict] = []
        self.generate_s = self.encoder_s = self.generate_cpu_s = self.encoder_cpu_s = 0.0
        self._original = model.generate
        self._started = (0.0, 0.0)
        encoder = model.get_encoder()
        self._hooks = [encoder.register_forward_pre_hook(self._encoder_start),
                       encoder.register_forward_hook(self._encoder_end)]
        model.generate = self._generate  # an instance attribute: transcribe's model.generate(...) comes here

    def _encoder_start(self, module, args) -> None:
        self._started = (time.perf_counter(), time.process_time())

    def _encoder_end(self, module, args, output) -> None:
        self.encoder_s += time.perf_counter() - self._started[0]
        self.encoder_cpu_s += time.process_time() - self._started[1]

    def _generate(self, *args, **kwargs):
        start, cpu = time.perf_counter(), time.process_time()
        ids = self._original(*args, **kwargs)
        self.generate_s += time.perf_counter() - start
        self.generate_cpu_s += time.process_time() - cpu
        self.batches.append(self._lengths(ids))
        return ids

    def _lengths(self, ids: torch.Tensor) -> dict:
        """Decoder steps of one batch and the tokens each row needed (its text and end of text)."""
        rows = ids.tolist()
        skip = 0  # the forced start tokens, if generate returned them (transformers 5 does not)
        while skip < len(rows[0]) and rows[0][skip] in self.special_ids and all(r[skip] == rows[0][skip] for r in rows):
            skip += 1
        width = len(rows[0]) - skip
        # Whisper's generate drops the end-of-text token that ended the longest row; a batch that reached
        # max_length had no such token, and its longest rows never ended.
        at_limit = self.prompt + width >= self.max_length
        steps = width if at_limit else width + 1
        lengths, stopped = [], []
        for row in rows:
            body = row[skip:]
            ended = self.eos_id in body
            lengths.append(body.index(self.eos_id) + 1 if ended else steps)
            stopped.append(ended or not at_limit)
        return {"rows": len(rows), "steps": steps, "lengths": lengths, "stopped": stopped}

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()
        del self.model.generate


def batching(lengths: list[int], durations: list[float], batch_sizes=BATCH_SIZES) -> dict:
    """What decoding costs for each order and batch size, given each clip's greedy transcript length.

    Per clip: ``token_slots`` (sum over batches of rows x the batch's longest row), ``steps`` (sum over
    batches of the longest row: sequential decoder steps) and ``finished_row_share`` (slots of rows that had
    ended, over all slots).
    """
    orders = {"unsorted": list(range(len(lengths))),
              "sorted": sorted(range(len(lengths)), key=durations.__getitem__)}
    n, needed = max(1, len(lengths)), sum(lengths)
    out: dict = {"tokens_per_clip": needed / n}
    for name, order in orders.items():
        out[name] = {}
        for size in batch_sizes:
            batches = [[lengths[i] for i in order[k : k + size]] for k in range(0, len(order), size)]
            slots = sum(len(b) * max(b) for b in batches)
            out[name][str(size)] = {"token_slots_per_clip": slots / n, "steps_per_clip": sum(max(b) for b in batches) / n,
                                    "finished_row_share": 1 - needed / slots if slots else 0.0}
    return out


def run_pass(model, processor, clips, name: str, max_length: int) -> dict:
    """One transcription of ``clips`` with the settings of ``PASSES[name]``: time, scores, token slots."""
    from helpers.evaluation import transcribe
    from helpers.metrics import wer_scores

    sort, batch_size, beams = PASSES[name]
    recorder = GenerateRecorder(model, processor, max_length)
    saved_beams = model.generation_config.num_beams
    model.generation_config.num_beams = beams  # transcribe copies the model's generation config
    try:
        start, cpu = time.perf_counter(), time.process_time()
        predictions = transcribe(model, processor, clips, batch_size, max_length, sort_by_length=sort)
        seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    finally:
        model.generation_config.num_beams = saved_beams
        recorder.close()
    references = [s.strip() for s in clips["sentence"]]
    batches = recorder.batches
    slots = sum(b["rows"] * b["steps"] for b in batches) * beams
    used = sum(sum(b["lengths"]) for b in batches) * beams  # beams: the returned rows' lengths, times beams
    n = len(clips)
    return {
        "pass": name, "sorted": sort, "batch_size": batch_size, "num_beams": beams, "n_clips": n,
        "seconds": seconds, "clips_per_s": n / seconds, "cpu_s": cpu_s, "cpu_s_per_clip": cpu_s / n,
        "encoder_s": recorder.encoder_s, "decoding_s": recorder.generate_s - recorder.encoder_s,
        "encoder_cpu_s": recorder.encoder_cpu_s, "decoding_cpu_s": recorder.generate_cpu_s - recorder.encoder_cpu_s,
        "other_s": seconds - recorder.generate_s,  # collating (log-mel), decoding the ids to text
        "scores": wer_scores(predictions, references),
        "predictions": predictions,
        "token_slots_per_clip": slots / n,
        "tokens_per_clip": used / n,
        "finished_row_share": 1 - used / slots if slots else 0.0,
        "rows_at_max_length": sum(not s for b in batches for s in b["stopped"]),
        "batch_steps": [b["steps"] for b in batches],
        "lengths": [length for b in batches for length in b["lengths"]],  # in transcription order
    }


def run_analysis_pass(model, processor, clips, max_length: int) -> dict:
    """Greedy transcripts of ``clips`` in dataset order, batch 32: their lengths and texts."""
    from helpers.evaluation import transcribe

    recorder = GenerateRecorder(model, processor, max_length)
    try:
        predictions = transcribe(model, processor, clips, 32, max_length, sort_by_length=False)
    finally:
        recorder.close()
    return {"predictions": predictions, "lengths": [n for b in recorder.batches for n in b["lengths"]]}


def bench_model(name: str, prepared_dir: Path, n_clips: int, passes: list[str], max_length: int, rounds: int,
                analysis_clips: int = 0) -> dict:
    """Every pass for one real checkpoint; passes alternate in order (reversed every other round)."""
    from helpers.model import load_model_and_processor
    from tools.pretrained_whisper import PretrainedMissingError, ensure_pretrained

    try:
        folder = ensure_pretrained(name)
    except PretrainedMissingError as error:
        return {"model": name, "skipped": str(error)}
    clips = english_clips(prepared_dir, n_clips)
    if not len(clips):
        return {"model": name, "skipped": "the prepared corpus holds no English clip"}
    english_only = name.endswith(".en")
    model, processor = load_model_and_processor(str(folder), None if english_only else "english",
                                                None if english_only else "transcribe")
    model.eval()
    runs: dict[str, list[dict]] = {p: [] for p in passes}
    for round_ in range(rounds):
        for pass_name in passes if round_ % 2 == 0 else passes[::-1]:
            print(f"   {name}: {pass_name} (round {round_ + 1})", flush=True)
            runs[pass_name].append(run_pass(model, processor, clips, pass_name, max_length))
    results = {}
    for pass_name, done in runs.items():
        result = dict(done[0])
        result["seconds_all"] = [r["seconds"] for r in done]
        result["cpu_s_all"] = [r["cpu_s"] for r in done]
        result["seconds"] = statistics.median(result["seconds_all"])
        result["cpu_s"] = statistics.median(result["cpu_s_all"])
        result["clips_per_s"] = result["n_clips"] / result["seconds"]
        result["cpu_s_per_clip"] = result["cpu_s"] / result["n_clips"]
        results[pass_name] = result
    course = results["course"]
    checks = {}
    for pass_name, result in results.items():
        result["same_transcripts_as_course"] = sum(a == b for a, b in zip(result["predictions"], course["predictions"]))
        result["clips_per_s_vs_course"] = result["clips_per_s"] / course["clips_per_s"]
        result["cpu_vs_course"] = result["cpu_s"] / course["cpu_s"]
        if result["num_beams"] == 1:
            checks[pass_name] = result["scores"] == course["scores"]
    durations = clips.select_columns(["duration"]).to_dict()["duration"]
    lengths, analysed = course["lengths"], clips  # the course pass runs in dataset order
    if analysis_clips > len(clips):
        analysed = english_clips(prepared_dir, analysis_clips)
        print(f"   {name}: transcript lengths of {len(analysed)} clips (batch 32)", flush=True)
        lengths_pass = run_analysis_pass(model, processor, analysed, max_length)
        lengths = lengths_pass["lengths"]
        # The same clips come first (english_clips takes them in order): batch 32, the same transcripts.
        same = lengths_pass["predictions"][: len(clips)] == course["predictions"]
        checks["analysis_b32"] = same
        lengths_pass.pop("predictions")
    analysis = batching(lengths, analysed.select_columns(["duration"]).to_dict()["duration"])
    analysis["n_clips"] = len(analysed)
    for result in results.values():
        result["predictions"] = result["predictions"][:3]  # a few, to read; the rest only counted
    return {
        "model": name, "n_clips": len(clips), "mean_seconds": sum(durations) / len(durations),
        "max_length": max_length, "rounds": rounds, "passes": results, "batching": analysis,
        "greedy_wer_unchanged": checks, "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ours", type=Path, required=True, help="our prepared benchmark corpus (save_to_disk)")
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_PASSES), choices=list(DEFAULT_PASSES))
    parser.add_argument("--clips", type=int, default=24, help="English clips per model (default 24)")
    parser.add_argument("--max-length", type=int, default=225, help="the course's generation_max_length")
    parser.add_argument("--rounds", type=int, default=1, help="times each pass runs, alternating (median kept)")
    parser.add_argument("--passes", nargs="+", choices=list(PASSES), help="the same passes for every model")
    parser.add_argument("--analysis-clips", type=int, help="clips for the transcript-length analysis "
                        "(default: 96 for tiny.en, the timed clips for base)")
    args = parser.parse_args(argv)
    import datasets

    datasets.disable_progress_bars()
    results = {"models": {}, "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    for name in args.models:
        passes = args.passes or DEFAULT_PASSES[name]
        passes = ["course"] + [p for p in passes if p != "course"]  # every pass is compared with the course's
        print(f"-- evaluation with the real {name}", flush=True)
        analysis = DEFAULT_ANALYSIS_CLIPS[name] if args.analysis_clips is None else args.analysis_clips
        results["models"][name] = bench_model(name, args.ours, args.clips, passes, args.max_length, args.rounds,
                                              analysis)
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    args.result.write_text(json.dumps(results))
    failed = {name: [p for p, ok in r.get("greedy_wer_unchanged", {}).items() if not ok]
              for name, r in results["models"].items()}
    failed = {name: passes for name, passes in failed.items() if passes}
    if failed:
        raise SystemExit(f"WER changed with the evaluation settings: {failed} (figures in {args.result})")
    return results


if __name__ == "__main__":
    main()
