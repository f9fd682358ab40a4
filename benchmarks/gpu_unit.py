"""The zero-shot pass on a GPU, the course's way against the ``t4`` profile's, at Dhivehi's real lengths.

    python -m benchmarks.gpu_unit                                     # on a CUDA machine; no Hub access needed
    python -m benchmarks.gpu_unit --tiny --device cpu --clips 6       # checks the code path on a CPU

A whisper-small shaped model (random weights, the real multilingual tokenizer; ``benchmarks.gpu_eval``'s
synthetic Dhivehi test split) transcribes the same clips two ways, capped at a T4's 15 GiB:

* ``course``: the evaluation chapter's zero-shot pass: batch 32, dataset order, up to 128 new tokens, nothing
  stops a loop;
* ``ours`` (eager) and ``ours-fast`` (the static-cache path): ``helpers.evaluation.evaluate_zero_shot``'s
  settings: batch 16, sorted, at most the longest reference + ``zero_shot_token_margin`` tokens, a row stopped
  once its tail repeats ``stop_repeats`` times.

**Decode lengths.** ``ForcedLoops`` (a logits processor) makes each row write its Dhivehi sentence's token
count; then every ``--loop-every``-th row (by its token count) loops, repeating its last three tokens as a
zero-shot Whisper does, and the others end. ``benchmarks.budget`` measures how often real weights loop.

Prints a table and a last line of JSON: seconds, decoder steps, generated tokens, peak memory, and seconds
scaled to the t4 profile's 400-clip sample and to the course's 2,212 clips. Writes ``gpu-unit-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.gpu_eval import (
    EOT,
    ForcedLengths,
    _memory_end,
    _memory_start,
    build_model,
    force_lengths,
    synthetic_test_split,
    thaana_sentences,
)
from benchmarks.gpu_step import RESULTS_DIR

COURSE_TEST_CLIPS, OUR_SAMPLE = 2212, 400


class ForcedLoops(ForcedLengths):
    """:class:`ForcedLengths`, but a row whose token count is a multiple of ``every`` loops instead of ending:
    past its length it repeats its last three tokens (period 3) until something stops it. Before its length a
    row writes tokens that never repeat (random weights would repeat one token from the start, a loop that
    :class:`helpers.evaluation.RepeatedTail` would stop at once, flattering our path)."""

    def __init__(self, every: int) -> None:
        super().__init__()
        self.every = every

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        position = input_ids.shape[1] - self.prompt
        done = (position >= self.rows)[:, None]
        loops = (self.rows % self.every == 0)[:, None]
        inf = -float("inf")
        ended = torch.full_like(scores, inf)
        ended[:, EOT] = 0.0
        repeat = torch.full_like(scores, inf).scatter_(1, input_ids[:, -3:-2], 0.0)
        text = torch.full_like(scores, inf)
        text[:, 1000 + (position * 7919) % 40000] = 0.0  # a new token every step: no tail repeats
        return torch.where(done & loops, repeat, torch.where(done, ended, text))


def run_path(name: str, model, processor, test, cuda: bool, every: int, batch: int, limit: int, ordered: bool,
             stop_repeats: int, fast: bool) -> dict:
    from helpers.evaluation import transcribe_ids
    from helpers.runtime.device import model_for_inference

    runner = model_for_inference(model, cuda)
    force_lengths(runner, ForcedLoops(every))
    placement = (next(runner.parameters()).device, next(runner.parameters()).dtype)
    _memory_start(cuda)
    start = time.perf_counter()
    ids = transcribe_ids(runner, processor, test, batch, limit, sort_by_length=ordered, placement=placement,
                         fast=fast, stop_repeats=stop_repeats)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    lengths = [len(row) for row in ids]
    order = sorted(range(len(test)), key=test["duration"].__getitem__) if ordered else list(range(len(test)))
    steps = sum(max(lengths[i] for i in order[s:s + batch]) + 1 for s in range(0, len(order), batch))
    return {"path": name, "batch": batch, "max_length": limit, "stop_repeats": stop_repeats, "fast": fast,
            "seconds": seconds, "decoder_steps": steps, "tokens": sum(lengths), **_memory_end(cuda),
            "rows_at_limit": sum(n >= limit for n in lengths), "clips": len(test),
            "s_for_400": seconds * OUR_SAMPLE / len(test), "s_for_2212": seconds * COURSE_TEST_CLIPS / len(test)}


def main(argv: list[str] | None = None) -> dict:
    from helpers.config import get_config
    from helpers.evaluation import zero_shot_max_length

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--clips", type=int, default=128)
    parser.add_argument("--loop-every", type=int, default=3, help="rows whose token count is a multiple of this loop")
    parser.add_argument("--memory-cap-gib", type=float, default=15.0)
    parser.add_argument("--tiny", action="store_true", help="a tiny model, to check the script on a CPU")
    parser.add_argument("--no-fast", action="store_true", help="skip the static-cache path")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_cap_gib * 1024**3 / total))
    import datasets

    datasets.disable_progress_bars()
    model, processor = build_model(args.tiny)
    model.to(args.device)
    test = synthetic_test_split(thaana_sentences(args.clips, None), processor.tokenizer)
    config = get_config("t4")
    cap = zero_shot_max_length(test, processor, config.generation_max_length, config.zero_shot_token_margin)
    paths = [run_path("course", model, processor, test, cuda, args.loop_every, 32, 128, False, 0, False),
             run_path("ours", model, processor, test, cuda, args.loop_every, config.eval_batch_size, cap, True,
                      config.stop_repeats, False)]
    if not args.no_fast:
        paths.append(run_path("ours-fast", model, processor, test, cuda, args.loop_every, config.eval_batch_size, cap,
                              True, config.stop_repeats, True))
    device = torch.cuda.get_device_name(0) if cuda else "cpu"
    print(f"{device}; {args.clips} clips, every {args.loop_every}th (by token count) loops; our cap {cap} tokens")
    print("| path | batch | max tokens | s | decoder steps | tokens | rows at the limit | s for 400 | s for 2212 | "
          "peak reserved (GB) |\n|---|---|---|---|---|---|---|---|---|---|")
    for p in paths:
        gb = f"{p['peak_reserved_bytes'] / 1e9:.2f}" if p.get("peak_reserved_bytes") else "n/a"
        print(f"| {p['path']} | {p['batch']} | {p['max_length']} | {p['seconds']:.1f} | {p['decoder_steps']} | "
              f"{p['tokens']} | {p['rows_at_limit']} | {p['s_for_400']:.0f} | {p['s_for_2212']:.0f} | {gb} |")
    results = {"device": device, "clips": args.clips, "loop_every": args.loop_every, "cap": cap, "paths": paths,
               "t4_profile_zero_shot_s": paths[-1]["s_for_400"], "course_zero_shot_s": paths[0]["s_for_2212"]}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "gpu-unit-latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "paths"}))
    return results


if __name__ == "__main__":
    main()
