"""The unit's budget: every pass the seven notebooks make on the ``t4`` profile, against the course's unit.

    .venv/bin/python -m benchmarks.budget                   # measures with whisper-base (about 5 min on 2 cores)
    .venv/bin/python -m benchmarks.run                      # the same, as one step of the whole benchmark

**Counted** (:func:`unit_passes`, from the profile's own :class:`~helpers.config.CourseConfig`, so the budget
follows the profile; :func:`course_passes`, from the course's pages): per notebook, its set-up cell, the
download, decoding and preprocessing, the training steps, each evaluation pass with its clips, its
sequential decoder steps and generated tokens, and beam passes. The course's unit is its fine-tuning page
(set-up, download, ``map(prepare_dataset)``, 500 steps, the evaluation at step 500 on the test split, the
push) and its evaluation chapter's zero-shot pass (the course's baseline: ``pipeline`` over the test split,
``max_new_tokens=128``, batch 32), which gave the course's 167 % / 126 %.

**Decode lengths.** A Dhivehi reference's token count comes from sentences of 3-12 real Dhivehi words under
the real multilingual tokenizer (``benchmarks.gpu_eval.thaana_sentences``: 40-200 tokens, about two a letter).
A fine-tuned row stops at its reference's length. A zero-shot row loops with the share measured here with
real weights (whisper-base, zero-shot, on the bundled Sinhala test clips): a looping row runs to the limit
(the course's 128 new tokens) or, with ``config.stop_repeats``, to where :class:`helpers.evaluation.RepeatedTail`
stopped the loopers here, at most the reference-based cap.

**Measured** (:func:`measure_costs`, one process, both sides alternating, real pretrained whisper-base on the
bundled Sinhala clips, on this CPU): a training step with SDPA (ours) and with eager attention (the course's
2023 code; transformers chose eager for Whisper then), gradient checkpointing on as on a T4; the encoder's
seconds a clip; a decoder step's seconds at each batch size a pass uses. Preprocessing's CPU time a clip,
ours and the course's recipe, comes from ``benchmarks.run``'s measurement in the same run (or its last
results).

**Projected to a T4.** Basis: the course's published 45 minutes of a free T4 for its fine-tuning page's 500
steps and evaluation at step 500. Every GPU pass gets ``45 min x its work / the work of those two``, both
measured above: the course's own time, divided among passes by ratios measured side by side. CPU passes
(preprocessing) take the CPU time measured here (a Colab runtime has two cores, as this machine), and the
three passes nothing here can measure (a set-up cell, the download, the push) the fixed estimates below,
the same for both sides. "T4 minutes" counts the notebooks that hold a GPU runtime (ours: 04 and 05; the
course's: both of its notebooks, which run everything on the T4); "all seven" counts the unit's wall time as
if every notebook ran on a T4 runtime (the workshop does).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Common Voice 13 Dhivehi as the course loads it: train + validation (4,904 clips) to train, test (2,212) to score.
COURSE_TRAIN_CLIPS, COURSE_TEST_CLIPS = 4904, 2212
COURSE_T4_MINUTES = 45.0  # the course's published time on a free T4: 500 steps and the evaluation at step 500
COURSE_ZERO_SHOT = dict(batch=32, max_new_tokens=128)  # the evaluation chapter's pipeline(...) call
COURSE_EVAL = dict(batch=16, max_length=225)  # the fine-tuning page's Seq2SeqTrainingArguments
# What nothing here can measure, the same on both sides (estimates, minutes): one set-up cell (pip installs
# what the runtime lacks), downloading the whole release, and pushing whisper-small's 0.97 GB to the Hub.
SETUP_MINUTES, DOWNLOAD_MINUTES, PUSH_MINUTES = 1.0, 3.0, 2.0
LAUNCH_BOUND_STEP_S = 0.045  # an eager decoder step on a GPU, batch 16, launch-bound (H100 and H200 alike)
NOTEBOOKS = ("00_hub_login", "01_load", "02_preprocess", "03_collate", "04_train", "05_evaluate", "06_share")
GPU_NOTEBOOKS = ("04_train", "05_evaluate")  # the only ones that ask Colab for a GPU runtime


@dataclass
class Pass:
    """One pass a notebook makes, counted: what a learner waits for."""

    notebook: str
    kind: str  # setup | download | preprocess | train | evaluate | beam | push
    what: str
    gpu_runtime: bool
    clips: int = 0
    steps: int = 0  # training steps
    batch: int = 0
    decoder_steps: int = 0  # sequential decoder steps: each batch runs to its longest row
    tokens: int = 0  # tokens generated, every row's
    beams: int = 1
    attention: str = ""  # training: "sdpa" (ours) or "eager" (the course's)
    share: float = 1.0  # download: the share of the release


def dhivehi_lengths(n: int, tokenizer, seed: int = 0) -> list[int]:
    """Text tokens of ``n`` Dhivehi references (sentences of 3-12 real words, the real tokenizer)."""
    from benchmarks.gpu_eval import thaana_sentences

    return [len(tokenizer(s, add_special_tokens=False).input_ids) for s in thaana_sentences(n, None, seed)]


def _steps_and_tokens(rows: list[int], batch: int, ordered: bool, seed: int = 0) -> tuple[int, int]:
    """Sequential decoder steps (each batch's longest row, plus its end of text) and tokens of a pass."""
    order = sorted(range(len(rows)), key=rows.__getitem__) if ordered else \
        np.random.default_rng(seed).permutation(len(rows)).tolist()  # dataset order: the lengths unsorted
    steps = sum(max(rows[i] for i in order[s:s + batch]) + 1 for s in range(0, len(order), batch))
    return steps, sum(rows) + len(rows)


def zero_shot_rows(references: list[int], loop_share: float, limit: int, stopped_at: float | None, seed: int = 0) -> list[int]:
    """Each zero-shot row's tokens: its reference's length, or, for the looping share of rows, the limit
    (or where a repeated tail stopped the loopers, ``stopped_at``, never past the limit)."""
    rng = np.random.default_rng(seed + 1)
    loops = rng.random(len(references)) < loop_share
    loop_length = limit if stopped_at is None else min(limit, int(round(stopped_at)))
    return [loop_length if looping else min(limit, length) for looping, length in zip(loops, references)]


def _eval_pass(notebook: str, what: str, rows: list[int], batch: int, ordered: bool, beams: int = 1,
               kind: str = "evaluate", gpu: bool = True) -> Pass:
    steps, tokens = _steps_and_tokens(rows, batch, ordered)
    return Pass(notebook, kind, what, gpu, clips=len(rows), batch=batch, decoder_steps=steps, tokens=tokens * beams,
                beams=beams)


def unit_passes(config, references: list[int], loop_share: float, stopped_at: float | None,
                splits: tuple[int, int] = (COURSE_TRAIN_CLIPS, COURSE_TEST_CLIPS)) -> list[Pass]:
    """Every pass the seven notebooks make with ``config`` (the ``t4`` profile's, or any other).

    ``references``: the test split's reference lengths in text tokens (as many as its clips);
    ``loop_share`` and ``stopped_at``: how zero-shot rows loop and where a repeated tail stops them.
    """
    from helpers.evaluation import zero_shot_indices

    train_clips, test_clips = splits
    test_clips = min(test_clips, config.max_test_samples or test_clips)
    references = references[:test_clips]
    passes = [Pass(name, "setup", "set-up cell", name in GPU_NOTEBOOKS) for name in NOTEBOOKS]
    passes.append(Pass("01_load", "download", "download the release, copy its clips", False,
                       clips=train_clips + test_clips))
    passes.append(Pass("02_preprocess", "preprocess", "decode, resample, FLAC, tokenise (ours)", False,
                       clips=train_clips + test_clips))
    passes.append(Pass("04_train", "train", f"{config.max_steps} training steps", True, steps=config.max_steps,
                       batch=config.train_batch_size * config.gradient_accumulation_steps, attention="sdpa"))
    # The Trainer evaluates in dataset order; each evaluation scores the validation slice with the model so far.
    validation = np.random.default_rng(config.seed).choice(references, size=config.validation_size).tolist()
    for step in range(config.eval_steps, config.max_steps + 1, config.eval_steps):
        rows = [min(length, config.generation_max_length) for length in validation]
        passes.append(_eval_pass("04_train", f"evaluation at step {step}: {config.validation_size} validation clips",
                                 rows, config.eval_batch_size, ordered=False))
    sample = [references[i] for i in zero_shot_indices(len(references), config.zero_shot_samples, config.seed)]
    cap = min(config.generation_max_length, max(sample) + 1 + config.zero_shot_token_margin)
    rows = zero_shot_rows(sample, loop_share, cap, stopped_at if config.stop_repeats > 1 else None)
    passes.append(_eval_pass("05_evaluate", f"zero-shot: {len(sample)} test clips, at most {cap} tokens"
                             + (", repeated tails stopped" if config.stop_repeats > 1 else ""),
                             rows, config.eval_batch_size, ordered=True))
    rows = [min(length, config.generation_max_length) for length in references]
    passes.append(_eval_pass("05_evaluate", f"fine-tuned, greedy: all {len(rows)} test clips", rows,
                             config.eval_batch_size, ordered=True))
    if config.eval_num_beams > 1:
        passes.append(_eval_pass("05_evaluate", f"fine-tuned, {config.eval_num_beams} beams", rows,
                                 config.eval_batch_size, ordered=True, beams=config.eval_num_beams, kind="beam"))
    passes.append(Pass("06_share", "push", "push the model to the Hub", False))
    return passes


def course_passes(references: list[int], loop_share: float,
                  splits: tuple[int, int] = (COURSE_TRAIN_CLIPS, COURSE_TEST_CLIPS)) -> list[Pass]:
    """The course's unit, counted the same way: its fine-tuning page and its evaluation chapter's zero-shot pass."""
    train_clips, test_clips = splits
    page, chapter = "course: fine-tuning", "course: evaluation chapter"
    passes = [Pass(page, "setup", "set-up cell (pip install)", True),
              Pass(page, "download", "load_dataset: train, validation, test", True, clips=train_clips + test_clips),
              Pass(page, "preprocess", "map(prepare_dataset), num_proc=1", True, clips=train_clips + test_clips),
              Pass(page, "train", "500 training steps", True, steps=500, batch=16, attention="eager")]
    rows = [min(length, COURSE_EVAL["max_length"]) for length in references[:test_clips]]
    passes.append(_eval_pass(page, f"evaluation at step 500: all {len(rows)} test clips", rows, COURSE_EVAL["batch"],
                             ordered=False))
    passes.append(Pass(page, "push", "push_to_hub", True))
    passes += [Pass(chapter, "setup", "set-up cell (pip install)", True),
               Pass(chapter, "download", "load_dataset: test", True, clips=test_clips, share=test_clips / (train_clips + test_clips)),
               Pass(chapter, "preprocess", "pipeline: decode, log-mel", True, clips=test_clips)]
    rows = zero_shot_rows(references[:test_clips], loop_share, COURSE_ZERO_SHOT["max_new_tokens"], None)
    passes.append(_eval_pass(chapter, f"zero-shot: all {len(rows)} test clips, max_new_tokens=128", rows,
                             COURSE_ZERO_SHOT["batch"], ordered=False))
    return passes


def _decoder_step_s(costs: dict, rows: int) -> float:
    """Seconds of one decoder step at ``rows`` rows: measured at two batch sizes, linear between and beyond."""
    measured = {int(k): v for k, v in costs["decoder_step_s"].items()}
    (b1, t1), (b2, t2) = sorted(measured.items())[:2]
    return max(t1, t1 + (t2 - t1) * (rows - b1) / (b2 - b1))


def work_seconds(p: Pass, costs: dict) -> float:
    """A GPU pass's work in seconds of this CPU with whisper-base (0 for the passes it does not measure)."""
    if p.kind == "train":
        return p.steps * p.batch / costs["train_batch"] * costs["train_step_s"][p.attention]
    if p.kind in ("evaluate", "beam"):
        return p.clips * costs["encoder_s_per_clip"] + p.decoder_steps * _decoder_step_s(costs, p.batch * p.beams)
    return 0.0


def minutes(p: Pass, costs: dict, per_work_second: float, prep: dict) -> float:
    """What ``p`` costs a learner, in minutes (see the module docstring for the basis of each kind)."""
    if p.kind == "setup":
        return SETUP_MINUTES
    if p.kind == "download":
        return DOWNLOAD_MINUTES * p.share
    if p.kind == "push":
        return PUSH_MINUTES
    if p.kind == "preprocess":
        side = prep["recipe"] if p.notebook.startswith("course") else prep["ours"]
        return p.clips * side["cpu_ms_per_clip"] / 1000 / max(side["cores_used"], 1e-9) / 60
    return work_seconds(p, costs) * per_work_second / 60


def project(ours: list[Pass], course: list[Pass], costs: dict, prep: dict) -> dict:
    """Minutes per pass, per notebook and in all, both sides; the ratios; the basis."""
    basis_work = sum(work_seconds(p, costs) for p in course
                     if p.notebook == "course: fine-tuning" and p.kind in ("train", "evaluate"))
    per_work_second = COURSE_T4_MINUTES * 60 / basis_work
    out = {}
    for side, passes in (("ours", ours), ("course", course)):
        rows = [{**asdict(p), "work_s": round(work_seconds(p, costs), 1),
                 "minutes": round(minutes(p, costs, per_work_second, prep), 2)} for p in passes]
        notebooks: dict[str, float] = {}
        for row in rows:
            notebooks[row["notebook"]] = round(notebooks.get(row["notebook"], 0) + row["minutes"], 2)
        out[side] = {"passes": rows, "notebooks": notebooks,
                     "all_minutes": round(sum(r["minutes"] for r in rows), 1),
                     "t4_minutes": round(sum(r["minutes"] for r in rows if r["gpu_runtime"]), 1),
                     "gpu_work_s": round(sum(r["work_s"] for r in rows), 1)}
    ours_side, course_side = out["ours"], out["course"]
    out["ratios"] = {
        "unit_work_ratio": round(ours_side["all_minutes"] / course_side["all_minutes"], 3),
        "gpu_work_ratio": round(ours_side["gpu_work_s"] / course_side["gpu_work_s"], 3),
        "t4_minutes_ratio": round(ours_side["t4_minutes"] / course_side["t4_minutes"], 3),
        "train_step_sdpa_vs_eager": round(costs["train_step_s"]["sdpa"] / costs["train_step_s"]["eager"], 3),
    }
    out["basis"] = (f"the course's published {COURSE_T4_MINUTES:.0f} minutes of a free T4 for 500 steps and the "
                    "evaluation at step 500, divided among GPU passes by their work measured side by side (whisper-base, "
                    "real weights, bundled clips, this CPU); preprocessing: CPU time measured here (two cores, as "
                    f"Colab's); set-up {SETUP_MINUTES:g}, download {DOWNLOAD_MINUTES:g} and push {PUSH_MINUTES:g} "
                    "minutes: estimates, the same for both sides")
    out["t4_seconds_per_work_second"] = round(per_work_second, 5)
    out["launch_bound"] = launch_bound(ours, course, costs)
    return out


def launch_bound(ours: list[Pass], course: list[Pass], costs: dict) -> dict:
    """A second basis, for the decoding share: on a GPU, eager decoding is launch-bound, about 45 ms a decoder
    step whatever the rows (measured on an H100, docs/evaluation-speed.md). Every decoder step costs that; the
    course's 45 minutes less its evaluation's steps are its training, which ours scales by the SDPA/eager ratio
    measured here. Set-up cells as above; T4 runtimes only."""
    page = "course: fine-tuning"
    eval_steps = sum(p.decoder_steps for p in course if p.notebook == page and p.kind == "evaluate")
    train = next(p for p in course if p.notebook == page and p.kind == "train")
    course_train_minutes = COURSE_T4_MINUTES - eval_steps * LAUNCH_BOUND_STEP_S / 60
    per_train_work = course_train_minutes / work_seconds(train, costs)

    def gpu_minutes(p: Pass) -> float:
        if p.kind == "train":
            return work_seconds(p, costs) * per_train_work
        if p.kind in ("evaluate", "beam"):
            return p.decoder_steps * LAUNCH_BOUND_STEP_S / 60
        return SETUP_MINUTES if p.kind == "setup" else 0.0

    notebooks: dict[str, float] = {}
    for p in ours:
        if p.gpu_runtime:
            notebooks[p.notebook] = round(notebooks.get(p.notebook, 0) + gpu_minutes(p), 1)
    return {"step_s": LAUNCH_BOUND_STEP_S, "course_train_minutes": round(course_train_minutes, 1),
            "course_eval_minutes": round(COURSE_T4_MINUTES - course_train_minutes, 1), "notebooks": notebooks,
            "t4_minutes": round(sum(notebooks.values()), 1)}


def _say(message: str) -> None:
    print(f"   budget: {message}", flush=True)


def measure_costs(model_dir: Path, corpus: Path, train_batch: int = 2, steps: int = 3, eval_batches=(8, 16),
                  loop_limit: int = 128) -> dict:
    """Unit costs on this CPU with real pretrained weights: training steps both ways, encoder, decoder steps,
    and how the zero-shot model loops (share of rows at the limit; where :class:`RepeatedTail` stops them)."""
    import torch
    from transformers import WhisperForConditionalGeneration

    from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding
    from helpers.data import load_common_voice
    from helpers.evaluation import RepeatedTail, transcribe_ids
    from helpers.model import load_model_and_processor
    from helpers.preparation import prepare_splits

    started = time.perf_counter()
    model, processor = load_model_and_processor(str(model_dir), "sinhalese", "transcribe")
    prepared, _ = prepare_splits(load_common_voice(str(corpus), validation_size=2), processor, num_proc=1)
    collator = DataCollatorSpeechSeq2SeqWithPadding(processor, model.config.decoder_start_token_id)
    train = prepared["train"]
    batch = collator([train[i] for i in range(train_batch)])
    batch.pop("attention_mask", None)

    models = {}
    for attention in ("sdpa", "eager"):
        torch.manual_seed(0)
        m = WhisperForConditionalGeneration.from_pretrained(str(model_dir), attn_implementation=attention)
        m.config.use_cache = False
        m.gradient_checkpointing_enable()  # as on a T4 (the course's gradient_checkpointing=True)
        m.train()
        models[attention] = (m, torch.optim.AdamW(m.parameters(), lr=1e-5))

    def step(attention: str) -> float:
        m, optimizer = models[attention]
        t = time.perf_counter()
        m(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    _say(f"training steps, batch {train_batch}, SDPA and eager alternating")
    for attention in models:  # warm-up: allocations, first-call overheads
        step(attention)
    times: dict[str, list[float]] = {"sdpa": [], "eager": []}
    for i in range(steps):
        for attention in (("sdpa", "eager") if i % 2 == 0 else ("eager", "sdpa")):
            times[attention].append(step(attention))
    models.clear()  # both training copies freed before the inference timings

    _say(f"training step medians {({k: round(statistics.median(v), 2) for k, v in times.items()})}; encoder, decoder")
    model.eval()
    test = prepared["test"]
    features = collator.features([test[i % len(test)] for i in range(8)])
    with torch.inference_mode():
        model.model.encoder(features)
        t = time.perf_counter()
        model.model.encoder(features)
        encoder_s = (time.perf_counter() - t) / 8

    decoder = {str(rows): decoder_step_seconds(model, collator, test, rows) for rows in eval_batches}

    # Zero-shot with real weights: which rows loop to the limit, and where a repeated tail stops them.
    _say(f"decoder step seconds {decoder}; zero-shot loops")
    free = transcribe_ids(model, processor, test, batch_size=8, max_length=loop_limit)
    stopped = transcribe_ids(model, processor, test, batch_size=8, max_length=loop_limit, stop_repeats=4)
    looping = [i for i, ids in enumerate(free) if len(ids) >= loop_limit]
    caught = [len(stopped[i]) for i in looping if len(stopped[i]) < loop_limit]
    return {
        "model": str(model_dir), "corpus": str(corpus), "torch_threads": torch.get_num_threads(),
        "train_batch": train_batch,
        "train_step_s": {k: statistics.median(v) for k, v in times.items()},
        "train_step_runs": times,
        "encoder_s_per_clip": encoder_s,
        "decoder_step_s": decoder,
        "zero_shot": {"clips": len(test), "limit": loop_limit, "looping": len(looping),
                      "loop_share": len(looping) / len(test), "stopped_by_repeated_tail": len(caught),
                      "stopped_at_mean": statistics.mean(caught) if caught else None,
                      "tokens_free": sum(map(len, free)), "tokens_stopped": sum(map(len, stopped)),
                      "repeated_tail": vars(RepeatedTail(4))},
        "seconds": time.perf_counter() - started,
    }


def remeasure_decoder(model_dir: Path, corpus: Path, eval_batches=(8, 16)) -> dict:
    """:func:`decoder_step_seconds` at ``eval_batches`` rows, on its own (``--costs ... --remeasure-decoder``)."""
    from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding
    from helpers.data import load_common_voice
    from helpers.model import load_model_and_processor
    from helpers.preparation import prepare_splits

    model, processor = load_model_and_processor(str(model_dir), "sinhalese", "transcribe")
    model.eval()
    test = prepare_splits(load_common_voice(str(corpus), validation_size=2), processor, num_proc=1)[0]["test"]
    collator = DataCollatorSpeechSeq2SeqWithPadding(processor, model.config.decoder_start_token_id)
    return {str(rows): decoder_step_seconds(model, collator, test, rows) for rows in eval_batches}


def decoder_step_seconds(model, collator, test, rows: int, steps: int = 24) -> float:
    """Median seconds of one greedy decoder step with a KV cache at ``rows`` rows, the encoder run beforehand
    (a step of ``generate`` without its bookkeeping; the encoder is timed on its own)."""
    import torch
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    features = collator.features([test[i % len(test)] for i in range(rows)])
    times = []
    with torch.inference_mode():
        encoded = model.model.encoder(features).last_hidden_state
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        ids = torch.tensor([[50258, 50259, 50359, 50363]] * rows)  # a decoder prompt's shape
        for _ in range(steps + 1):
            t = time.perf_counter()
            hidden = model.model.decoder(input_ids=ids, encoder_hidden_states=encoded, past_key_values=cache,
                                         use_cache=True).last_hidden_state
            ids = model.proj_out(hidden[:, -1:]).argmax(-1)
            times.append(time.perf_counter() - t)
    return statistics.median(times[1:])  # the first call also reads the prompt and fills the cross-attention cache


def preprocessing_costs(results_file: Path | None = None) -> dict:
    """Preprocessing's CPU ms a clip and the cores it used, ours and the course's recipe: benchmarks.run's."""
    raw = json.loads((results_file or RESULTS_DIR / "latest.json").read_text())
    return {side: {"cpu_ms_per_clip": raw[side]["cpu_ms_per_clip"], "cores_used": raw[side]["cores_used"]}
            for side in ("ours", "recipe")} | {"source": str(results_file or "benchmarks/results/latest.json")}


def budget(costs: dict, prep: dict, profile: str = "t4", seed: int = 0, **overrides) -> dict:
    """Count both units from ``profile``'s configuration, project them with ``costs``, return every figure."""
    from helpers.config import PRETRAINED_DIR, get_config
    from helpers.model import load_processor

    config = get_config(profile, **overrides)
    tokenizer = load_processor(str(PRETRAINED_DIR / "whisper-base"), "sinhalese", "transcribe").tokenizer
    references = dhivehi_lengths(COURSE_TEST_CLIPS, tokenizer, seed)
    loops = costs["zero_shot"]
    ours = unit_passes(config, references, loops["loop_share"], loops["stopped_at_mean"])
    course = course_passes(references, loops["loop_share"])
    out = project(ours, course, costs, prep)
    out.update(profile=profile, config={k: v for k, v in config.as_dict().items() if k in (
        "max_steps", "eval_steps", "save_steps", "validation_size", "eval_batch_size", "train_batch_size",
        "generation_max_length", "zero_shot_samples", "zero_shot_token_margin", "stop_repeats", "eval_num_beams",
        "load_best_model_at_end")},
        references={"clips": len(references), "mean_tokens": round(statistics.mean(references), 1),
                    "max_tokens": max(references)},
        costs=costs, preprocessing=prep)
    out["goals"] = {"unit_t4_minutes<=45": out["ours"]["t4_minutes"] <= COURSE_T4_MINUTES,
                    "unit_work_ratio<=1": out["ratios"]["unit_work_ratio"] <= 1.0}
    return out


def table(result: dict) -> str:
    """The budget as Markdown: per notebook, ours against the course's, then the totals and the basis."""
    rows = ["| notebook | passes | T4 projection (min) |", "|---|---|---|"]
    for side in ("ours", "course"):
        for notebook, total in result[side]["notebooks"].items():
            passes = [p for p in result[side]["passes"] if p["notebook"] == notebook]
            what = "; ".join(f"{p['what']} ({p['minutes']:.1f})" for p in passes)
            rows.append(f"| {notebook}{' (GPU runtime)' if any(p['gpu_runtime'] for p in passes) else ''} | {what} | "
                        f"**{total:.1f}** |")
    o, c, r = result["ours"], result["course"], result["ratios"]
    rows += [f"| ours: T4 minutes (GPU runtimes, set-up included) / all seven notebooks | | **{o['t4_minutes']:.1f}** / "
             f"{o['all_minutes']:.1f} |",
             f"| course: T4 minutes / its whole unit | | {c['t4_minutes']:.1f} / {c['all_minutes']:.1f} |",
             f"| ours / course: whole unit's minutes; GPU work measured; T4 minutes | | **{r['unit_work_ratio']:.2f}x**; "
             f"{r['gpu_work_ratio']:.2f}x; {r['t4_minutes_ratio']:.2f}x |",
             f"| training step, SDPA / eager (whisper-base, batch {result['costs']['train_batch']}, checkpointing) | | "
             f"{r['train_step_sdpa_vs_eager']:.2f}x |"]
    lb = result.get("launch_bound")
    if lb:
        rows.append(f"| ours, T4 minutes if every decoder step costs {1000 * lb['step_s']:.0f} ms (eager decoding, "
                    f"launch-bound; the course's 45 min then hold {lb['course_eval_minutes']:.0f} min of evaluation) | "
                    f"{', '.join(f'{k} {v:.1f}' for k, v in lb['notebooks'].items())} | {lb['t4_minutes']:.1f} |")
    return "\n".join(rows) + f"\n\nBasis: {result['basis']}."


def main(argv: list[str] | None = None) -> dict:
    import os

    # Before torch starts its OpenMP threads: spinning ones made single ops up to 100x slower on a shared machine.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from helpers.config import PRETRAINED_DIR, SINHALA_CORPUS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=PRETRAINED_DIR / "whisper-base")
    parser.add_argument("--corpus", type=Path, default=SINHALA_CORPUS)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps each way (default 3)")
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--costs", type=Path, help="reuse measured costs from an earlier result instead of measuring")
    parser.add_argument("--remeasure-decoder", action="store_true", help="with --costs: time the decoder steps again")
    parser.add_argument("--prep-results", type=Path, help="benchmarks.run results with preprocessing's CPU time "
                        "(default benchmarks/results/latest.json)")
    parser.add_argument("--result", type=Path, help="where to write the JSON (default results/budget-latest.json)")
    args = parser.parse_args(argv)
    if args.costs:
        costs = json.loads(args.costs.read_text())["costs"]
        if args.remeasure_decoder:
            costs["decoder_step_s"] = remeasure_decoder(args.model, args.corpus)
    else:
        costs = measure_costs(args.model, args.corpus, args.train_batch, args.steps)
    result = budget(costs, preprocessing_costs(args.prep_results))
    print(table(result))
    path = args.result or RESULTS_DIR / "budget-latest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"t4_minutes": result["ours"]["t4_minutes"], "all_minutes": result["ours"]["all_minutes"],
                      **result["ratios"], "goals": result["goals"]}))
    return result


if __name__ == "__main__":
    main()
