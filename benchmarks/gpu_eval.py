"""Whole-split evaluation of a whisper-small sized model in fp16: the course's path, ours eager, ours fast.

    python -m benchmarks.gpu_eval                                   # on a CUDA machine; no Hub access needed
    python -m benchmarks.gpu_eval --tiny --device cpu --clips 6 --max-length 16   # checks the code on a CPU
    python -m benchmarks.gpu_eval --kernels-only                    # on a T4 (Colab): the two reference kernels

The goal (issue 20): the course's whole test split (2,212 Common Voice Dhivehi clips) in at most 5 minutes on
a T4, under a T4's 15 GB (``torch.cuda.set_per_process_memory_fraction`` caps this process at 15 GiB). The
same synthetic test split goes through these paths in one run, each timed with its peak GPU memory:

* ``course``: ``Seq2SeqTrainer.evaluate`` as the course sets it up, through our ``CourseSeq2SeqTrainer``
  (the plain class stops there, see its docstring): ``predict_with_generate``, ``fp16_full_eval``,
  ``per_device_eval_batch_size=16``, ``generation_max_length=225``, dataset order, ``compute_metrics``;
* ``ours``: ``helpers.evaluation.transcribe`` eagerly (fp16 copy on the GPU, sorted by duration, batch 16);
* ``fast-b16``, ``fast-b32``, ``fast-b64``: the fast path (``fast=True``: one static KV cache, every batch
  the same shape, the decoder step compiled by transformers with CUDA graphs) at batch 16, 32 and 64. The
  first timing includes compiling; ``fast-b16-warm`` repeats batch 16 with the compiled step.

**Decode lengths.** Random weights rarely emit an end of text; a logits processor (``ForcedLengths``) makes
each clip's transcript exactly as long as a Dhivehi sentence's token ids from the real tokenizer (the smoke
model's: whisper-small's multilingual vocabulary), ending with <|endoftext|>. The sentences are those of
``--sentences`` (a Common Voice ``test.tsv``: the real split's lengths) or, offline, sentences of 3 to 12
real Dhivehi words (``THAANA_WORDS``). Thaana takes about two tokens a letter, so these run to 40-200 tokens.
A clip's noise lasts 1 s plus 50 ms a token, which is how the processor knows a row's length (the frames above
the padding floor), so every path decodes the same lengths.

**Figures.** clips/s, seconds for 2,212 clips, decoder steps (the batches' longest rows: what a GPU pays) and
ms per step, the encoder's share (a forward hook, synchronised), the generated ids equal to ``ours``'s
(greedy transcripts must not change), and peak memory.

**T4 estimate.** Without a T4, a path's seconds are split into its encoder part (compute-bound: scaled by the
ratio of an fp16 GEMM's measured TFLOPS, here against a T4) and the rest, decoding (small batched matmuls that
read every weight and the cross-attention cache each step once launches are gone: scaled by the ratio of a
device-to-device copy's measured GB/s). ``T4_KERNELS`` holds a T4's figures for the same two kernels: typical
published measurements until someone runs ``--kernels-only`` on a Colab T4 and replaces them. Eager decoding
is launch-bound (the same 45 ms a step on H100 and H200), so for ``course`` and ``ours`` that ratio is a lower
bound of a T4's time, not an estimate.

Prints a table and a last line of JSON; writes ``gpu-eval-<timestamp>.json`` and ``gpu-eval-latest.json``.
"""

from __future__ import annotations

import argparse
import csv
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
PROMPT = [50258, 50322, 50359, 50363]  # <|startoftranscript|><|si|><|transcribe|><|notimestamps|>
EOT = 50257
# Real Dhivehi words (the Maldives, citizens, this is, Thaana, letters, beautiful, an island, language, ...).
THAANA_WORDS = ("ދިވެހިރާއްޖޭގެ ރައްޔިތުން މިއީ ތާނަ އަކުރުތަކެވެ ރީތި ރަށެއް ދިވެހި ބަސް ސަރުކާރު މާލެ ކުއްޖާ "
                "ސްކޫލަށް ދިޔައެވެ މިއަދު ވަރަށް ހޫނު ދުވަހެކެވެ އަހަރެން ކަނޑު ފެން ގެއަށް").split()
# A T4's figures for kernel_throughput()'s two kernels: typical published measurements (fp16 GEMM of 4096^3
# at the 70 W power cap; cudaMemcpy device to device), not ours: run --kernels-only on a T4 to replace them.
T4_KERNELS = {"gemm_fp16_tflops": 24.0, "copy_gb_s": 230.0, "source": "published typical figures, not measured here"}


def thaana_sentences(n: int, path: Path | None, seed: int = 0) -> list[str]:
    """``n`` Dhivehi sentences: from a Common Voice ``test.tsv`` (``path``), or of 3-12 real words."""
    rng = np.random.default_rng(seed)
    if path:
        with open(path, encoding="utf-8", newline="") as f:
            sentences = [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
        return [sentences[i % len(sentences)] for i in range(n)]
    return [" ".join(rng.choice(THAANA_WORDS, size=int(rng.integers(3, 13)))) + "." for _ in range(n)]


# A clip lasts 1 s plus 50 ms a token of its sentence (a six-word sentence of 119 tokens: 7 s, as Common Voice
# speakers read it): the length of its noise tells ForcedLengths how many tokens the row must get.
SECONDS_FIXED, SECONDS_PER_TOKEN = 1.0, 0.05


def synthetic_test_split(sentences: list[str], tokenizer, seed: int = 0):
    """Rows shaped like our prepared test split (FLAC noise, labels, duration, sentence), one per sentence."""
    from datasets import Dataset

    from helpers.audio import SAMPLING_RATE, to_flac

    rng = np.random.default_rng(seed)
    rows = {"audio_16k": [], "labels": [], "duration": [], "sentence": [], "tokens": []}
    for sentence in sentences:
        text_ids = tokenizer(sentence, add_special_tokens=False).input_ids
        seconds = SECONDS_FIXED + SECONDS_PER_TOKEN * len(text_ids)
        rows["audio_16k"].append(to_flac(0.05 * rng.standard_normal(int(seconds * SAMPLING_RATE)).astype(np.float32)))
        rows["labels"].append([*PROMPT, *text_ids, EOT])
        rows["duration"].append(seconds)
        rows["sentence"].append(sentence)
        rows["tokens"].append(len(text_ids))
    return Dataset.from_dict(rows)


class ForcedLengths:
    """A logits processor that makes each row emit exactly its sentence's tokens, then <|endoftext|>.

    A row's token count is read from its clip's length (:data:`SECONDS_PER_TOKEN`): log-mel frames of noise
    stand above the padding's floor. Everything stays on the device (no synchronisation), so it costs every
    path the same few kernels a step.
    """

    def __init__(self, prompt: int = len(PROMPT)):
        self.prompt, self.rows = prompt, None

    def set_batch(self, features: torch.Tensor, beams: int) -> None:
        features = features.float()
        frames = (features.amax(dim=1) > features.amin(dim=(1, 2))[:, None] + 0.5).sum(dim=-1)
        tokens = torch.round((frames / 100 - SECONDS_FIXED) / SECONDS_PER_TOKEN).long()
        self.rows = tokens.repeat_interleave(beams)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        done = (input_ids.shape[1] - self.prompt >= self.rows)[:, None]
        ended = torch.full_like(scores, -float("inf"))
        ended[:, EOT] = 0.0
        scores = scores.clone()
        scores[:, EOT] = -float("inf")
        return torch.where(done, ended, scores)


def force_lengths(model, forced: ForcedLengths) -> None:
    """Every ``model.generate`` call (ours, the Trainer's) gets ``forced`` for its batch's rows."""
    from transformers import LogitsProcessorList

    original = model.__dict__.get("unforced_generate") or model.generate
    model.unforced_generate = original

    def generate(*args, **kwargs):
        features = kwargs.get("input_features", args[0] if args else None)
        generation = kwargs.get("generation_config") or model.generation_config
        forced.set_batch(features, kwargs.get("num_beams") or generation.num_beams or 1)
        return original(*args, logits_processor=LogitsProcessorList([forced]), **kwargs)

    model.generate = generate  # on this instance only: the next path builds its own copy


def build_model(tiny: bool):
    """A whisper-small shaped model (random weights) and the smoke model's processor and generation config."""
    from transformers import GenerationConfig, WhisperForConditionalGeneration

    from helpers.config import SMOKE_MODEL_DIR
    from helpers.model import load_processor
    from tools.smoke_model import ensure_smoke_model

    ensure_smoke_model()
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(whisper_small_config(tiny))
    model.generation_config = GenerationConfig.from_pretrained(SMOKE_MODEL_DIR)
    model.generation_config.language, model.generation_config.task = "sinhalese", "transcribe"
    model.generation_config.forced_decoder_ids = None
    return model, load_processor(str(SMOKE_MODEL_DIR), "sinhalese", "transcribe")


def kernel_throughput(device: torch.device) -> dict:
    """This card's fp16 GEMM TFLOPS (4096^3) and device-to-device copy GB/s: what the T4 estimate scales by."""
    if device.type != "cuda":
        return {"gemm_fp16_tflops": None, "copy_gb_s": None}
    a = torch.randn(4096, 4096, device=device, dtype=torch.float16)
    b = torch.randn_like(a)
    source = torch.empty(256 * 1024**2, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)

    def timed(work, repeats: int) -> float:
        work()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            work()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / repeats

    gemm = timed(lambda: a @ b, 50)
    copy = timed(lambda: target.copy_(source), 50)
    return {"gemm_fp16_tflops": 2 * 4096**3 / gemm / 1e12, "copy_gb_s": 2 * source.numel() / copy / 1e9}


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


class EncoderTimer:
    """Seconds spent in the encoder (synchronised before and after each call on CUDA)."""

    def __init__(self, model, cuda: bool):
        self.seconds, self.cuda, self._start = 0.0, cuda, 0.0
        encoder = model.get_encoder()
        self.hooks = [encoder.register_forward_pre_hook(self.start), encoder.register_forward_hook(self.end)]

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def start(self, *_):
        self._sync()
        self._start = time.perf_counter()

    def end(self, *_):
        self._sync()
        self.seconds += time.perf_counter() - self._start

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()


def decoder_steps(tokens: list[int], order: list[int], batch_size: int) -> int:
    """Sequential decoder steps of a pass: each batch runs to its longest row's tokens and end of text."""
    return sum(max(tokens[i] for i in order[s : s + batch_size]) + 1 for s in range(0, len(order), batch_size))


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
        force_lengths(model, ForcedLengths())
        timer = EncoderTimer(model, cuda)
        _memory_start(cuda)
        start = time.perf_counter()
        metrics = trainer.evaluate(test.remove_columns(["tokens"]))
        seconds = time.perf_counter() - start
        memory = _memory_end(cuda)
        timer.remove()
        del model.generate, model.unforced_generate, trainer
    steps = decoder_steps(test["tokens"], list(range(len(test))), args.batch_size)
    return {"path": "course", "batch_size": args.batch_size, "seconds": seconds, "encoder_seconds": timer.seconds,
            "decoder_steps": steps, **memory, "eval_loss": metrics.get("eval_loss")}


def our_path(model, processor, test, args, cuda: bool, name: str, batch_size: int, fast: bool) -> dict:
    """``helpers.evaluation.transcribe_ids`` (fp16 copy on the GPU, sorted), eager or fast; time and memory."""
    from helpers.evaluation import transcribe_ids
    from helpers.runtime.device import model_for_inference

    runner = model_for_inference(model, cuda and args.fp16)  # what evaluate_model does
    force_lengths(runner, ForcedLengths())
    timer = EncoderTimer(runner, cuda)
    placement = (next(runner.parameters()).device, next(runner.parameters()).dtype)
    _memory_start(cuda)
    start = time.perf_counter()
    ids = transcribe_ids(runner, processor, test, batch_size, args.max_length, placement=placement, fast=fast)
    seconds = time.perf_counter() - start
    memory = _memory_end(cuda)
    timer.remove()
    durations = test["duration"]
    order = sorted(range(len(test)), key=lambda i: durations[i])
    steps = decoder_steps(test["tokens"], order, batch_size)
    lengths_forced = [len(row) for row in ids] == [min(t, args.max_length) for t in test["tokens"]]
    return {"path": name, "batch_size": batch_size, "fast": fast, "seconds": seconds,
            "encoder_seconds": timer.seconds, "decoder_steps": steps, **memory, "ids": ids,
            "lengths_forced": lengths_forced, "runner": runner}


def t4_estimate(path: dict, here: dict) -> float | None:
    """Seconds for the course's split on a T4: encoder scaled by GEMM TFLOPS, the rest by copy GB/s."""
    if not here.get("gemm_fp16_tflops"):
        return None
    scale = COURSE_TEST_CLIPS / path["clips"]
    encoder = path["encoder_seconds"] * here["gemm_fp16_tflops"] / T4_KERNELS["gemm_fp16_tflops"]
    rest = (path["seconds"] - path["encoder_seconds"]) * here["copy_gb_s"] / T4_KERNELS["copy_gb_s"]
    return scale * (encoder + rest)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--clips", type=int, default=COURSE_TEST_CLIPS, help="test clips (the course's: 2212)")
    parser.add_argument("--batch-size", type=int, default=16, help="the course's per_device_eval_batch_size")
    parser.add_argument("--fast-batch-sizes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--max-length", type=int, default=225, help="the course's generation_max_length")
    parser.add_argument("--sentences", type=Path, help="a Common Voice test.tsv whose sentences give the lengths")
    parser.add_argument("--memory-cap-gib", type=float, default=15.0, help="GPU memory this process may use")
    parser.add_argument("--no-fp16", dest="fp16", action="store_false")
    parser.add_argument("--tiny", action="store_true", help="a tiny model, to check the script on a CPU")
    parser.add_argument("--paths", nargs="+", choices=("course", "ours", "fast"), default=["course", "ours", "fast"])
    parser.add_argument("--kernels-only", action="store_true", help="only this card's GEMM and copy throughput")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("No CUDA GPU here: pass --device cpu (with --tiny) to check the script.")
    if not cuda and torch.cuda.is_available():
        raise SystemExit("--device cpu on a CUDA machine: helpers.runtime.device would still place evaluation on the GPU.")
    kernels = kernel_throughput(torch.device(args.device))
    if args.kernels_only:
        print(json.dumps({"device": torch.cuda.get_device_name(0) if cuda else "cpu", **kernels}))
        return kernels
    if cuda:  # a T4 has 16 GB, 15 GiB of it usable: no path may count on more
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_cap_gib * 1024**3 / total))
    import datasets

    datasets.disable_progress_bars()
    results = {
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu", "kernels": kernels, "t4_kernels": T4_KERNELS,
        "torch": torch.__version__, "args": {k: str(v) for k, v in vars(args).items()}, "paths": [],
    }
    model, processor = build_model(args.tiny)
    test = synthetic_test_split(thaana_sentences(args.clips, args.sentences), processor.tokenizer)
    results["tokens"] = {"mean": float(np.mean(test["tokens"])), "max": int(np.max(test["tokens"])),
                         "min": int(np.min(test["tokens"]))}
    print(f"Forced transcript lengths: {results['tokens']} tokens", flush=True)
    runs = []
    if "course" in args.paths:
        runs.append(("course", args.batch_size, False))
    if "ours" in args.paths:
        runs.append(("ours", args.batch_size, False))
    if "fast" in args.paths:
        runs += [(f"fast-b{size}", size, True) for size in args.fast_batch_sizes]
        if args.batch_size in args.fast_batch_sizes:
            runs.append((f"fast-b{args.batch_size}-warm", args.batch_size, True))
    runners = {}
    for name, batch_size, fast in runs:
        print(f"-- {name}", flush=True)
        if name == "course":
            figures = course_path(model, processor, test, args, cuda)
            model = model.float().cpu()  # the trainer moved (and, with fp16_full_eval, halved) it
        else:
            # The warm repeat reuses the runner whose decoder step is compiled already.
            source = runners.get(name.removesuffix("-warm")) if name.endswith("-warm") else None
            figures = our_path(source or model, processor, test, args, cuda, name, batch_size, fast)
            runner = figures.pop("runner")
            if name == f"fast-b{args.batch_size}":  # kept for the warm repeat; the others are dropped
                runners[name] = runner
            del runner
        figures["clips"] = args.clips
        figures["clips_per_s"] = args.clips / figures["seconds"]
        figures["ms_per_decoder_step"] = 1000 * (figures["seconds"] - figures["encoder_seconds"]) / figures["decoder_steps"]
        figures["seconds_for_course_split"] = COURSE_TEST_CLIPS / figures["clips_per_s"]
        figures["within_5_min"] = figures["seconds_for_course_split"] <= TIME_BUDGET_S
        figures["t4_seconds_estimate"] = t4_estimate(figures, kernels)
        results["paths"].append(figures)
    reference = next((p["ids"] for p in results["paths"] if p["path"] == "ours"), None)
    for p in results["paths"]:
        ids = p.pop("ids", None)
        p["ids_equal_ours"] = None if ids is None or reference is None else ids == reference
    course = next((p for p in results["paths"] if p["path"] == "course"), None)
    print(f"\n| path | batch | clips/s | ms/step | encoder s | s for {COURSE_TEST_CLIPS} clips | T4 estimate (s) | "
          "vs course | ids = ours | peak reserved (GB) | fits 15 GB |\n|---|---|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for p in results["paths"]:
        p["speedup_vs_course"] = p["clips_per_s"] / course["clips_per_s"] if course else None
        gb = f"{p['peak_reserved_bytes'] / 1024**3:.1f}" if p["peak_reserved_bytes"] else "n/a"
        speedup = f"{p['speedup_vs_course']:.2f}x" if p["speedup_vs_course"] else "n/a"
        t4 = f"{p['t4_seconds_estimate']:.0f}" if p["t4_seconds_estimate"] else "n/a"
        print(f"| {p['path']} | {p['batch_size']} | {p['clips_per_s']:.2f} | {p['ms_per_decoder_step']:.1f} | "
              f"{p['encoder_seconds']:.1f} | {p['seconds_for_course_split']:.0f} | {t4} | {speedup} | "
              f"{p['ids_equal_ours']} | {gb} | {p['fits_15GB']} |")
        summary[p["path"]] = {"clips_per_s": round(p["clips_per_s"], 3), "ms_per_step": round(p["ms_per_decoder_step"], 2),
                              "t4_s": p["t4_seconds_estimate"] and round(p["t4_seconds_estimate"]),
                              "ids_equal_ours": p["ids_equal_ours"], "fits_15GB": p["fits_15GB"]}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = results["started"][:19].replace("-", "").replace(":", "")
    for name in (f"gpu-eval-{stamp}.json", "gpu-eval-latest.json"):
        (args.results_dir / name).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(summary))
    return results


if __name__ == "__main__":
    main()
