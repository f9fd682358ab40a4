"""Profiles differ only in values; the choice is explained; every value can be overridden."""

import dataclasses

import pytest

from helpers.cli import _parser, config_from_args
from helpers.config import (
    PROFILES,
    RECIPES,
    CourseConfig,
    choose_profile,
    describe,
    get_config,
    workspace_dir,
)
from helpers.runtime.errors import CourseError


def test_t4_profile_has_the_course_settings():
    config = get_config("t4")
    assert config.model == "openai/whisper-small"
    assert (config.language, config.task) == ("sinhalese", "transcribe")
    assert (config.train_batch_size, config.learning_rate, config.warmup_steps, config.max_steps) == (16, 1e-5, 50, 500)
    # saves every 100 steps (a disconnect loses at most a fifth of the run); evaluates once, at 500, as the
    # course, on 300 dev clips, so it chooses nothing
    assert (config.eval_steps, config.save_steps, config.logging_steps, config.validation_size) == (500, 100, 25, 300)
    assert config.load_best_model_at_end is False
    assert config.gradient_checkpointing and config.fp16 and config.generation_max_length == 225
    assert config.lr_scheduler_type == "constant_with_warmup"


def test_profiles_set_only_config_fields():
    fields = {f.name for f in dataclasses.fields(CourseConfig)}
    for values in PROFILES.values():
        assert set(values) <= fields


def test_environment_variable_picks_the_profile(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "t4")
    assert choose_profile() == ("t4", "COURSE_PROFILE=t4 is set")
    assert get_config().profile == "t4"
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    config = get_config()
    assert config.profile == "smoke" and "COURSE_PROFILE=smoke" in describe(config)
    monkeypatch.setenv("COURSE_PROFILE", "v100")
    with pytest.raises(CourseError, match="not a profile"):
        choose_profile()


def test_without_the_variable_a_cpu_machine_gets_smoke(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    profile, reason = choose_profile()
    assert profile == "smoke" and "no CUDA GPU" in reason


def test_overrides_from_python_and_command_line():
    config = get_config("t4", max_steps=7, model="openai/whisper-tiny", data="/x")
    assert (config.max_steps, config.model, config.data, config.learning_rate) == (7, "openai/whisper-tiny", "/x", 1e-5)
    with pytest.raises(TypeError, match="Unknown setting"):
        get_config("t4", max_step=7)
    args = _parser().parse_args(["run", "--profile", "smoke", "--max-steps", "3", "--batch-size", "2",
                                 "--language", "none", "--task", "none", "--output-dir", "o", "--no-fp16"])
    config = config_from_args(args)
    assert (config.max_steps, config.train_batch_size, config.output_dir) == (3, 2, "o")
    assert config.language is None and config.task is None and not config.fp16
    assert config.learning_rate == RECIPES["random-init"]["learning_rate"]


def test_workspace_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    assert workspace_dir() == tmp_path / "ws" / "smoke" and (tmp_path / "ws" / "smoke").is_dir()
