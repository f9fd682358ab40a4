"""Pushing to the Hub through the real ``huggingface_hub`` and a local stand-in of the Hub's HTTP API
(tests/standins.py): ``python -m helpers run --push-to`` publishes the same model card as notebook 06,
with the model's files and no token in any of them; the Hub probe honours ``HF_ENDPOINT``; a Colab
secret holding the token is used, and one not granted to the notebook says how to grant it.

The stand-in answers "regular" upload mode for every file, so the weights travel inside the commit
rather than through LFS or Xet storage (a protocol of its own that the stand-in does not speak); what
reaches the Hub, file by file, is still exactly what ``upload_folder`` sends.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import string
import subprocess
import sys

import huggingface_hub
import pytest
from huggingface_hub import constants

from helpers.config import REPO_ROOT, SMOKE_MODEL_DIR, get_config
from helpers.extras import sharing
from helpers.extras.sharing import course_model_card
from helpers.notebook import session
from helpers.services import hub
from tests.standins import HubStandIn, install_colab

TOKEN = "hf_" + "".join(random.Random().choices(string.ascii_letters, k=34))
REPO_ID = f"{HubStandIn.USER}/whisper-smoke-si"
SCORES = {"wer_ortho": 101.5, "wer": 98.25, "wer_words": 99.0, "cer_words": 80.0, "n": 8}


def leaks(files: dict[str, bytes]) -> list[str]:
    """Uploaded files holding the token, whole or without its ``hf_``, in UTF-8 or UTF-16."""
    spellings = [text.encode(codec) for text in (TOKEN, TOKEN[3:]) for codec in ("utf-8", "utf-16-le")]
    return [path for path, data in files.items() if any(s in data for s in spellings)]


@pytest.fixture
def online_hub(monkeypatch):
    """huggingface_hub pointed at the stand-in (as HF_ENDPOINT does at import), online, no token around."""
    with HubStandIn(TOKEN) as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setattr("helpers.services.hub._cached_token", lambda: None)  # huggingface_hub's login cache: none
        yield server


def smoke_model(tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(SMOKE_MODEL_DIR, model_dir)
    return model_dir


def test_push_uploads_the_folder_and_its_card_and_no_token(online_hub, tmp_path):
    model_dir = smoke_model(tmp_path)
    card = course_model_card(get_config("smoke"), REPO_ID, SCORES, model_dir)
    card.save(str(model_dir / "README.md"))
    message = sharing.push_model(model_dir, REPO_ID, token=TOKEN)
    assert message == f"Pushed to {online_hub.url}/{REPO_ID}"
    [files] = online_hub.commits[REPO_ID]
    assert files == {p.name: p.read_bytes() for p in model_dir.iterdir()}  # every file, byte for byte
    assert files["README.md"].decode() == card.content and "| `wer_words`" in card.content
    assert leaks(files) == []


def test_a_refused_commit_leaves_the_model_and_says_how_to_push_later(online_hub, tmp_path):
    model_dir = smoke_model(tmp_path)
    online_hub.refuse_commits = True  # a read-only token
    message = sharing.push_model(model_dir, REPO_ID, token=TOKEN)
    assert message.startswith("Push failed (") and "403 Forbidden" in message and TOKEN not in message
    assert f"python -m helpers push --model-dir {model_dir} --repo-id {REPO_ID}" in message
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(p.name for p in SMOKE_MODEL_DIR.iterdir())


def test_the_hub_probe_honours_hf_endpoint_and_offline_mode(online_hub, monkeypatch):
    assert hub.hub_reachable()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert not hub.hub_reachable()
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "PYTHONPATH": str(REPO_ROOT)}
    probe = [sys.executable, "-c", "from helpers.services.hub import hub_reachable; print(hub_reachable())"]
    for endpoint, expected in ((online_hub.url, "True"), ("http://127.0.0.1:9", "False")):  # port 9: nobody
        said = subprocess.run(probe, env={**env, "HF_ENDPOINT": endpoint}, capture_output=True, text=True, timeout=120,
                               check=False)
        assert said.stdout.strip() == expected, said.stderr[-2000:]


def test_a_colab_secret_token_is_used_and_one_not_granted_says_how_to_grant_it(online_hub, monkeypatch, tmp_path,
                                                                               capsys):
    install_colab(monkeypatch, secrets={"HF_TOKEN": TOKEN})
    assert hub.who_am_i() == HubStandIn.USER
    session.login()
    assert "token was found" in capsys.readouterr().out

    install_colab(monkeypatch, secrets={}, not_granted=("HF_TOKEN",))
    assert hub.who_am_i() is None
    prompted = []
    monkeypatch.setattr(huggingface_hub, "notebook_login", lambda **kwargs: prompted.append(kwargs))
    session.login()
    out = capsys.readouterr().out
    assert "The Colab secret HF_TOKEN exists but this notebook may not read it" in out and "'Notebook access'" in out
    assert len(prompted) == 1  # then, in Colab, the login prompt as without a token
    message = sharing.push_model(smoke_model(tmp_path), REPO_ID)
    assert "HF_TOKEN exists but this notebook may not read it" in message and "python -m helpers push" in message
    assert online_hub.commits == {}


@pytest.fixture(scope="module")
def pushed_run(tmp_path_factory, corpus):
    """A tiny smoke run with ``--push-to``, in a real process whose HF_ENDPOINT is the stand-in."""
    out = tmp_path_factory.mktemp("push") / "out"
    args = ["--data", str(corpus), "--output-dir", str(out), "--max-steps", "2", "--save-steps", "2",
            "--eval-steps", "2", "--batch-size", "2", "--max-train-samples", "4", "--max-test-samples", "2",
            "--eval-batch-size", "2", "--generation-max-length", "4", "--num-proc", "1"]
    with HubStandIn(TOKEN) as server:
        env = {**os.environ, "COURSE_PROFILE": "smoke", "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0",
               "HF_ENDPOINT": server.url, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
        result = subprocess.run([sys.executable, "-m", "helpers", "run", *args, "--push-to", REPO_ID], cwd=REPO_ROOT,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
                                check=False)
    return out, args, result, server.commits


def test_run_push_to_publishes_the_card_notebook_06_shows(pushed_run):
    from helpers.cli import _parser, config_from_args

    out, args, result, commits = pushed_run
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Pushed to http://127.0.0.1:" in result.stdout
    [files] = commits[REPO_ID]
    assert set(files) == {p.name for p in (out / "model").iterdir() if p.is_file()} and "README.md" in files
    # Notebook 06's card for the same run: the same config, the results it wrote, the saved model.
    config = config_from_args(_parser().parse_args(["run", *args]))
    results = json.loads((out / "results.json").read_text())
    assert files["README.md"].decode() == course_model_card(config, REPO_ID, results["finetuned"], out / "model").content
    assert leaks(files) == [] and TOKEN not in result.stdout
