"""The course's preprocessing recipe against ours, side by side, on one machine, in one command (issues 6, 13).

    .venv/bin/python -m benchmarks.run                  # 300 clips (made once, then cached), all cores
    .venv/bin/python -m benchmarks.run --clips 8 --steps 1 --eval-passes 1 --lever-sample 4 --eval-clips 2   # quick

Steps, each measured in its own process (so peak memory is that step's, children included):

1. a Common Voice-shaped corpus (48 kHz mono MP3, 2-12 s) from the bundled corpus's generator, cached in
   ``benchmarks/work/``;
2. the recipe (``benchmarks.recipe``: librosa decoding, one float32 80 x 3000 log-mel per clip,
   ``map(num_proc=1)``) and ours (``helpers.data`` + ``helpers.preparation``, ``num_proc`` = all cores, FLAC
   16 kHz audio), each loading the tsv rows, preprocessing every split and saving to disk; ours with
   ``num_proc`` workers and with one, alternating (``--prep-rounds``, the recipe in the middle), so that the
   ratio of the two compares runs made under the same load; each run's CPU time is kept too;
3. a check that both kept the same clips, in the same order, with the same labels and durations, and that
   every run of ours kept the same rows;
4. training steps of the smoke model both ways, and evaluation with and without sorting by length
   (``benchmarks.model_bench``);
5. evaluation with OpenAI's real tiny.en and base (``benchmarks.eval_bench``): order, batch size, greedy
   against the pipeline's 5 beams, what finished rows cost; it fails if a greedy setting changes the WER;
6. the levers one by one on a sample of clips (``benchmarks.levers``);
7. what a t4 run writes to Google Drive (``benchmarks.drive``): five saves of the smoke model on a folder
   that counts every byte, scaled to whisper-small's parameters, against the 4 GB budget (issue 17);
8. the unit's budget (``benchmarks.budget``): every pass the seven notebooks make on the t4 profile and every
   pass of the course's unit, counted, measured with whisper-base and projected to a T4 from the course's
   45 minutes (issue 24), with this run's preprocessing figures.

It prints a table and, as its last line, JSON with the ratios; the raw figures go to
``benchmarks/results/<timestamp>.json`` and ``benchmarks/results/latest.json``. ``--update-readme``
writes the table into ``docs/benchmarks.md`` (the option keeps its old name). The GPU parts are ``benchmarks.gpu_step``
(training) and ``benchmarks.gpu_eval`` (whole-split evaluation).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/run.py` as well as `python -m benchmarks.run`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "benchmarks"

from benchmarks.corpus import WORK_DIR, ensure_corpus, read_rows  # noqa: E402
from benchmarks.measure import REPO_ROOT, run_measured  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
README = REPO_ROOT / "docs" / "benchmarks.md"
GOALS = {"p1_throughput_ratio": 8.0, "p1_worker_scaling": 1.0, "p2_disk_ratio": 0.25, "train_step_ratio": 1.05,
         "drive_t4_run_gb": 4.0}
MB = 1e6


def machine() -> dict:
    """What the figures were measured on, including how busy it was."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        memory = psutil.virtual_memory().total
    except Exception:
        memory = None
    versions = {}
    for package in ("torch", "transformers", "datasets", "librosa", "soundfile", "soxr", "numpy", "pyarrow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpu": None,  # CPU only: the GPU part of issue 6 is benchmarks/gpu_step.py
        "versions": versions,
    }


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def prep(side: str, corpus: Path, work: Path, num_proc: int, env: dict, tag: str | None = None) -> dict:
    """Run one preprocessing side in its own process; return its figures with wall time and peak memory."""
    tag = tag or side
    out, result = work / f"prepared-{tag}", work / f"prep-{tag}.json"
    shutil.rmtree(out, ignore_errors=True)
    result.unlink(missing_ok=True)
    load = load_average()
    print(f"-- preprocessing: {tag} (num_proc={num_proc}; load average {load})", flush=True)
    measured = run_measured(
        ["benchmarks.prep", side, "--data", str(corpus), "--out", str(out), "--result", str(result),
         "--num-proc", str(num_proc)], env)
    if measured["returncode"] != 0:
        raise SystemExit(f"the {tag} preprocessing failed (exit {measured['returncode']})")
    figures = json.loads(result.read_text())
    figures.update(measured, out_dir=str(out), load_average=load)
    return figures


def prep_rounds(corpus: Path, work: Path, num_proc: int, rounds: int, env: dict, with_one: bool) -> tuple:
    """The recipe once, ours with ``num_proc`` workers and with one, alternating, ``rounds`` times each.

    On a shared machine the load drifts, so the runs are paired and their order alternates, and the
    recipe runs in the middle: ours(N), ours(1), recipe, ours(1), ours(N) for two rounds. Returns
    ``(recipe, ours, ours_1)``; each of ours holds every run in ``runs`` and the median clips/s.
    """
    runs: dict[str, list[dict]] = {"ours": [], "ours_1": []}
    recipe = None
    sides = [("ours", num_proc, "ours")] + ([("ours_1", 1, "ours-num-proc-1")] if with_one else [])
    for round_ in range(rounds):
        if round_ == rounds // 2:
            recipe = prep("recipe", corpus, work, 1, env)
        for key, n, tag in sides if round_ % 2 == 0 else sides[::-1]:
            runs[key].append(prep("ours", corpus, work, n, env, tag=tag))
    if recipe is None:  # rounds == 0
        recipe = prep("recipe", corpus, work, 1, env)
    summaries = {}
    for key, done in runs.items():
        if not done:
            summaries[key] = None
            continue
        summary = dict(done[0])  # clips, labels, disk bytes: the same every run (checked below)
        summary["runs"] = [{k: run[k] for k in ("seconds", "clips_per_s", "cpu_s", "cores_used", "cpu_ms_per_clip",
                                                "wall_s", "peak_rss_bytes", "peak_pss_bytes", "load_average")}
                           for run in done]
        summary["same_rows_every_run"] = all(run["clips"] == done[0]["clips"] for run in done)
        summary["seconds"] = statistics.median(run["seconds"] for run in done)
        summary["clips_per_s"] = summary["n_clips"] / summary["seconds"]
        summary["cpu_ms_per_clip"] = statistics.median(run["cpu_ms_per_clip"] for run in done)
        summary["cores_used"] = statistics.median(run["cores_used"] for run in done)
        summary["peak_rss_bytes"] = max(run["peak_rss_bytes"] for run in done)
        summary["peak_pss_bytes"] = max((run["peak_pss_bytes"] or 0) for run in done) or None
        summaries[key] = summary
    ours, ours_1 = summaries["ours"], summaries["ours_1"]
    if ours_1:
        # Paired rounds: each ratio compares two runs made one after the other.
        ours["worker_scaling_by_round"] = [a["clips_per_s"] / b["clips_per_s"] for a, b in zip(ours["runs"], ours_1["runs"])]
        ours["same_rows_as_num_proc_1"] = ours["clips"] == ours_1["clips"]
    return recipe, ours, ours_1


def same_clips(corpus: Path, recipe: dict, ours: dict) -> dict:
    """Did the recipe and our path keep the same clips, in the same order, with the same labels?"""
    corpus_rows = {split: len(read_rows(corpus / f"{split}.tsv")) for split in ("train", "dev", "test")}
    check = {"corpus_clips": sum(corpus_rows.values()), "recipe_clips": recipe["n_clips"], "ours_clips": ours["n_clips"]}
    names = labels = True
    worst_duration = 0.0
    for split in ("train", "test"):
        a, b = recipe["clips"][split], ours["clips"][split]
        names &= a["names"] == b["names"]
        labels &= a["labels"] == b["labels"]
        if len(a["seconds"]) == len(b["seconds"]):
            worst_duration = max([worst_duration] + [abs(x - y) for x, y in zip(a["seconds"], b["seconds"])])
        else:
            worst_duration = float("inf")
    check.update(
        same_count=check["corpus_clips"] == check["recipe_clips"] == check["ours_clips"],
        same_clips=names,
        same_labels=labels,
        max_duration_diff_s=worst_duration,
    )
    check["ok"] = bool(check["same_count"] and names and labels and worst_duration < 1e-3)
    return check


def ratios(recipe: dict, ours: dict, ours_1: dict | None, model: dict | None, real_eval: dict | None = None) -> dict:
    """The figures the issue's goals are about, as ours / recipe."""
    out = {
        "p1_throughput_ratio": ours["clips_per_s"] / recipe["clips_per_s"],
        "p1_throughput_ratio_num_proc_1": ours_1["clips_per_s"] / recipe["clips_per_s"] if ours_1 else None,
        # Two workers against one, median of the rounds' paired ratios (what the cores give on this machine now).
        "p1_worker_scaling": statistics.median(ours["worker_scaling_by_round"]) if ours_1 else None,
        # CPU seconds per clip, ours / recipe: what the path costs, whatever else the machine is doing.
        "p1_cpu_cost_ratio": ours["cpu_ms_per_clip"] / recipe["cpu_ms_per_clip"],
        "p2_disk_ratio": ours["disk_bytes"] / recipe["disk_bytes"],
        "peak_pss_ratio": (ours["peak_pss_bytes"] / recipe["peak_pss_bytes"]) if recipe.get("peak_pss_bytes") else None,
        "peak_rss_ratio": ours["peak_rss_bytes"] / recipe["peak_rss_bytes"],
    }
    if model:
        training, evaluation = model["training"], model["evaluation"]
        out["train_step_ratio"] = training["ours"]["step_s_median"] / training["recipe"]["step_s_median"]
        recipe_data = training["recipe"]["fetch_s_median"] + training["recipe"]["collate_s_median"]
        ours_data = training["ours"]["fetch_s_median"] + training["ours"]["collate_s_median"]
        out["train_data_ratio"] = ours_data / recipe_data
        out["eval_sorted_speedup"] = evaluation["sorted_clips_per_s"] / evaluation["unsorted_clips_per_s"]
        out["eval_reference_token_slots_ratio"] = evaluation["reference_token_slots_ratio"]
    if real_eval:
        out["eval_real"] = real_eval_summary(real_eval)
    return out


def real_eval_summary(real_eval: dict) -> dict:
    """Per real model: each pass against the course's (clips/s, CPU), WER, finished rows, decoding's share."""
    summary = {}
    for name, figures in real_eval["models"].items():
        if "skipped" in figures:
            summary[name] = {"skipped": figures["skipped"]}
            continue
        passes, batching = figures["passes"], figures["batching"]
        summary[name] = {
            "n_clips": figures["n_clips"],
            "speed_vs_course": {p: round(r["clips_per_s_vs_course"], 4) for p, r in passes.items() if p != "course"},
            "cpu_vs_course": {p: round(r["cpu_vs_course"], 4) for p, r in passes.items() if p != "course"},
            "wer_words": {p: r["scores"]["wer_words"] for p, r in passes.items()},
            "greedy_wer_unchanged": all(figures["greedy_wer_unchanged"].values()),
            "finished_row_share": {p: round(r["finished_row_share"], 4) for p, r in passes.items()},
            "decoding_cpu_share": {p: round(r["decoding_cpu_s"] / r["cpu_s"], 4) if r["cpu_s"] else None
                                   for p, r in passes.items()},
            # From the transcripts' lengths (greedy, batch 16): sorted / unsorted.
            "sorted_token_slots_ratio_b16": round(batching["sorted"]["16"]["token_slots_per_clip"]
                                                  / batching["unsorted"]["16"]["token_slots_per_clip"], 4),
            "sorted_steps_ratio_b16": round(batching["sorted"]["16"]["steps_per_clip"]
                                            / batching["unsorted"]["16"]["steps_per_clip"], 4),
        }
    return summary


def _x(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}x"


def table(results: dict) -> str:
    """The Markdown table printed at the end and written into the README."""
    recipe, ours, ours_1 = results["recipe"], results["ours"], results.get("ours_num_proc_1")
    r, model, levers = results["ratios"], results.get("model"), results.get("levers")
    cores = results["machine"]["cores"]
    n = results["check"]["corpus_clips"]
    rows = [
        "| measure | course recipe | ours | ours / recipe | goal |",
        "|---|---|---|---|---|",
        f"| P1 preprocessing, {n} clips (clips/s) | {recipe['clips_per_s']:.1f} (num_proc=1) | "
        f"{ours['clips_per_s']:.1f} (num_proc={ours['num_proc']}) | **{_x(r['p1_throughput_ratio'], 1)}** | ≥ 8x |",
    ]
    if ours_1:
        rounds = len(ours["runs"])
        rows += [
            f"| P1, ours on one core (clips/s) | | {ours_1['clips_per_s']:.1f} (num_proc=1) | "
            f"{_x(r['p1_throughput_ratio_num_proc_1'], 1)} | |",
            f"| {ours['num_proc']} workers / 1, paired runs ({rounds} each, alternating; per run: "
            f"{', '.join(f'{x:.2f}' for x in ours['worker_scaling_by_round'])}) | | | "
            f"**{_x(r['p1_worker_scaling'])}** | > 1x |",
            f"| cores' worth of CPU the runs got (CPU s / wall s) | {recipe['cores_used']:.2f} | "
            f"{ours['cores_used']:.2f} ({ours['num_proc']} workers), {ours_1['cores_used']:.2f} (1) | | |",
        ]
    rows.append(f"| CPU time per clip (ms), whatever the load | {recipe['cpu_ms_per_clip']:.0f} | "
                f"{ours['cpu_ms_per_clip']:.0f} | {_x(r['p1_cpu_cost_ratio'])} | |")
    rows.append(f"| start-up, not in P1: imports, processor, librosa's first call (s) | {recipe['setup_s']:.1f} | {ours['setup_s']:.1f} | | |")
    rows += [
        f"| P2 prepared dataset on disk (MB) | {recipe['disk_bytes'] / MB:.1f} | {ours['disk_bytes'] / MB:.1f} | "
        f"**{_x(r['p2_disk_ratio'])}** | ≤ 0.25x |",
        f"| peak memory of preprocessing, PSS incl. workers (MB) | {(recipe['peak_pss_bytes'] or 0) / MB:.0f} | "
        f"{(ours['peak_pss_bytes'] or 0) / MB:.0f} | {_x(r['peak_pss_ratio'])} | |",
        f"| peak memory of preprocessing, summed RSS (MB) | {recipe['peak_rss_bytes'] / MB:.0f} | "
        f"{ours['peak_rss_bytes'] / MB:.0f} | {_x(r['peak_rss_ratio'])} | |",
    ]
    if model:
        t = model["training"]
        rows += [
            f"| training step, smoke model, batch {t['batch_size']} (s, median of {t['steps']}) | "
            f"{t['recipe']['step_s_median']:.2f} | {t['ours']['step_s_median']:.2f} | "
            f"**{_x(r['train_step_ratio'])}** | not slower |",
            f"| of which fetch rows + collate (s) | "
            f"{t['recipe']['fetch_s_median'] + t['recipe']['collate_s_median']:.3f} | "
            f"{t['ours']['fetch_s_median'] + t['ours']['collate_s_median']:.3f} | {_x(r['train_data_ratio'])} | |",
        ]
    check = results["check"]
    rows.append(f"| same clips, order, labels, durations | {check['recipe_clips']} clips | {check['ours_clips']} clips | "
                f"{'yes' if check['ok'] else '**NO**'} | same |")
    lines = ["\n".join(rows)]
    if model:
        e = model["evaluation"]
        lines.append(
            "| evaluation, smoke model, test split | unsorted | sorted by length | sorted / unsorted |\n"
            "|---|---|---|---|\n"
            f"| batched generation, batch {e['batch_size']}, {e['n_clips']} clips (clips/s) | "
            f"{e['unsorted_clips_per_s']:.2f} | {e['sorted_clips_per_s']:.2f} | {_x(r['eval_sorted_speedup'])} |\n"
            f"| token slots decoded per clip if each transcript stopped at its reference length "
            f"(no padding: {e['reference_tokens_per_clip']:.0f}) | {e['reference_token_slots_per_clip_unsorted']:.0f} | "
            f"{e['reference_token_slots_per_clip_sorted']:.0f} | {_x(r['eval_reference_token_slots_ratio'])} |")
    if levers:
        d, m, s, a = levers["decoding"], levers["log_mel"], levers["storage"], levers["arrow_vs_parquet"]
        lines.append(
            f"| lever (one core, {s['clips']} clips, {s['mean_seconds']:.1f} s mean) | recipe's way | ours | gain |\n"
            "|---|---|---|---|\n"
            f"| decode + resample to 16 kHz (ms/clip) | librosa {d['librosa_ms_per_clip']:.1f} | "
            f"soundfile + soxr {d['soundfile_soxr_ms_per_clip']:.1f} | {_x(d['speedup'])} |\n"
            f"| log-mel (ms/clip) | one clip per call {m['per_clip_call_ms']:.1f} | "
            f"collator, batch of {m['batch_size']} {m['collator_batched_ms_per_clip']:.1f} | {_x(m['speedup'])} |\n"
            f"| log-mel of a batch of {m['batch_size']} (ms/clip) | extractor, padded to 30 s "
            f"{m['extractor_batched_ms_per_clip']:.1f} | STFT over the audio only {m['collator_batched_ms_per_clip']:.1f} | "
            f"{_x(m['trim_speedup'])} |\n"
            f"| stored per clip (KB) | float32 log-mel {s['log_mel_float32']['bytes_per_clip'] / 1e3:.0f} | "
            f"FLAC 16 kHz {s['audio_flac']['bytes_per_clip'] / 1e3:.0f} | "
            f"{_x(s['audio_flac']['vs_recipe'])} of the bytes |\n"
            f"| other ways to store (KB, log-mel max error) | float16 log-mel "
            f"{s['log_mel_float16']['bytes_per_clip'] / 1e3:.0f} ({s['log_mel_float16']['mel_max_abs_err']:.4f}) | "
            f"int16 {s['audio_int16']['bytes_per_clip'] / 1e3:.0f} ({s['audio_int16']['mel_max_abs_err']:.3f}), "
            f"float16 audio {s['audio_float16']['bytes_per_clip'] / 1e3:.0f} "
            f"({s['audio_float16']['mel_max_abs_err']:.3f}), FLAC ({s['audio_flac']['mel_max_abs_err']:.3f}) | |\n"
            f"| our prepared train split: Arrow vs Parquet (MB) | Arrow {a['arrow_bytes'] / MB:.1f} | "
            f"Parquet {a['parquet_bytes'] / MB:.1f} | {_x(a['parquet_vs_arrow'])} |")
    real = results.get("real_eval")
    if real:
        lines.append(real_eval_table(real))
    if results.get("drive"):
        lines.append(drive_table(results["drive"]))
    m = results["machine"]
    lines.append(
        f"Machine: {m['cpu']}, {cores} cores, {(m['memory_bytes'] or 0) / 1e9:.0f} GB RAM, no GPU; torch "
        f"{m['versions']['torch']}, transformers {m['versions']['transformers']}, datasets {m['versions']['datasets']}; "
        f"load average before/after {results['load_average_before']} / {results['load_average_after']}; "
        f"{results['started']}, {results['total_s'] / 60:.1f} min in all.")
    return "\n\n".join(lines)


def drive_table(drive: dict) -> str:
    """What a 500-step t4 run writes to Drive: measured on the smoke model, scaled, and from parameters alone."""
    small, gb = drive["whisper_small"], 1e9
    return (
        "| Google Drive, t4 run (5 saves + final model) | written (GB) | goal |\n|---|---|---|\n"
        f"| smoke model measured ({drive['smoke_parameters'] / 1e6:.1f}M parameters; {drive['bytes_deleted'] / 1e6:.0f}"
        f" MB of it deleted again) | {drive['bytes_written'] / gb:.3f} | |\n"
        f"| scaled to whisper-small ({small['whisper_small_parameters'] / 1e6:.1f}M parameters) | "
        f"**{small['scaled_from_smoke_bytes'] / gb:.2f}** | ≤ 4 |\n"
        f"| from the parameter count: 5 x fp16 weights + fp32 final model | {small['from_parameters_bytes'] / gb:.2f} | |\n"
        f"| full checkpoints straight onto Drive (before issue 17) | {small['full_checkpoints_on_drive_bytes'] / gb:.2f}"
        " | |")


def real_eval_table(real: dict) -> str:
    """Per real model and pass: clips/s, CPU per clip, WER, finished rows, decoding's share; then batching."""
    from benchmarks.eval_bench import PASSES

    labels = {"course": "course: dataset order, batch 16", "sorted": "sorted, batch 16", "unsorted_b4": "unsorted, batch 4",
              "sorted_b4": "sorted, batch 4", "beam5": "sorted, batch 16, 5 beams (the pipeline's default)"}
    models = {name: m for name, m in real["models"].items() if "skipped" not in m}
    skipped = "; ".join(f"{name}: {m['skipped']}" for name, m in real["models"].items() if "skipped" in m)
    if not models:
        return f"Evaluation with real checkpoints: skipped ({skipped})"
    shown = [p for p in PASSES if any(p in m["passes"] for m in models.values())]
    n = "/".join(sorted({str(m["n_clips"]) for m in models.values()}))
    rows = [f"| real checkpoint ({n} English clips; greedy unless said) | " + " | ".join(labels[p] for p in shown)
            + " |", "|---|" + "---|" * len(shown)]
    for name, m in models.items():
        passes = m["passes"]

        def cells(fmt, passes=passes) -> str:
            return " | ".join(fmt(passes[p]) if p in passes else "–" for p in shown)

        rows += [
            f"| {name}: clips/s (vs course) | " + cells(lambda x: f"{x['clips_per_s']:.2f} ({x['clips_per_s_vs_course']:.2f}x)") + " |",
            f"| {name}: CPU s per clip (vs course) | " + cells(lambda x: f"{x['cpu_s_per_clip']:.2f} ({x['cpu_vs_course']:.2f}x)") + " |",
            f"| {name}: `wer_words` % | " + cells(lambda x: f"{x['scores']['wer_words']:.1f}") + " |",
            f"| {name}: token slots spent on rows already finished | "
            + cells(lambda x: f"{100 * x['finished_row_share']:.0f} %") + " |",
            f"| {name}: share of CPU time in decoding (rest: encoder, log-mel) | "
            + cells(lambda x: f"{100 * x['decoding_cpu_s'] / x['cpu_s']:.0f} %" if x["cpu_s"] else "n/a") + " |",
        ]
    lines = ["\n".join(rows)]
    sizes = sorted({size for m in models.values() for size in m["batching"]["sorted"]}, key=int)
    rows = ["| decoder work per clip, from the greedy transcripts' lengths | batch | token slots: unsorted | sorted | "
            "sequential steps: unsorted | sorted | finished rows' share: unsorted | sorted |",
            "|---|---|---|---|---|---|---|---|"]
    for name, m in models.items():
        b = m["batching"]
        for size in sizes:
            u, s_ = b["unsorted"][size], b["sorted"][size]
            rows.append(f"| {name} ({b['n_clips']} clips, {b['tokens_per_clip']:.1f} tokens each) | {size} | "
                        f"{u['token_slots_per_clip']:.1f} | {s_['token_slots_per_clip']:.1f} | {u['steps_per_clip']:.1f} | "
                        f"{s_['steps_per_clip']:.1f} | {100 * u['finished_row_share']:.0f} % | "
                        f"{100 * s_['finished_row_share']:.0f} % |")
    lines.append("\n".join(rows))
    if skipped:
        lines.append(f"Skipped: {skipped}")
    return "\n\n".join(lines)


def update_readme(text: str, path: Path = README,
                  markers: tuple[str, str] = ("<!-- benchmark-table -->", "<!-- /benchmark-table -->")) -> None:
    """Replace the table between ``markers`` in ``docs/benchmarks.md`` (the rest of the page stays)."""
    readme = path.read_text(encoding="utf-8")
    start, end = markers
    if start not in readme or end not in readme:
        print(f"{path} has no {start} ... {end} markers; the table was not written there.")
        return
    before, rest = readme.split(start, 1)
    _, after = rest.split(end, 1)
    path.write_text(f"{before}{start}\n{text}\n{end}{after}", encoding="utf-8")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=300, help="clips in the generated corpus (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=12.0)
    parser.add_argument("--num-proc", type=int, default=os.cpu_count() or 1, help="our map workers (default: all cores)")
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per side")
    parser.add_argument("--train-batch-size", type=int, default=8, help="the smoke profile's (default 8)")
    parser.add_argument("--eval-passes", type=int, default=2, help="evaluation passes per ordering (default 2)")
    parser.add_argument("--eval-max-length", type=int, default=64, help="the smoke profile's generation_max_length")
    parser.add_argument("--lever-sample", type=int, default=32, help="clips for the single-lever measurements")
    parser.add_argument("--skip-model", action="store_true", help="no training / evaluation measurements")
    parser.add_argument("--skip-levers", action="store_true")
    parser.add_argument("--skip-drive", action="store_true", help="no measurement of what training writes to Drive")
    parser.add_argument("--skip-budget", action="store_true", help="no unit budget (it measures whisper-base: minutes)")
    parser.add_argument("--skip-num-proc-1", action="store_true", help="do not also run ours with num_proc=1")
    parser.add_argument("--prep-rounds", type=int, default=2,
                        help="runs of ours with num_proc workers and with one, alternating (default 2)")
    parser.add_argument("--skip-real-eval", action="store_true", help="no evaluation with the real tiny.en / base")
    parser.add_argument("--eval-models", nargs="+", default=["tiny.en", "base"], help="real checkpoints to evaluate")
    parser.add_argument("--eval-clips", type=int, default=24, help="English clips per real model (default 24)")
    parser.add_argument("--eval-analysis-clips", type=int, help="clips whose transcript lengths give the batching "
                        "table (default: benchmarks.eval_bench.DEFAULT_ANALYSIS_CLIPS)")
    parser.add_argument("--eval-real-passes", nargs="+", help="the same passes for every real model "
                        "(default: benchmarks.eval_bench.DEFAULT_PASSES)")
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR, help="corpus cache and prepared datasets")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--update-readme", action="store_true", help="write the table into docs/benchmarks.md")
    parser.add_argument("--omp-wait-policy", default="PASSIVE",
                        help="OMP_WAIT_POLICY for every measured process (default PASSIVE: on a machine shared "
                             "with other work, spinning OpenMP threads made single torch ops up to 100x slower); "
                             "'' leaves it unset")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    results: dict = {"started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                     "machine": machine(), "load_average_before": load_average(), "args": vars(args).copy()}
    results["args"].update(work_dir=str(args.work_dir), results_dir=str(args.results_dir))
    env = {"COURSE_PROFILE": "smoke", "HF_HUB_OFFLINE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
           "TRANSFORMERS_VERBOSITY": "error", "TQDM_DISABLE": "1"}
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    results["env"] = env

    from helpers.config import SMOKE_MODEL_DIR
    from tools.smoke_model import build_smoke_model

    if not (SMOKE_MODEL_DIR / "config.json").is_file():
        build_smoke_model(SMOKE_MODEL_DIR)

    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    corpus = ensure_corpus(args.clips, args.seed, args.min_seconds, args.max_seconds, work_dir=work)
    results["corpus"] = {"path": str(corpus), "seconds_to_get": time.perf_counter() - t}
    # Read every clip once, untimed: otherwise the first timed run (ours, all workers) alone waits for the
    # disk (a run measured at 1.0 core's worth with two threads on an idle machine, the next at 1.55).
    results["corpus"]["bytes_read_before_timing"] = sum(len(f.read_bytes()) for f in corpus.rglob("*") if f.is_file())

    recipe, ours, ours_1 = prep_rounds(corpus, work, args.num_proc, max(1, args.prep_rounds), env,
                                       with_one=not args.skip_num_proc_1)
    results["check"] = same_clips(corpus, recipe, ours)
    # Every run of ours, with any number of workers, kept the same rows (clips, order, labels, durations).
    results["check"]["ours_same_rows_every_run"] = bool(
        ours["same_rows_every_run"] and (ours_1 is None or (ours_1["same_rows_every_run"] and ours["same_rows_as_num_proc_1"])))
    results["check"]["ok"] = results["check"]["ok"] and results["check"]["ours_same_rows_every_run"]
    for side in (recipe, ours, ours_1):
        if side:
            side.pop("clips")  # per-clip labels: checked above, too bulky to keep
    results.update(recipe=recipe, ours=ours, ours_num_proc_1=ours_1)

    model = None
    if not args.skip_model:
        print("-- training steps and evaluation (smoke model)", flush=True)
        model_json = work / "model.json"
        model_json.unlink(missing_ok=True)
        measured = run_measured(
            ["benchmarks.model_bench", "--recipe", recipe["out_dir"], "--ours", ours["out_dir"], "--result",
             str(model_json), "--steps", str(args.steps), "--batch-size", str(args.train_batch_size),
             "--eval-passes", str(args.eval_passes), "--max-length", str(args.eval_max_length)], env)
        if measured["returncode"] != 0:
            raise SystemExit(f"the model benchmark failed (exit {measured['returncode']})")
        model = json.loads(model_json.read_text())
        model["process"] = measured
    results["model"] = model

    real_eval = None
    if not args.skip_real_eval:
        print(f"-- evaluation with real checkpoints ({', '.join(args.eval_models)})", flush=True)
        real_json = work / "eval-real.json"
        real_json.unlink(missing_ok=True)
        command = ["benchmarks.eval_bench", "--ours", ours["out_dir"], "--result", str(real_json),
                   "--clips", str(args.eval_clips), "--models", *args.eval_models]
        if args.eval_real_passes:
            command += ["--passes", *args.eval_real_passes]
        if args.eval_analysis_clips is not None:
            command += ["--analysis-clips", str(args.eval_analysis_clips)]
        measured = run_measured(command, env)
        if not real_json.is_file():
            raise SystemExit(f"the real-model evaluation failed (exit {measured['returncode']})")
        real_eval = json.loads(real_json.read_text())
        real_eval["process"] = measured
        if measured["returncode"] != 0:  # eval_bench exits non-zero when a setting changed the WER
            results["real_eval"] = real_eval
            raise SystemExit(f"the real-model evaluation failed (exit {measured['returncode']}): a greedy setting "
                             f"changed the WER; figures in {real_json}")
    results["real_eval"] = real_eval

    if not args.skip_levers:
        print("-- levers, one at a time", flush=True)
        levers_json = work / "levers.json"
        measured = run_measured(
            ["benchmarks.levers", "--data", str(corpus), "--ours", ours["out_dir"], "--result", str(levers_json),
             "--sample", str(args.lever_sample)], env)
        if measured["returncode"] != 0:
            raise SystemExit(f"the lever measurements failed (exit {measured['returncode']})")
        results["levers"] = json.loads(levers_json.read_text())

    drive = None
    if not args.skip_drive:
        print("-- what a t4 run writes to Google Drive (smoke model, scaled to whisper-small)", flush=True)
        drive_json = work / "drive.json"
        drive_json.unlink(missing_ok=True)
        measured = run_measured(["benchmarks.drive", "--result", str(drive_json)], env)
        if measured["returncode"] != 0:
            raise SystemExit(f"the Drive measurement failed (exit {measured['returncode']})")
        drive = json.loads(drive_json.read_text())
        drive["process"] = measured
    results["drive"] = drive

    unit = None
    if not args.skip_budget:
        print("-- the unit's budget: every pass counted, measured with whisper-base, projected to a T4", flush=True)
        prep_json, budget_json = work / "prep-costs.json", work / "budget.json"
        prep_json.write_text(json.dumps({"ours": ours, "recipe": recipe}))
        budget_json.unlink(missing_ok=True)
        measured = run_measured(["benchmarks.budget", "--prep-results", str(prep_json), "--result", str(budget_json)],
                                env)
        if measured["returncode"] != 0:
            raise SystemExit(f"the unit budget failed (exit {measured['returncode']})")
        unit = json.loads(budget_json.read_text())
        unit["process"] = measured
    results["budget"] = unit

    results["ratios"] = ratios(recipe, ours, ours_1, model, real_eval)
    r = results["ratios"]
    if drive:
        r["drive_t4_run_gb"] = drive["whisper_small"]["scaled_from_smoke_bytes"] / 1e9
    if unit:
        r["unit_work_ratio"] = unit["ratios"]["unit_work_ratio"]
        r["unit_t4_minutes"] = unit["ours"]["t4_minutes"]
        r["unit_all_minutes"] = unit["ours"]["all_minutes"]
    results["goals"] = {
        "p1_throughput_ratio>=8": r["p1_throughput_ratio"] >= GOALS["p1_throughput_ratio"],
        "p2_disk_ratio<=0.25": r["p2_disk_ratio"] <= GOALS["p2_disk_ratio"],
        "same_clips": results["check"]["ok"],
    }
    if ours_1:
        results["goals"]["p1_worker_scaling>1"] = r["p1_worker_scaling"] > GOALS["p1_worker_scaling"]
    if r.get("eval_real"):
        results["goals"]["eval_real_wer_unchanged"] = all(
            m.get("greedy_wer_unchanged", True) for m in r["eval_real"].values())
    if model:
        results["goals"]["train_step_ratio<=1.05"] = r["train_step_ratio"] <= GOALS["train_step_ratio"]
    if drive:
        results["goals"]["drive_t4_run<=4GB"] = r["drive_t4_run_gb"] <= GOALS["drive_t4_run_gb"]
    if unit:
        results["goals"].update(unit["goals"])
    results["load_average_after"] = load_average()
    results["total_s"] = time.perf_counter() - started

    text = table(results)
    print()
    print(text)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = re.sub(r"[^0-9T]", "", results["started"][:19])
    for name in (f"{stamp}.json", "latest.json"):
        (args.results_dir / name).write_text(json.dumps(results, indent=2) + "\n")
    if unit:
        from benchmarks.budget import table as budget_table

        print()
        print(budget_table(unit))
    if args.update_readme:
        update_readme(text)
        if unit:
            update_readme(budget_table(unit), markers=("<!-- budget-table -->", "<!-- /budget-table -->"))
    print(f"\nRaw figures: {args.results_dir / f'{stamp}.json'}")
    summary = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
    summary.update(same_clips=results["check"]["ok"], n_clips=results["check"]["corpus_clips"],
                   goals_met=all(results["goals"].values()), goals=results["goals"])
    print(json.dumps(summary))
    return results


if __name__ == "__main__":
    main()
