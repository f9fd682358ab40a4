"""A Hub token in the environment never reaches a file, a log or the screen; a failed push loses nothing.

A whole smoke run, with ``--push-to``, is made in a real process with a fake token in ``HF_TOKEN`` and
``HUGGING_FACE_HUB_TOKEN`` and a Hub endpoint that refuses connections, so the push is attempted and
fails fast. Every byte of every file in the output folder (checkpoints' ``training_args.bin``,
TensorBoard event files, JSON results, the saved model) and everything printed is searched for the token.
"""

from __future__ import annotations

import json
import os
import random
import string
import subprocess
import sys

import pytest
import torch

from helpers.config import REPO_ROOT

FAKE_TOKEN = "hf_" + "".join(random.Random().choices(string.ascii_letters, k=34))
REPO_ID = "learner/whisper-smoke-si"


def encodings(text: str) -> list[bytes]:
    # UTF-8 (JSON, pickles, protobuf) and UTF-16 (what some serialisers use for str) spellings.
    return [text.encode("utf-8"), text.encode("utf-16-le")]


@pytest.fixture(scope="module")
def run_with_token(tmp_path_factory, corpus):
    out = tmp_path_factory.mktemp("tokens") / "out"
    env = {**os.environ, "COURSE_PROFILE": "smoke", "HF_TOKEN": FAKE_TOKEN, "HUGGING_FACE_HUB_TOKEN": FAKE_TOKEN,
           # Online mode, but the "Hub" refuses every connection: the push really is attempted and fails.
           "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": "1"}  # the tiny model gains nothing from more threads on a shared machine
    command = [sys.executable, "-m", "helpers", "run", "--data", str(corpus), "--output-dir", str(out),
               "--max-steps", "2", "--save-steps", "2", "--eval-steps", "2", "--logging-steps", "1",
               "--batch-size", "2", "--max-train-samples", "4", "--max-test-samples", "2", "--eval-batch-size", "2",
               "--generation-max-length", "4", "--num-proc", "1", "--push-to", REPO_ID]
    # One stream, so the order of what was printed is kept.
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, timeout=600)
    return out, result


def test_run_with_a_token_and_an_unreachable_hub_succeeds(run_with_token):
    out, result = run_with_token
    assert result.returncode == 0, result.stdout[-3000:]
    assert (out / "results.json").is_file()


def test_token_is_in_no_output_file(run_with_token):
    out, _ = run_with_token
    files = [p for p in out.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    # The places a token has leaked into in other projects are all there to be searched.
    assert {"training_args.bin", "trainer_state.json", "results.json", "report.json", "baseline.json"} <= names
    assert any(name.startswith("events.out.tfevents") for name in names)
    leaks = [str(p) for p in files for pattern in encodings(FAKE_TOKEN) + encodings(FAKE_TOKEN[3:])
             if pattern in p.read_bytes()]
    assert leaks == []


def test_the_search_would_have_found_it(run_with_token):
    """The files searched hold the training arguments in readable form, so a token there would show."""
    out, _ = run_with_token
    events = next(out.rglob("events.out.tfevents*")).read_bytes()
    assert b"learning_rate" in events and b"hub_token" in events  # the arguments, with the token field masked
    args = torch.load(next(out.rglob("training_args.bin")), weights_only=False)
    assert args.hub_token is None and args.push_to_hub is False
    assert str(out).encode() in next(out.rglob("training_args.bin")).read_bytes()


def test_token_is_never_printed(run_with_token):
    _, result = run_with_token
    assert FAKE_TOKEN not in result.stdout and FAKE_TOKEN[3:] not in result.stdout
    assert "Zero-shot:" in result.stdout  # the output searched is the whole run's


def test_failed_push_comes_after_the_local_save_and_says_how_to_push_later(run_with_token):
    out, result = run_with_token
    saved = result.stdout.index(f"Wrote {out / 'results.json'}, {out / 'predictions.json'} and the model to {out / 'model'}")
    failed = result.stdout.index("warning: Push failed (")
    assert saved < failed
    assert f"the model is safe in {out / 'model'}" in result.stdout
    assert f"python -m helpers push --model-dir {out / 'model'} --repo-id {REPO_ID}" in result.stdout
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(out / "model")  # intact after the failed push
    assert model.config.vocab_size == 51865
    results = json.loads((out / "results.json").read_text())
    assert set(results["finetuned"]) == {"wer_ortho", "wer_words", "wer", "cer_words", "n"}


def test_push_command_fails_with_exit_code_and_retry_hint(tmp_path, capfd, monkeypatch):
    from helpers.cli import main

    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    assert main(["push", "--model-dir", str(tmp_path), "--repo-id", REPO_ID]) == 2
    err = capfd.readouterr().err
    assert "holds no saved model" in err and FAKE_TOKEN not in err


def test_push_without_token_says_how_to_log_in(tmp_path, monkeypatch):
    from helpers.extras import sharing

    (tmp_path / "config.json").write_text("{}")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("helpers.services.hub._cached_token", lambda: None)  # huggingface_hub finds no login either
    message = sharing.push_model(tmp_path, REPO_ID)
    assert "No Hub token" in message and f"--model-dir {tmp_path}" in message


def test_push_error_names_the_error_type_not_its_text(tmp_path, monkeypatch):
    """Hub errors can quote the request, headers included: what is shown of one has the token masked."""
    from helpers.extras import sharing

    class LeakyApi:
        def __init__(self, token):
            self.token = token

        def create_repo(self, *args, **kwargs):
            raise PermissionError(f"403 for request with Authorization: Bearer {self.token}")

    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setattr(sharing, "HfApi", LeakyApi)
    message = sharing.push_model(tmp_path, REPO_ID, token=FAKE_TOKEN)
    assert message.startswith("Push failed (PermissionError)") and FAKE_TOKEN not in message
    with pytest.raises(sharing.PushError) as caught:
        sharing.push_model(tmp_path, REPO_ID, token=FAKE_TOKEN, raise_on_failure=True)
    assert FAKE_TOKEN not in str(caught.value)


def test_training_arguments_never_carry_a_token(monkeypatch):
    from helpers.config import get_config
    from helpers.training import training_arguments

    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    args = training_arguments(get_config("smoke"), "unused")
    assert args.hub_token is None and FAKE_TOKEN not in args.to_json_string()
    assert FAKE_TOKEN not in repr(vars(args))
