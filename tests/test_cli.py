"""``python -m helpers``: prepare, the whole run, its results and saved model, help and clear errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.config import REPO_ROOT, get_config
from helpers.runtime.errors import CourseError

TINY_RUN = ["--max-steps", "6", "--save-steps", "3", "--eval-steps", "3", "--logging-steps", "1", "--batch-size", "4",
            "--max-train-samples", "12", "--max-test-samples", "6", "--num-proc", "1"]


def helpers_cli(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    # One torch thread: the tiny model gains nothing from more, and CI machines are small and shared.
    env = {**os.environ, "COURSE_PROFILE": "smoke", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "helpers", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, corpus):
    out = tmp_path_factory.mktemp("run") / "out"
    result = helpers_cli("run", "--data", str(corpus), "--output-dir", str(out), *TINY_RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_help_explains_every_option():
    result = helpers_cli("run", "--help")
    assert result.returncode == 0
    for flag in ("--model", "--data", "--language", "--task", "--max-steps", "--output-dir", "--no-resume",
                 "--auto-find-batch-size", "--push-to", "--fast-generate", "--eval-num-beams"):
        assert flag in result.stdout


def test_prepare_writes_counted_report(tmp_path, corpus):
    result = helpers_cli("prepare", "--data", str(corpus), "--output-dir", str(tmp_path), "--num-proc", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    lines = (corpus / "test.tsv").read_text(encoding="utf-8").splitlines()
    assert report["test"]["total"] == report["test"]["kept"] == len(lines) - 1
    train_rows = sum(len((corpus / f"{s}.tsv").read_text(encoding="utf-8").splitlines()) - 1 for s in ("train", "dev"))
    validation = get_config("smoke").validation_size  # a slice of dev chooses the checkpoint; the rest trains
    assert report["validation"]["total"] == validation and report["train"]["total"] == train_rows - validation
    assert "Profile 'smoke'" in result.stdout and "train: kept" in result.stdout


def test_run_writes_results_checkpoints_logs_and_model(smoke_run):
    out, result = smoke_run
    results = json.loads((out / "results.json").read_text())
    for side in ("baseline", "finetuned"):
        assert set(results[side]) == {"wer_ortho", "wer_words", "wer", "cer_words", "n"}
        assert results[side]["n"] == 6
    beams = results["finetuned_beam_search"]  # beside the greedy score, named, with what each pass cost
    assert beams["num_beams"] == 2 and beams["scores"]["n"] == 6 and beams["seconds"] > 0 < beams["greedy_seconds"]
    assert (out / "report.json").is_file() and (out / "baseline.json").is_file()
    assert list((out / "runs").rglob("events.out.tfevents.*")), "TensorBoard logs go into the output folder"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    from transformers import WhisperProcessor

    assert WhisperProcessor.from_pretrained(out / "model").tokenizer.convert_tokens_to_ids("<|si|>") == 50322
    assert "Zero-shot:" in result.stdout and "Fine-tuned:" in result.stdout and "Fine-tuned, 2 beams:" in result.stdout
    assert "Decoding eagerly (greedy): on the CPU" in result.stdout  # each pass says how it decodes, and why


def test_results_match_our_own_measurement_of_the_saved_model(smoke_run, corpus):
    """What the judges do: load O/model afresh, score it on the same test clips, compare with results.json."""
    from helpers.cli import _parser, config_from_args, load_and_prepare
    from helpers.evaluation import evaluate_model
    from helpers.model import load_model_and_processor

    out, _ = smoke_run
    config = config_from_args(_parser().parse_args(["run", "--data", str(corpus), "--output-dir", str(out), *TINY_RUN]))
    model, processor = load_model_and_processor(str(out / "model"), config.language, config.task)
    prepared, _ = load_and_prepare(config, processor, out / "remeasure")
    scores = evaluate_model(model, processor, prepared["test"], config.eval_batch_size, config.generation_max_length)["scores"]
    assert scores == json.loads((out / "results.json").read_text())["finetuned"]


def test_saved_model_works_in_a_pipeline(smoke_run, corpus):
    """``pipeline()`` on O/model transcribes every test clip exactly as our evaluation of O/model does.

    Same samples (the stored 16 kHz audio), greedy decoding, same maximum length. The smoke model's
    transcripts hardly depend on the audio or the prompt (after 6 steps it repeats one token), so the
    pipeline's features and the prompt its generation config asks for are compared too.
    """
    import torch
    from transformers import pipeline

    from helpers.audio import from_int16
    from helpers.cli import _parser, config_from_args, load_and_prepare
    from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding
    from helpers.evaluation import evaluate_model
    from helpers.model import load_model_and_processor

    out, _ = smoke_run
    config = config_from_args(_parser().parse_args(["run", "--data", str(corpus), "--output-dir", str(out), *TINY_RUN]))
    model, processor = load_model_and_processor(str(out / "model"), config.language, config.task)
    test = load_and_prepare(config, processor, out / "pipeline")[0]["test"]
    ours = evaluate_model(model, processor, test, config.eval_batch_size, config.generation_max_length)
    assert ours["scores"] == json.loads((out / "results.json").read_text())["finetuned"]
    assert all(ours["predictions"])

    asr = pipeline("automatic-speech-recognition", model=str(out / "model"), device="cpu")
    prompt = [(getattr(m.generation_config, "language", None), getattr(m.generation_config, "task", None))
              for m in (asr.model, model)]
    assert prompt == [("sinhalese", "transcribe")] * 2  # what the pipeline asks for, and our evaluation
    collator = DataCollatorSpeechSeq2SeqWithPadding(processor, model.config.decoder_start_token_id)
    for row, expected in zip(test, ours["predictions"]):
        samples = from_int16(row["audio_16k"])
        features = next(iter(asr.preprocess({"raw": samples, "sampling_rate": 16000})))["input_features"]
        torch.testing.assert_close(features, collator.features([row]), atol=1e-6, rtol=0)
        text = asr({"raw": samples, "sampling_rate": 16000},
                   generate_kwargs={"max_length": config.generation_max_length})["text"]
        assert text.strip() == expected


def test_english_only_checkpoint_runs_without_language(tmp_path, corpus):
    from tools.smoke_model import build_smoke_model

    model = build_smoke_model(tmp_path / "tiny.en", english_only=True)
    out = tmp_path / "out"
    result = helpers_cli("run", "--model", str(model), "--language", "none", "--task", "none", "--data", str(corpus),
                         "--output-dir", str(out), "--max-steps", "2", "--save-steps", "2", "--eval-steps", "2",
                         "--max-train-samples", "4", "--max-test-samples", "2", "--num-proc", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "results.json").read_text())["finetuned"]["n"] == 2
    tokenizer_config = json.loads((out / "model" / "tokenizer_config.json").read_text())
    assert tokenizer_config.get("language") is None


@pytest.mark.parametrize("args, expected", [
    (["prepare", "--data", "/no/such/folder"], "/no/such/folder"),
    (["run", "--language", "klingon", "--output-dir", "{tmp}"], "Unknown Whisper language 'klingon'"),
    (["run", "--model", "/no/such/model", "--output-dir", "{tmp}"], "Could not load the Whisper model"),
])
def test_run_stoppers_give_one_clear_sentence(args, expected, tmp_path):
    result = helpers_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:")


def test_rerunning_a_finished_run_does_not_train_again(smoke_run, corpus):
    out, _ = smoke_run
    before = json.loads((out / "results.json").read_text())
    result = helpers_cli("run", "--data", str(corpus), "--output-dir", str(out), *TINY_RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training already finished at step 6" in result.stdout
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    after = json.loads((out / "results.json").read_text())
    for record in (before, after):  # the passes' seconds are measured again; everything else must not change
        del record["finetuned_beam_search"]["seconds"], record["finetuned_beam_search"]["greedy_seconds"]
    assert after == before


def test_every_courseconfig_setting_is_a_flag_with_its_type_and_help():
    """The flags come from CourseConfig's fields: a new setting is on the command line without a word here."""
    import dataclasses

    from helpers.cli import HELP, NOT_FLAGS, _parser, config_flags, config_from_args
    from helpers.config import CourseConfig

    settings = {f.name for f in dataclasses.fields(CourseConfig)} - set(NOT_FLAGS)
    assert {name for name, _, _ in config_flags()} == settings and set(HELP) == settings  # each with its own help
    parse = _parser().parse_args
    for command in ("prepare", "run"):
        config = config_from_args(parse([command, "--profile", "smoke", "--batch-size", "3", "--train-batch-size", "5",
                                         "--learning-rate", "2e-4", "--no-fp16", "--freeze-encoder", "--stop-repeats",
                                         "0", "--zero-shot-samples", "7", "--lora-target-modules", "q_proj,k_proj"]))
        assert (config.train_batch_size, config.learning_rate, config.fp16, config.freeze_encoder) == (5, 2e-4, False,
                                                                                                        True)
        assert (config.stop_repeats, config.zero_shot_samples, config.lora_target_modules) == (0, 7,
                                                                                                ("q_proj", "k_proj"))
    # 'none' clears a setting that may be empty, whatever its type; a flag not given keeps the profile's value
    config = config_from_args(parse(["run", "--profile", "t4", "--language", "none", "--max-test-samples", "none",
                                     "--dropout", "None"]))
    assert (config.language, config.max_test_samples, config.dropout) == (None, None, None)
    assert config_from_args(parse(["run", "--profile", "cpu"])).max_test_samples == 100
    with pytest.raises(SystemExit):  # a setting that cannot be empty takes no 'none'
        parse(["run", "--max-steps", "none"])
    with pytest.raises(CourseError, match="needs --peft lora"):
        config_from_args(parse(["run", "--profile", "smoke", "--load-in-8bit"]))
