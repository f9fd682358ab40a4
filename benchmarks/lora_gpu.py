"""LoRA on a GPU, fp16 and over 8-bit base weights: which Whisper a free T4 can fine-tune, and how.

    python -m benchmarks.lora_gpu                      # on a CUDA machine; no Hub access needed
    python -m benchmarks.lora_gpu --tiny --device cpu  # checks the code path on a CPU in a minute

Random weights cost what trained ones cost, so every model is built from the real checkpoint's shape
(layers, width, heads, mel bins, vocabulary) without downloading anything. The process is capped at a
T4's 15 GiB (``torch.cuda.set_per_process_memory_fraction``). Each case trains ``--steps`` timed steps
after ``--warmup`` untimed ones on one random batch (log-mel 30 s windows, labels of ``--label-tokens``
tokens) as the CLI's ``Seq2SeqTrainer`` would: fp16 autocast with a gradient scaler, activation
checkpointing, AdamW on the trainable parameters only, at the course's batch of 16, or halved until a
step fits (``batch_size`` says which). LoRA goes through ``helpers.extras.lora.apply_lora`` (rank 32, alpha 64,
q_proj and v_proj: the CLI's defaults); ``lora-int8`` loads the base with ``helpers.extras.lora.load_base_in_8bit``
(``--load-in-8bit``; needs bitsandbytes, else the case records the error).

Cases: whisper-small with full fine-tuning (the course's), then LoRA and LoRA over 8-bit weights on
whisper-small and on large-v3-turbo and large-v3 shapes (``--models``). For each: step time, samples/s,
peak memory, trainable share, and the merge check: after training, ``helpers.extras.lora.merge_and_save`` (the
CLI's merge) writes the merged model, whose greedy ids on a random batch must equal the adapter-wrapped
model's (``merged_ids_equal``; in fp32, over the full-precision base the adapter is merged into; for
``lora-int8`` the 8-bit adapter model's agreement with it is ``int8_ids_agreement``, a share of tokens).

Prints a table and a last line of JSON; writes ``lora-gpu-<timestamp>.json`` and ``lora-gpu-latest.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import statistics
import tempfile
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


def build(name: str, method: str, device: torch.device, tiny: bool, folder: Path):
    """A random whisper-``name`` on ``device``: every weight trains (``full``), or LoRA over fp32 or 8-bit weights.

    The random base is saved to ``folder`` first (in fp16): bitsandbytes quantises while loading, and merging
    an 8-bit model reloads its base from there in full precision, as the CLI reloads the checkpoint.
    """
    from transformers import WhisperForConditionalGeneration

    from helpers.extras.lora import apply_lora, load_base_in_8bit

    torch.manual_seed(0)
    config = whisper_config(name, tiny)
    config._attn_implementation = "sdpa"
    model = WhisperForConditionalGeneration(config)
    if method == "lora-int8":
        model.half().save_pretrained(folder)
        del model
        model = load_base_in_8bit(str(folder))
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


def greedy_ids(model, features: torch.Tensor, start: int, steps: int) -> list[list[int]]:
    """``steps`` greedy decoder steps from ``start`` (no cache, no Whisper prompt rules: the same arithmetic
    for the adapter-wrapped and the merged model, which is all the merge check needs)."""
    model.eval()
    with torch.no_grad():
        encoded = model.get_encoder()(features)
        ids = torch.full((features.shape[0], 1), start, device=features.device)
        for _ in range(steps):
            logits = model(encoder_outputs=encoded, decoder_input_ids=ids).logits[:, -1]
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids[:, 1:].tolist()


def merge_check(model, method: str, config, device: torch.device, folder: Path, steps: int = 16) -> dict:
    """Merge the trained adapter as the CLI does (``merge_and_save``) and compare greedy ids with the adapter's."""
    from peft import PeftModel
    from transformers import WhisperForConditionalGeneration

    from helpers.config import SMOKE_MODEL_DIR
    from helpers.extras.lora import merge_and_save
    from helpers.model import load_processor

    torch.manual_seed(1)
    features = torch.randn(2, config.num_mel_bins, 3000, device=device)
    start = config.decoder_start_token_id
    processor = load_processor(str(SMOKE_MODEL_DIR), "sinhalese", "transcribe")  # saved beside it; unused here
    adapter_dir, merged_dir = folder / "adapter", folder / "merged"
    quantized_ids = greedy_ids(model, features.half(), start, steps) if method == "lora-int8" else None
    reference = model
    if method == "lora-int8":  # the adapter over the full-precision base, the model merging writes into
        model.save_pretrained(str(adapter_dir))
        base = WhisperForConditionalGeneration.from_pretrained(str(folder), dtype=torch.float32).to(device)
        reference = PeftModel.from_pretrained(base, str(adapter_dir)).to(device)
    adapter_ids = greedy_ids(reference, features, start, steps)
    merged = merge_and_save(model, processor, merged_dir, adapter_dir).to(device)
    merged_ids = greedy_ids(merged, features, start, steps)
    result = {"merged_ids_equal": merged_ids == adapter_ids}
    if quantized_ids is not None:
        pairs = [(a, b) for row_a, row_b in zip(quantized_ids, merged_ids) for a, b in zip(row_a, row_b)]
        result["int8_ids_agreement"] = sum(a == b for a, b in pairs) / len(pairs)
    del merged, reference
    return result


def run_case(name: str, method: str, args: argparse.Namespace) -> dict:
    """Train whisper-``name`` with ``method`` at the largest batch (16, 8, ...) that fits; then the merge check."""
    batch_size = args.batch_size
    while True:
        result = _run_case(name, method, args, batch_size)
        if not (result["error"] or "").startswith("out of memory") or batch_size == 1:
            return result
        print(f"   out of memory at batch {batch_size}: trying {batch_size // 2}", flush=True)
        batch_size //= 2


def _run_case(name: str, method: str, args: argparse.Namespace, batch_size: int) -> dict:
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = optimizer = features = labels = None
    times, error, share, merge, peak, reserved = [], None, (None, None, None), {}, None, None
    with tempfile.TemporaryDirectory() as folder:
        try:
            from benchmarks.gpu_step import timed_steps
            from helpers.extras.lora import trainable_share

            model, config = build(name, method, device, args.tiny, Path(folder))
            share = trainable_share(model)
            optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                          lr=1e-3 if method != "full" else 1e-5)
            scaler = torch.amp.GradScaler("cuda", enabled=cuda and args.fp16)
            features = torch.randn(batch_size, config.num_mel_bins, 3000, device=device)
            labels = torch.randint(0, 50000, (batch_size, args.label_tokens), device=device)
            timed_steps(model, optimizer, scaler, features, labels, args, times)
            peak = torch.cuda.max_memory_allocated() if cuda else None
            reserved = torch.cuda.max_memory_reserved() if cuda else None
            del optimizer, features, labels
            optimizer = features = labels = None
            if method != "full":
                try:
                    merge = merge_check(model, method, config, device, Path(folder))
                except Exception as failure:  # noqa: BLE001  (the step figures stand; the merge's failure is named)
                    merge = {"merged_ids_equal": None, "merge_error": f"{type(failure).__name__}: {failure}"[:300]}
        except torch.cuda.OutOfMemoryError as oom:
            error = f"out of memory: {oom}".splitlines()[0]
        except Exception as failure:  # noqa: BLE001  (e.g. bitsandbytes missing: recorded, the other cases go on)
            error = f"{type(failure).__name__}: {failure}".splitlines()[0]
        if cuda and peak is None:  # the case failed before its figures: what it reached
            peak, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
        del model, optimizer, features, labels
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    median = statistics.median(times) if times else None
    trainable, total, fraction = share
    return {
        "model": name, "method": method, "batch_size": batch_size, "error": error,
        "trainable_parameters": trainable, "parameters": total, "trainable_share": fraction,
        "step_s_median": median, "samples_per_s": batch_size / median if median else None,
        "peak_allocated_bytes": peak, "peak_reserved_bytes": reserved,
        "fits_15GB": None if reserved is None else (error is None and reserved <= MEMORY_BUDGET_BYTES),
        "step_s_all": times, **merge,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=16, help="the course's per-device batch size (halved on OOM)")
    parser.add_argument("--label-tokens", type=int, default=64, help="label length of the random batch")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-fp16", dest="fp16", action="store_false")
    parser.add_argument("--models", nargs="+", default=["small", "large-v3-turbo", "large-v3"], choices=list(SHAPES))
    parser.add_argument("--methods", nargs="+", default=["lora", "lora-int8"], choices=["lora", "lora-int8"],
                        help="LoRA ways tried on every model (whisper-small full fine-tuning always runs first)")
    parser.add_argument("--memory-cap-gib", type=float, default=15.0, help="GPU memory this process may use")
    parser.add_argument("--tiny", action="store_true", help="tiny models of the same vocabulary, to check the script")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("No CUDA GPU here: pass --device cpu (with --tiny) to check the script.")
    if cuda:  # a T4 has 16 GB, 15 GiB of it usable
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_cap_gib * 1024**3 / total))

    cases = [("small", "full")] + [(name, method) for name in args.models for method in args.methods]
    results = {
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__, "args": {k: str(v) for k, v in vars(args).items()}, "cases": [],
    }
    for name, method in cases:
        print(f"-- whisper-{name}, {method}", flush=True)
        results["cases"].append(run_case(name, method, args))

    full = next((c for c in results["cases"] if (c["model"], c["method"]) == ("small", "full")), None)
    print("\n| model | method | batch | trainable | step (s) | samples/s | vs small full | peak reserved (GB) | "
          "fits 15 GB | merged ids = adapter's |\n|---|---|---|---|---|---|---|---|---|---|")
    for c in results["cases"]:
        known = full and full["samples_per_s"] and c["samples_per_s"]
        speed = c["samples_per_s"] / full["samples_per_s"] if known else None
        c["speed_vs_small_full"] = speed
        share = f"{c['trainable_share']:.2%}" if c["trainable_share"] else "n/a"
        gb = f"{c['peak_reserved_bytes'] / 1024**3:.1f}" if c["peak_reserved_bytes"] else "n/a"
        step = f"{c['step_s_median']:.3f}" if c["step_s_median"] else c["error"]
        rate = f"{c['samples_per_s']:.1f}" if c["samples_per_s"] else "n/a"
        merged = c.get("merged_ids_equal", "n/a")
        if "int8_ids_agreement" in c:
            merged = f"{merged} (8-bit: {c['int8_ids_agreement']:.0%} of ids)"
        print(f"| whisper-{c['model']} | {c['method']} | {c['batch_size']} | {share} | {step} | {rate} | "
              f"{f'{speed:.2f}x' if speed else 'n/a'} | {gb} | {c['fits_15GB']} | {merged} |")
    order = list(SHAPES)
    fitting = {method: [c["model"] for c in results["cases"] if c["method"] == method and c["fits_15GB"]
                        and c["batch_size"] == args.batch_size] for method in args.methods}
    lora = next((c for c in results["cases"] if (c["model"], c["method"]) == ("small", "lora")), None)

    def ratio(key: str) -> float | None:
        return lora[key] / full[key] if lora and full and lora[key] and full[key] else None

    summary = {f"largest_{method}_at_batch_{args.batch_size}_in_15GB": max(models, key=order.index) if models else None
               for method, models in fitting.items()}
    summary.update(small_lora_vs_full_step_time=ratio("step_s_median"),
                   small_lora_vs_full_peak_memory=ratio("peak_reserved_bytes"),
                   merges_equal=all(c.get("merged_ids_equal") is not False for c in results["cases"]))
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
