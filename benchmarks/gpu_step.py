"""Training step time and peak GPU memory of a whisper-small sized model: the course's settings vs options.

    python -m benchmarks.gpu_step                      # on a CUDA machine; no Hub access needed
    python -m benchmarks.gpu_step --tiny --device cpu  # checks the code path on a CPU in seconds

Run on an H100 on 2026-11-26 (``scripts/gpu_checks.sh``; figures in docs/benchmarks.md). Random weights cost what
trained ones cost, so the model is built from whisper-small's shape (12 + 12 layers, d_model 768, 80 mel
bins, the multilingual vocabulary) without downloading anything. Every variant trains ``--steps`` steps
on the same random batch (80 x 3000 log-mel, labels of ``--label-tokens`` tokens) after ``--warmup``
untimed ones (which also absorb ``torch.compile``'s compilation), with AdamW and, on CUDA, fp16 autocast
plus a gradient scaler as ``Seq2SeqTrainer(fp16=True)`` does.

Variants (``--variants`` picks some):

* ``course``: batch 16, fp16, gradient checkpointing, eager attention (what transformers 4.x gave the course);
* ``sdpa``: the same with PyTorch's scaled-dot-product attention (transformers 5's default);
* ``sdpa_no_ckpt``: SDPA without gradient checkpointing (faster if it fits in 15 GB, a T4's 16 GB less slack);
* ``frozen_encoder``: SDPA, checkpointing, encoder frozen (``model.freeze_encoder()``);
* ``compiled``: SDPA, checkpointing, ``torch.compile(model)``.

The goal in issue 6: at least 1.5x the course's step throughput within 15 GB. Prints a table and a last
line of JSON; writes ``benchmarks/results/gpu-<timestamp>.json`` and ``gpu-latest.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import statistics
import time
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
VARIANTS = {
    "course": dict(attention="eager", checkpointing=True, freeze_encoder=False, compile=False),
    "sdpa": dict(attention="sdpa", checkpointing=True, freeze_encoder=False, compile=False),
    "sdpa_no_ckpt": dict(attention="sdpa", checkpointing=False, freeze_encoder=False, compile=False),
    "frozen_encoder": dict(attention="sdpa", checkpointing=True, freeze_encoder=True, compile=False),
    "compiled": dict(attention="sdpa", checkpointing=True, freeze_encoder=False, compile=True),
}
MEMORY_BUDGET_BYTES = 15 * 1024**3


def whisper_small_config(tiny: bool = False):
    """whisper-small's architecture (openai/whisper-small config.json), or a tiny one for CPU checks."""
    from transformers import WhisperConfig

    size = (dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                 encoder_ffn_dim=256, decoder_ffn_dim=256) if tiny else
            dict(d_model=768, encoder_layers=12, decoder_layers=12, encoder_attention_heads=12,
                 decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072))
    return WhisperConfig(vocab_size=51865, num_mel_bins=80, max_source_positions=1500, max_target_positions=448,
                         pad_token_id=50257, bos_token_id=50257, eos_token_id=50257, decoder_start_token_id=50258,
                         **size)


def timed_steps(model, optimizer, scaler, features, labels, args: argparse.Namespace, times: list[float]) -> None:
    """``args.warmup`` untimed, then ``args.steps`` timed training steps as the Trainer takes them under fp16
    (autocast, gradient scaler); each timed step's seconds are appended to ``times`` (kept if one fails)."""
    cuda = features.device.type == "cuda"
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        with torch.autocast(features.device.type, dtype=torch.float16, enabled=cuda and args.fp16):
            loss = model(input_features=features, labels=labels).loss
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)


def run_variant(name: str, options: dict, args: argparse.Namespace) -> dict:
    """Build a fresh model with ``options``, train ``args.steps`` timed steps; return times and peak memory."""
    from transformers import WhisperForConditionalGeneration

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    config = whisper_small_config(args.tiny)
    config._attn_implementation = options["attention"]
    model = WhisperForConditionalGeneration(config).to(device)
    model.config.use_cache = False
    if options["checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if options["freeze_encoder"]:
        model.freeze_encoder()
    model.train()
    step_model = torch.compile(model) if options["compile"] else model
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-5)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and args.fp16)
    features = torch.randn(args.batch_size, 80, 3000, device=device)
    labels = torch.randint(0, 50000, (args.batch_size, args.label_tokens), device=device)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, error = [], None
    try:
        timed_steps(step_model, optimizer, scaler, features, labels, args, times)
    except torch.cuda.OutOfMemoryError as oom:
        error = f"out of memory: {oom}".splitlines()[0]
    peak = torch.cuda.max_memory_allocated() if cuda else None
    reserved = torch.cuda.max_memory_reserved() if cuda else None
    del step_model, model, optimizer, features, labels
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    median = statistics.median(times) if times else None
    return {
        "variant": name, **options, "error": error,
        "step_s_median": median,
        "samples_per_s": args.batch_size / median if median else None,
        "peak_allocated_bytes": peak, "peak_reserved_bytes": reserved,
        "fits_15GB": None if reserved is None else reserved <= MEMORY_BUDGET_BYTES,
        "step_s_all": times,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=16, help="the course's per-device batch size")
    parser.add_argument("--label-tokens", type=int, default=64, help="label length of the random batch")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-fp16", dest="fp16", action="store_false")
    parser.add_argument("--tiny", action="store_true", help="a tiny model, to check the script on a CPU")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--memory-cap-gib", type=float, default=None,
                        help="cap this process's GPU memory (15: a T4's usable memory); a variant over it fails as OOM")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("No CUDA GPU here: pass --device cpu (with --tiny) to check the script.")
    if args.memory_cap_gib and args.device.startswith("cuda"):
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_cap_gib * 1024**3 / total))

    results = {
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "args": {k: str(v) for k, v in vars(args).items()},
        "variants": [],
    }
    for name in args.variants:
        print(f"-- {name}", flush=True)
        results["variants"].append(run_variant(name, VARIANTS[name], args))
    course = next((v for v in results["variants"] if v["variant"] == "course" and v["step_s_median"]), None)
    print("\n| variant | step (s) | samples/s | vs course | peak reserved (GB) | fits 15 GB |\n|---|---|---|---|---|---|")
    summary = {}
    for v in results["variants"]:
        speedup = course["step_s_median"] / v["step_s_median"] if course and v["step_s_median"] else None
        v["speedup_vs_course"] = speedup
        summary[v["variant"]] = {"speedup": speedup, "fits_15GB": v["fits_15GB"], "error": v["error"]}
        gb = f"{v['peak_reserved_bytes'] / 1024**3:.1f}" if v["peak_reserved_bytes"] else "n/a"
        step = f"{v['step_s_median']:.3f}" if v["step_s_median"] else v["error"]
        rate = f"{v['samples_per_s']:.1f}" if v["samples_per_s"] else "n/a"
        print(f"| {v['variant']} | {step} | {rate} | {f'{speedup:.2f}x' if speedup else 'n/a'} | {gb} | {v['fits_15GB']} |")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = results["started"][:19].replace("-", "").replace(":", "")
    for name in (f"gpu-{stamp}.json", "gpu-latest.json"):
        (args.results_dir / name).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(summary))
    return results


if __name__ == "__main__":
    main()
