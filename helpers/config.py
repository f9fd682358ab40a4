"""Profiles: the course's real run (``t4``) and the offline ``smoke`` run, which differ only in values.

``COURSE_PROFILE=smoke|t4`` picks one; with none set, a CUDA machine that can reach the Hub gets ``t4``
and anything else gets ``smoke``. Every field can be overridden from Python (``get_config(max_steps=10)``)
or from the command line (``python -m helpers run --max-steps 10``).
"""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

PROFILE_ENV = "COURSE_PROFILE"
WORKSPACE_ENV = "COURSE_WORKSPACE"
REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_CORPUS = REPO_ROOT / "data" / "cv-mini" / "si"
CACHE_DIR = Path(os.environ.get("COURSE_CACHE", Path.home() / ".cache" / "whisper-course"))
SMOKE_MODEL_DIR = CACHE_DIR / "whisper-smoke"


class CourseError(Exception):
    """A problem the learner can fix (a missing folder, an unknown language): one clear sentence, no traceback."""


@dataclass
class CourseConfig:
    """Everything a run needs to know; the two profiles are two sets of these values."""

    profile: str
    model: str
    data: str
    language: str | None = "sinhalese"
    task: str | None = "transcribe"
    output_dir: str = "whisper-small-dv"
    max_steps: int = 500
    train_batch_size: int = 16
    eval_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-5
    warmup_steps: int = 50
    lr_scheduler_type: str = "constant_with_warmup"
    eval_steps: int = 500
    save_steps: int = 500
    logging_steps: int = 25
    save_total_limit: int = 2
    gradient_checkpointing: bool = True
    fp16: bool = True
    generation_max_length: int = 225
    max_train_samples: int | None = None
    max_test_samples: int | None = None
    num_proc: int = field(default_factory=lambda: max(1, min(8, os.cpu_count() or 1)))
    dataloader_num_workers: int = 2
    seed: int = 42
    reason: str = ""

    def replace(self, **overrides) -> "CourseConfig":
        """Return a copy with ``overrides`` applied; ``None`` values leave a field unchanged."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"Unknown setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


PROFILES: dict[str, dict] = {
    # The Hugging Face Audio course's settings for whisper-small on a free Colab T4.
    "t4": dict(
        model="openai/whisper-small",
        data=os.environ.get("COURSE_DATA", "mdc:common-voice-dv"),
        output_dir="whisper-small-dv",
    ),
    # Same code path on 2 CPU cores in minutes: tiny random Whisper, real vocabulary, bundled clips.
    "smoke": dict(
        model=str(SMOKE_MODEL_DIR),
        data=str(BUNDLED_CORPUS),
        output_dir="whisper-smoke",
        max_steps=60,
        train_batch_size=8,
        eval_batch_size=16,
        learning_rate=5e-3,  # a tiny random model needs a large step to learn anything in a few dozen
        warmup_steps=5,
        lr_scheduler_type="linear",  # decaying to 0 steadies a tiny model trained at a large learning rate
        eval_steps=30,
        save_steps=30,
        logging_steps=5,
        gradient_checkpointing=False,
        fp16=False,
        generation_max_length=64,
        dataloader_num_workers=0,
    ),
}


def _hub_reachable(timeout: float = 1.5) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def choose_profile() -> tuple[str, str]:
    """Return ``(profile, reason)`` from ``COURSE_PROFILE`` or, failing that, from the machine."""
    asked = os.environ.get(PROFILE_ENV, "").strip().lower()
    if asked:
        if asked not in PROFILES:
            raise CourseError(f"{PROFILE_ENV}={asked!r} is not a profile; use one of: {', '.join(PROFILES)}.")
        return asked, f"{PROFILE_ENV}={asked} is set"
    import torch

    if not torch.cuda.is_available():
        return "smoke", f"no CUDA GPU found and {PROFILE_ENV} is not set"
    if not _hub_reachable():
        return "smoke", f"a GPU is present but the Hugging Face Hub cannot be reached and {PROFILE_ENV} is not set"
    return "t4", f"a CUDA GPU ({torch.cuda.get_device_name(0)}) and the Hub are available"


def get_config(profile: str | None = None, **overrides) -> CourseConfig:
    """The configuration of ``profile`` (or the chosen one) with ``overrides`` applied."""
    if profile is None:
        profile, reason = choose_profile()
    else:
        if profile not in PROFILES:
            raise CourseError(f"Unknown profile {profile!r}; use one of: {', '.join(PROFILES)}.")
        reason = "asked for explicitly"
    return CourseConfig(profile=profile, reason=reason, **PROFILES[profile]).replace(**overrides)


def describe(config: CourseConfig) -> str:
    """One line saying which profile is in use and why, for notebooks and the CLI."""
    return f"Profile '{config.profile}' ({config.reason}): model {config.model}, data {config.data}"


def workspace_dir() -> Path:
    """Where stages hand artifacts to each other: ``COURSE_WORKSPACE``, Drive in Colab, else ./workspace."""
    if os.environ.get(WORKSPACE_ENV):
        path = Path(os.environ[WORKSPACE_ENV])
    elif Path("/content/drive/MyDrive").is_dir():
        path = Path("/content/drive/MyDrive/whisper-course")
    else:
        path = Path.cwd() / "workspace"
    path.mkdir(parents=True, exist_ok=True)
    return path
