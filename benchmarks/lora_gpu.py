"""LoRA against full fine-tuning on a GPU: step time and peak memory, and the largest Whisper a T4 can train.

    python -m benchmarks.lora_gpu                      # on a CUDA machine; no Hub access needed
    python -m benchmarks.lora_gpu --int8               # also 8-bit base weights (needs bitsandbytes)
    python -m benchmarks.lora_gpu --tiny --device cpu  # checks the code path on a CPU in a minute

NOT YET RUN ON A GPU: written in a session without one (issue 12's GPU part). Random weights cost what
trained ones cost, so every model is built from the real checkpoint's shape (layers, width, heads, mel
bins, vocabulary) without downloading anything. Each case trains ``--steps`` timed steps after
``--warmup`` untimed ones on one random batch (log-mel 30 s windows, labels of ``--label-tokens`` tokens)
at the course's settings: batch 16, fp16 autocast with a gradient scaler over fp32 weights (what
``Seq2SeqTrainer(fp16=True)`` does), activation checkpointing, AdamW on the trainable parameters only.
LoRA goes through ``helpers.lora.apply_lora`` (rank 32, alpha 64, q_proj and v_proj: the CLI's defaults).

1. whisper-small, full fine-tuning against LoRA: step time, samples/s, peak memory, trainable share.
2. LoRA on medium, large-v3-turbo and large-v3 (and with ``--int8`` over 8-bit base weights): which fit a
   T4's 16 GB less slack (15 GiB reserved by PyTorch's allocator) at batch 16, and how fast they step.

Prints a table and a last line of JSON; writes ``benchmarks/results/lora-gpu-<timestamp>.json`` and
``lora-gpu-latest.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MEMORY_BUDGET_BYTES = 15 * 1024**3
# The openai/whisper-* config.json values that decide cost.
SHAPES = {
    "small": dict(d_model=768, encoder_layers=12, decoder_layers=12, heads=12, ffn=3072, mels=80, vocab=51865),
    "medium": dict(d_model=1024, encoder_layers=24, decoder_layers=24, heads=16, ffn=4096, mels=80, vocab=51865),
    "large-v3-turbo": dict(d_model=1280, encoder_layers=32, decoder_layers=4, heads=20, ffn=5120, mels=128,
                           vocab=51866),
    "large-v3": dict(d_model=1280, encoder_layers=32, decoder_layers=32, heads=20, ffn=5120, mels=128, vocab=51866),
}
TINY = dict(d_model=64, encoder_layers=2, decoder_layers=2, heads=4, ffn=256)


def whisper_config(name: str, tiny: bool = False):
    """openai/whisper-``name``'s architecture (random weights), or a tiny one with its vocabulary for CPU checks."""
    from transformers import WhisperConfig

    shape = {**SHAPES[name], **(TINY if tiny else {})}
    eot = 50257
    return WhisperConfig(
        vocab_size=shape["vocab"], num_mel_bins=shape["mels"], d_model=shape["d_model"],
        encoder_layers=shape["encoder_layers"], decoder_layers=shape["decoder_layers"],
        encoder_attention_heads=shape["heads"], decoder_attention_heads=shape["heads"],
        encoder_ffn_dim=shape["ffn"], decoder_ffn_dim=shape["ffn"], max_source_positions=1500,
        max_target_positions=448, pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=eot + 1,
    )


def build(name: str, method: str, device: torch.device, tiny: bool):
    """A random whisper-``name`` on ``device``: every weight trains (``full``), or LoRA over fp32 or 8-bit weights."""
    from transformers import WhisperForConditionalGeneration

    from helpers.lora import apply_lora, load_base_in_8bit

    torch.manual_seed(0)
    config = whisper_config(name, tiny)
    config._attn_implementation = "sdpa"
    model = WhisperForConditionalGeneration(config)
    if method == "lora-int8":
        with tempfile.TemporaryDirectory() as folder:  # bitsandbytes quantises while loading
            model.half().save_pretrained(folder)
            del model
            model = load_base_in_8bit(folder)
    else:
        model = model.to(device)
    model.config.use_cache = False
    if method != "full":
        model = apply_lora(model, gradient_checkpointing=True)
    kwargs = {"activation_checkpointing_kwargs": {"use_reentrant": False}}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(**kwargs)
    else:  # transformers before the rename
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model.train(), config


def run_case(name: str, method: str, args: argparse.Namespace) -> dict:
    """Train ``args.steps`` timed steps of whisper-``name`` with ``method``; times, peak memory, parameter counts."""
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = optimizer = features = labels = None
    times, error, counts = [], None, (None, None)
    try:
        model, config = build(name, method, device, args.tiny)
        parameters = [p for p in model.parameters() if p.requires_grad]
        counts = (sum(p.numel() for p in parameters), sum(p.numel() for p in model.parameters()))
        optimizer = torch.optim.AdamW(parameters, lr=1e-3 if method != "full" else 1e-5)
        scaler = torch.amp.GradScaler("cuda", enabled=cuda and args.fp16)
        features = torch.randn(args.batch_size, config.num_mel_bins, 3000, device=device)
        labels = torch.randint(0, 50000, (args.batch_size, args.label_tokens), device=device)
        for step in range(args.warmup + args.steps):
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.float16, enabled=cuda and args.fp16):
                loss = model(input_features=features, labels=labels).loss
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
            if step >= args.warmup:
                times.append(time.perf_counter() - start)
    except torch.cuda.OutOfMemoryError as oom:
        error = f"out of memory: {oom}".splitlines()[0]
    except Exception as failure:  # noqa: BLE001  (e.g. bitsandbytes missing: recorded, the other cases go on)
        error = f"{type(failure).__name__}: {failure}".splitlines()[0]
    peak = torch.cuda.max_memory_allocated() if cuda else None
    reserved = torch.cuda.max_memory_reserved() if cuda else None
    del model, optimizer, features, labels
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    median = statistics.median(times) if times else None
    trainable, total = counts
    return {
        "model": name, "method": method, "error": error,
        "trainable_parameters": trainable, "parameters": total,
        "trainable_share": trainable / total if trainable and total else None,
        "step_s_median": median, "samples_per_s": args.batch_size / median if median else None,
        "peak_allocated_bytes": peak, "peak_reserved_bytes": reserved,
        "fits_15GB": None if reserved is None else (error is None and reserved <= MEMORY_BUDGET_BYTES),
        "step_s_all": times,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=16, help="the course's per-device batch size")
    parser.add_argument("--label-tokens", type=int, default=64, help="label length of the random batch")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-fp16", dest="fp16", action="store_false")
    parser.add_argument("--int8", action="store_true", help="also LoRA over 8-bit base weights (bitsandbytes, CUDA)")
    parser.add_argument("--larger", nargs="+", default=["medium", "large-v3-turbo", "large-v3"],
                        choices=[name for name in SHAPES if name != "small"], help="models tried with LoRA")
    parser.add_argument("--tiny", action="store_true", help="tiny models of the same vocabulary, to check the script")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("No CUDA GPU here: pass --device cpu (with --tiny) to check the script.")

    cases = [("small", "full"), ("small", "lora")] + [(name, "lora") for name in args.larger]
    if args.int8:
        cases += [(name, "lora-int8") for name in ["small", *args.larger]]
    results = {
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "args": {k: str(v) for k, v in vars(args).items()}, "cases": [],
    }
    for name, method in cases:
        print(f"-- whisper-{name}, {method}", flush=True)
        results["cases"].append(run_case(name, method, args))

    full = next((c for c in results["cases"] if (c["model"], c["method"]) == ("small", "full")), None)
    print("\n| model | method | trainable | step (s) | samples/s | vs small full | peak reserved (GB) | fits 15 GB |"
          "\n|---|---|---|---|---|---|---|---|")
    for c in results["cases"]:
        known = full and full["step_s_median"] and c["step_s_median"]
        speed = full["step_s_median"] / c["step_s_median"] if known else None
        c["speed_vs_small_full"] = speed
        share = f"{c['trainable_share']:.2%}" if c["trainable_share"] else "n/a"
        gb = f"{c['peak_reserved_bytes'] / 1024**3:.1f}" if c["peak_reserved_bytes"] else "n/a"
        step = f"{c['step_s_median']:.3f}" if c["step_s_median"] else c["error"]
        rate = f"{c['samples_per_s']:.1f}" if c["samples_per_s"] else "n/a"
        print(f"| whisper-{c['model']} | {c['method']} | {share} | {step} | {rate} | "
              f"{f'{speed:.2f}x' if speed else 'n/a'} | {gb} | {c['fits_15GB']} |")
    fitting = [c["model"] for c in results["cases"] if c["method"] == "lora" and c["fits_15GB"]]
    lora = next((c for c in results["cases"] if (c["model"], c["method"]) == ("small", "lora")), None)

    def ratio(key: str) -> float | None:
        return lora[key] / full[key] if lora and full and lora[key] and full[key] else None

    summary = {"largest_lora_fitting_15GB": max(fitting, key=list(SHAPES).index) if fitting else None,
               "small_lora_vs_full_step_time": ratio("step_s_median"),
               "small_lora_vs_full_peak_memory": ratio("peak_reserved_bytes")}
    results["summary"] = summary
    if args.tiny and args.results_dir == RESULTS_DIR:
        print("(--tiny: a check of the script, nothing written to benchmarks/results)")
    else:
        args.results_dir.mkdir(parents=True, exist_ok=True)
        stamp = results["started"][:19].replace("-", "").replace(":", "")
        for name in (f"lora-gpu-{stamp}.json", "lora-gpu-latest.json"):
            (args.results_dir / name).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(summary))
    return results


if __name__ == "__main__":
    main()
