"""Training settings follow the model (recipe), the machine decides device and precision, Colab never
falls back to the smoke run silently, and each profile has its own workspace."""

import json

import pytest

from helpers import config as config_module
from helpers.cli import _parser, config_from_args
from helpers.config import (
    RECIPES,
    choose_profile,
    describe,
    get_config,
    is_random_init,
    workspace_dir,
)
from helpers.runtime.errors import CourseError


@pytest.fixture
def pretrained_folder(tmp_path):
    """A folder shaped like a saved pretrained checkpoint (its config.json carries no random-init mark)."""
    folder = tmp_path / "whisper-tiny.en"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "whisper", "d_model": 384}))
    return folder


def test_the_smoke_model_gets_its_own_recipe_and_a_pretrained_one_the_course_recipe(pretrained_folder):
    smoke = get_config("smoke")
    assert is_random_init(smoke.model) and smoke.recipe == "random-init"
    assert (smoke.learning_rate, smoke.lr_scheduler_type) == (5e-3, "linear")
    pretrained = get_config("smoke", model=str(pretrained_folder), max_steps=40)
    assert not is_random_init(str(pretrained_folder)) and pretrained.recipe == "course"
    assert (pretrained.learning_rate, pretrained.lr_scheduler_type) == (1e-5, "constant_with_warmup")
    assert pretrained.warmup_steps == 4  # a tenth of a 40-step run; the course's 50 of 500 is the same tenth
    # the profile still decides what the machine can take: the smoke profile's batch and run length
    assert (pretrained.train_batch_size, pretrained.max_steps) == (8, 40)
    hub = get_config("smoke", model="openai/whisper-small")
    assert hub.recipe == "course" and hub.warmup_steps == 1  # a tenth of the smoke profile's 12 steps
    assert get_config("t4").warmup_steps == RECIPES["course"]["warmup_steps"] == 50


def test_a_model_fine_tuned_from_the_smoke_model_keeps_its_recipe(tmp_path):
    from tools.smoke_model import build_smoke_model

    folder = build_smoke_model(tmp_path / "smoke-copy")
    assert get_config("smoke", model=str(folder)).recipe == "random-init"


def test_explicit_values_win_and_the_recipe_line_says_so(pretrained_folder):
    config = get_config("smoke", model=str(pretrained_folder), learning_rate=3e-5, warmup_steps=0)
    assert (config.learning_rate, config.warmup_steps, config.recipe) == (3e-5, 0, "course")
    line = describe(config)
    assert "Recipe 'course' (a pretrained checkpoint)" in line and "set by you: learning_rate" in line
    assert "fp32 on the CPU" in line  # no GPU here: the machine decides precision


def test_the_cli_applies_the_course_recipe_to_a_pretrained_model(pretrained_folder):
    args = _parser().parse_args(["run", "--profile", "smoke", "--model", str(pretrained_folder), "--max-steps", "40"])
    config = config_from_args(args)
    assert (config.recipe, config.learning_rate, config.warmup_steps) == ("course", 1e-5, 4)
    args = _parser().parse_args(["run", "--profile", "smoke", "--max-steps", "40"])
    assert config_from_args(args).learning_rate == RECIPES["random-init"]["learning_rate"]


def test_colab_without_a_gpu_keeps_the_real_run_and_the_gpu_stages_say_what_to_do(monkeypatch, tmp_path):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path))
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(config_module, "in_colab", lambda: True)
    profile, reason = choose_profile()
    assert profile == "t4" and "Colab" in reason and "no GPU" in reason
    from helpers.notebook import session

    monkeypatch.setattr(session, "in_colab", lambda: True)
    monkeypatch.setattr(session, "mount_drive", lambda: None)
    config = session.setup()  # 00-03 and 06 run on a CPU runtime
    assert config.profile == "t4"
    with pytest.raises(CourseError, match="T4 GPU") as error:
        session.setup(needs_gpu=True)  # 04 and 05 would run whisper-small on two vCPUs
    assert "COURSE_PROFILE=cpu" in str(error.value) and "openai/whisper-tiny" in str(error.value)
    # the choice it offers: a real small model on a CPU, which 04 and 05 then run without stopping
    monkeypatch.setenv("COURSE_PROFILE", "cpu")
    config = session.setup(needs_gpu=True)
    assert (config.profile, config.model, config.recipe, config.freeze_encoder) == (
        "cpu", "openai/whisper-tiny", "course", True)


def test_each_profile_has_its_own_workspace(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path))
    assert workspace_dir("smoke") == tmp_path / "smoke" and workspace_dir("t4") == tmp_path / "t4"
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    assert workspace_dir() == tmp_path / "smoke" and (tmp_path / "smoke").is_dir()
