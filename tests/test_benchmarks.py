"""The benchmark command end to end on a tiny corpus, and its parts; no timing is asserted anywhere."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
RATIO_KEYS = {
    "p1_throughput_ratio", "p1_throughput_ratio_num_proc_1", "p2_disk_ratio", "peak_pss_ratio", "peak_rss_ratio",
    "train_step_ratio", "train_data_ratio", "eval_sorted_speedup", "eval_reference_token_slots_ratio",
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``python -m benchmarks.run`` on 8 clips with the smallest settings; returns (last line JSON, raw figures)."""
    tmp = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "benchmarks.run", "--clips", "8", "--steps", "1", "--train-batch-size", "2",
               "--eval-max-length", "8", "--eval-passes", "1", "--lever-sample", "4", "--skip-num-proc-1",
               "--work-dir", str(tmp / "work"), "--results-dir", str(tmp / "results")]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return summary, json.loads((tmp / "results" / "latest.json").read_text()), done.stdout


def test_last_line_has_every_ratio_and_the_clip_check(tiny_run):
    summary, _, stdout = tiny_run
    assert RATIO_KEYS <= set(summary)
    assert summary["n_clips"] == 8 and summary["same_clips"] is True
    assert set(summary["goals"]) == {"p1_throughput_ratio>=3", "p2_disk_ratio<=0.25", "same_clips",
                                     "train_step_ratio<=1.05"}
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


def test_corpus_generator_is_reproducible_and_made_the_bundled_corpus(tmp_path):
    """Same seed, same files byte for byte; and the committed corpus is what the script writes."""
    from helpers.config import BUNDLED_CORPUS
    from tools.make_corpus import make_corpus

    first = make_corpus(tmp_path / "a", "si", 3, 5, 2.0, 6.0)
    second = make_corpus(tmp_path / "b", "si", 3, 5, 2.0, 6.0)
    clips = sorted(p.name for p in (first / "clips").iterdir())
    assert len(clips) == 3 and clips == sorted(p.name for p in (second / "clips").iterdir())
    match, mismatch, errors = filecmp.cmpfiles(first / "clips", second / "clips", clips, shallow=False)
    assert match == clips, (mismatch, errors)
    for split in ("train", "dev", "test", "validated"):
        assert (first / f"{split}.tsv").read_bytes() == (second / f"{split}.tsv").read_bytes()
    bundled = make_corpus(tmp_path / "bundled")  # the defaults made data/cv-mini/si
    for split in ("train", "dev", "test", "validated"):
        assert (bundled / f"{split}.tsv").read_bytes() == (BUNDLED_CORPUS / f"{split}.tsv").read_bytes()


def test_readme_table_goes_between_its_markers(tmp_path):
    from benchmarks.run import update_readme

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- benchmark-table -->\nold\n<!-- /benchmark-table -->\nafter\n", encoding="utf-8")
    update_readme("| new |", readme)
    assert readme.read_text(encoding="utf-8") == "intro\n<!-- benchmark-table -->\n| new |\n<!-- /benchmark-table -->\nafter\n"
