"""Transcription throughput on this CPU: transformers against CTranslate2 (float32 and int8), in one run.

    python -m benchmarks.ct2_throughput                  # OpenAI's tiny.en, the bundled English clips, 1 thread
    python -m benchmarks.ct2_throughput --model base --threads 2 --repeats 5

The model is a real pretrained Whisper converted offline (``tools/pretrained_whisper.py``), so transcripts
end where the speech ends, as a fine-tuned model's do. Every engine transcribes the same clips, sorted by
length, in batches of ``--batch-size``, greedily, from the same log-mel features (``helpers.collator``):

* transformers: ``helpers.evaluation.transcribe`` (what the CLI and notebook 05 score with), fp32;
* CTranslate2 float32: ``helpers.extras.ctranslate2`` export without quantisation;
* CTranslate2 int8: the same exported with ``quantization="int8"`` (int8 weights and matrix products).

The engines take turns, ``--repeats`` rounds, so a machine shared with other work slows them alike; the
median round counts. Wall time gives clips/s; process CPU time (all threads) is shown too, steadier when
the machine is busy. Prints a table and a last line of JSON; writes
``benchmarks/results/ct2-<model>-<timestamp>.json`` and ``ct2-<model>-latest.json`` (kept in git: docs/ctranslate2.md's
figures).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads distort a shared machine's timings

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def english_clips(limit: int | None):
    """The bundled corpus's English clips, train and test (espeak-ng speaks a third of them in English)."""
    from datasets import concatenate_datasets

    from helpers.config import BUNDLED_CORPUS
    from helpers.data import load_common_voice

    splits = load_common_voice(str(BUNDLED_CORPUS))
    clips = concatenate_datasets([splits["train"], splits["test"]])
    english = [i for i, sentence in enumerate(clips["sentence"]) if sentence.isascii()]
    return clips.select(english[:limit])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny.en", choices=["tiny.en", "base"])
    parser.add_argument("--clips", type=int, default=None, help="at most this many English clips (default: all)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128, help="longest transcript, in tokens")
    parser.add_argument("--threads", type=int, default=1, help="threads for each engine (torch and CTranslate2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from helpers.audio import from_int16
    from helpers.evaluation import transcribe
    from helpers.extras.ctranslate2 import CT2Whisper, export_ctranslate2
    from helpers.model import load_model_and_processor
    from helpers.preparation import prepare_splits
    from tools.pretrained_whisper import ensure_pretrained

    folder = ensure_pretrained(args.model)
    language = "english" if args.model == "base" else None
    task = "transcribe" if language else None
    model, processor = load_model_and_processor(str(folder), language, task)
    clips = prepare_splits({"test": english_clips(args.clips)}, processor, num_proc=1)[0]["test"]
    order = sorted(range(len(clips)), key=lambda i: clips[i]["duration"])  # as transcribe() sorts
    audio = [from_int16(clips[i]["audio_16k"]) for i in order]
    seconds = sum(len(a) for a in audio) / 16000

    work = Path(tempfile.mkdtemp(prefix="ct2-bench-"))
    engines = {}
    for name, quantization, compute in (("ct2_float32", None, "float32"), ("ct2_int8", "int8", "int8")):
        start = time.perf_counter()
        ct2_dir = export_ctranslate2(folder, work / name, quantization)
        size = (ct2_dir / "model.bin").stat().st_size
        engine = CT2Whisper(ct2_dir, compute_type=compute, threads=args.threads)
        engines[name] = dict(size=size, export_s=time.perf_counter() - start,
                             run=lambda e=engine: e.transcribe(audio, language, task, args.max_length, args.batch_size))

    def run_transformers() -> list[str]:
        texts = transcribe(model, processor, clips, args.batch_size, args.max_length)
        return [texts[i] for i in order]

    engines = {"transformers": dict(size=(folder / "model.safetensors").stat().st_size, export_s=None,
                                    run=run_transformers), **engines}
    timings = {name: {"wall": [], "cpu": []} for name in engines}
    outputs: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for name, engine in engines.items():
            wall, cpu = time.perf_counter(), time.process_time()
            outputs[name] = engine["run"]()
            timings[name]["wall"].append(time.perf_counter() - wall)
            timings[name]["cpu"].append(time.process_time() - cpu)

    from helpers.metrics import wer_scores

    references = [clips[i]["sentence"] for i in order]
    rows, summary = [], {}
    base_wall = statistics.median(timings["transformers"]["wall"])
    base_cpu = statistics.median(timings["transformers"]["cpu"])
    for name, engine in engines.items():
        wall, cpu = statistics.median(timings[name]["wall"]), statistics.median(timings[name]["cpu"])
        same = sum(a == b for a, b in zip(outputs[name], outputs["transformers"], strict=True))
        row = {"engine": name, "clips_per_s": len(audio) / wall, "cpu_s_per_clip": cpu / len(audio),
               "speed_vs_transformers_wall": base_wall / wall, "speed_vs_transformers_cpu": base_cpu / cpu,
               "model_bytes": engine["size"], "export_s": engine["export_s"],
               "same_transcript_as_transformers": same,
               "wer_words": wer_scores(outputs[name], references)["wer_words"],
               "wall_s": timings[name]["wall"], "cpu_s": timings[name]["cpu"]}
        rows.append(row)
        summary[name] = {"speed_wall": round(row["speed_vs_transformers_wall"], 2),
                         "speed_cpu": round(row["speed_vs_transformers_cpu"], 2), "same": f"{same}/{len(audio)}"}

    print(f"\nwhisper-{args.model}, {len(audio)} English clips ({seconds:.0f} s of audio), batch {args.batch_size}, "
          f"{args.threads} thread(s), median of {args.repeats} rounds")
    print("| engine | clips/s | vs transformers (wall) | CPU s per clip | vs transformers (CPU) | model file (MB) "
          "| same transcript as transformers | `wer_words` |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['engine']} | {r['clips_per_s']:.2f} | {r['speed_vs_transformers_wall']:.2f}x | "
              f"{r['cpu_s_per_clip']:.3f} | {r['speed_vs_transformers_cpu']:.2f}x | {r['model_bytes'] / 1e6:.0f} | "
              f"{r['same_transcript_as_transformers']}/{len(audio)} | {r['wer_words']:.1f} |")
    import ctranslate2
    import transformers

    results = {
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average": list(os.getloadavg()), "torch": torch.__version__,
                    "transformers": transformers.__version__, "ctranslate2": ctranslate2.__version__},
        "args": {k: str(v) for k, v in vars(args).items()}, "clips": len(audio), "audio_s": seconds,
        "engines": rows, "summary": summary,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = results["started"][:19].replace("-", "").replace(":", "")
    for name in (f"ct2-{args.model}-{stamp}.json", f"ct2-{args.model}-latest.json"):
        (args.results_dir / name).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(summary))
    return results


if __name__ == "__main__":
    main()
