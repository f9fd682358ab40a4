"""The workshop's extras: the pre-flight check on real folders, tokens and torch; the data choice for a
learner without a Mozilla Data Collective key; the baseline scored before training and reused by stage 5."""

from __future__ import annotations

import shutil

import pytest

from helpers.config import BUNDLED_CORPUS, REPO_ROOT, get_config
from helpers.evaluation import evaluation_key, reuse_or_evaluate
from helpers.notebook import workshop
from helpers.notebook.session import setup
from helpers.runtime.workspace import artifact_path, read_json, set_run
from tests.standins import MdcStandIn, common_voice_archive


@pytest.fixture
def learner(tmp_path, monkeypatch):
    """A learner's machine: its own workspace, no token anywhere, no MDC key, offline."""
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no cached login
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "MDC_API_KEY", "COURSE_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env file of the project's for mdc_api_key to load
    return tmp_path


def test_space_checks_measure_the_real_folder_and_say_what_to_do(learner):
    free = shutil.disk_usage(learner).free / 1e9
    enough = workshop.check_disk(learner, need_gb=free / 2)
    assert enough.ok and f"{free:.1f} GB free in {learner}" in enough.says
    short = workshop.check_disk(learner / "not-made-yet", need_gb=free * 10)  # measured on the disk it will be on
    assert not short.ok and "Disconnect and delete runtime" in short.says
    config = get_config("smoke")
    assert workshop.check_workspace_space(config).ok  # the smoke run needs half a gigabyte
    drive = workshop.check_workspace_space(config, need_gb=free * 10)
    assert not drive.ok and drive.name == "Workspace space" and "empty its bin" in drive.says
    assert drive.line().startswith("TODO  Workspace space: only ")


def test_gpu_check_asks_torch(learner):
    import torch

    check = workshop.check_gpu()
    assert check.ok == torch.cuda.is_available()
    if check.ok:
        assert torch.cuda.get_device_name(0) in check.says
    else:
        assert "Runtime > Change runtime type > T4 GPU" in check.says


def test_mdc_check_follows_the_data_source_and_the_key(learner, monkeypatch):
    local = workshop.check_mdc(get_config("smoke"))
    assert local.ok and "not needed" in local.says
    mdc = get_config("t4", data="mdc:some-dataset-id")
    missing = workshop.check_mdc(mdc)
    assert not missing.ok and "MDC_API_KEY" in missing.says and 'DATA = "bundled"' in missing.says


def test_mdc_check_asks_the_api_for_the_key_and_the_terms(learner, monkeypatch, corpus):
    """The pre-flight tries the key on the newest release with a real request: accepted, a wrong key, terms not
    accepted; it never downloads the archive."""
    with MdcStandIn(common_voice_archive(corpus)) as server:
        monkeypatch.setenv("MDC_API_URL", f"{server.url}/api")
        monkeypatch.setenv("MDC_API_KEY", MdcStandIn.KEY)
        config = get_config("t4", data="common-voice:dv")
        allowed = workshop.check_mdc(config)
        assert allowed.ok and "Dhivehi (version 23.0)" in allowed.says and "accepted the terms" in allowed.says
        assert MdcStandIn.KEY not in allowed.line()
        server.terms_accepted = False
        refused = workshop.check_mdc(config)
        assert not refused.ok and "terms have not been accepted" in refused.says
        assert "tick its terms" in refused.says and "organization membership" in refused.says  # the API's own words
        by_id = workshop.check_mdc(get_config("t4", data=f"mdc:{MdcStandIn.RELEASE_ID}"))
        assert not by_id.ok and "terms have not been accepted" in by_id.says
        monkeypatch.setenv("MDC_API_KEY", "a-key-it-does-not-know")
        wrong = workshop.check_mdc(config)
        assert not wrong.ok and "rejected the API key" in wrong.says and "a-key-it-does-not-know" not in wrong.line()
        unknown = workshop.check_mdc(get_config("t4", data="mdc:no-such-release"))
        assert not unknown.ok and "has no dataset 'no-such-release'" in unknown.says
        asked = [(method, path.split("?")[0]) for method, path, _ in server.requests]
    assert ("POST", f"/api/datasets/{MdcStandIn.RELEASE_ID}/download") in asked
    assert not any(path.startswith("/files/") for _, path in asked)  # the archive itself is never fetched
    monkeypatch.setenv("MDC_API_URL", "http://127.0.0.1:9/api")  # nothing listens there
    monkeypatch.setenv("MDC_API_KEY", MdcStandIn.KEY)
    offline = workshop.check_mdc(get_config("t4", data=f"mdc:{MdcStandIn.RELEASE_ID}"))
    assert not offline.ok and "could not be reached" in offline.says


def test_hub_token_check_finds_the_token_without_showing_it(learner, monkeypatch):
    assert not workshop.check_hub_token().ok
    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 34)
    check = workshop.check_hub_token()
    assert check.ok and "x" * 34 not in check.line()


def test_preflight_prints_one_line_per_check(learner, capsys):
    checks = workshop.preflight(get_config("smoke"))
    lines = capsys.readouterr().out.splitlines()
    assert [c.name for c in checks] == ["GPU", "Workspace space", "Free disk", "MDC access", "Hub token"]
    assert lines[:5] == [c.line() for c in checks]
    todo = sum(not c.ok for c in checks)
    assert todo >= 1  # no Hub token here
    assert lines[5] == f"{todo} to do before the workshop (see TODO above)."


def test_a_learner_without_an_mdc_key_gets_the_bundled_clips(learner, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")  # setup() keeps the profile for the kernel: undone after the test
    assert get_config("t4", data="bundled").data == str(BUNDLED_CORPUS)
    assert get_config("t4", data="bundled").model == "openai/whisper-small"  # the real model, other data
    config = setup(drive=False, data=None)  # the workshop's DATA = None: the profile's own
    assert config.data == get_config("smoke").data


def test_the_baseline_scored_before_training_is_the_one_stage_5_reuses(learner, prepared, processor):
    config = get_config("smoke", eval_batch_size=4, generation_max_length=16)
    set_run(config)
    test = prepared[1]["test"].select(range(4))
    first = workshop.zero_shot_baseline(config, test, processor)
    assert set(first["scores"]) >= {"wer_ortho", "wer", "wer_words", "cer_words"} and len(first["predictions"]) == 4
    assert read_json(artifact_path("baseline"))["scores"] == first["scores"]
    # Stage 5's own call, with its own key: the saved score comes back instead of a second evaluation.
    again, reused = reuse_or_evaluate(artifact_path("baseline"), evaluation_key(config, config.model, test, processor),
                                      lambda: pytest.fail("stage 5 evaluated the zero-shot model again"))
    assert reused and again["predictions"] == first["predictions"]


def test_the_agenda_is_the_one_in_the_teachers_guide():
    guide = (REPO_ROOT / "docs" / "workshop.md").read_text(encoding="utf-8")
    assert workshop.agenda_table() in guide
    starts = [row[0] for row in workshop.AGENDA]
    assert starts == sorted(starts, key=lambda s: tuple(map(int, s.split(":")))) and starts[-1] == "3:00"
