"""Run stamps: which run made each workspace artifact, so that no stage mixes the files of two runs.

Each Colab notebook is its own runtime and chooses its settings anew; a learner whose 02 ran on a CPU
runtime with other settings must not have 04 fine-tune whisper-small on the wrong data without a word.
So every artifact gets a stamp (profile, model, data source, language, task, training method, tokenizer
fingerprint, helpers version) in a ``.stamps`` folder beside it, where neither ``from_pretrained`` nor a Hub
push sees it, and a stage that reads an artifact compares the stamp with its own run: one sentence says what differs and how to
start over.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

from .config import CourseConfig, CourseError
from .files import write_json

STAMP_DIR = ".stamps"
# A different helpers version is worth a note, not a stop: the files' format has not changed within a release.
_NOTED_ONLY = ("helpers",)


class RunMismatch(CourseError):
    """An artifact was made by a run with other settings than the current one."""


def helpers_version() -> str:
    """The installed version of this project (``whisper-course-helpers``)."""
    try:
        return metadata.version("whisper-course-helpers")
    except metadata.PackageNotFoundError:
        return "unknown"


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of the tokenizer's vocabulary and label prefix (language and task tokens)."""
    vocabulary = sorted(tokenizer.get_vocab().items())
    text = json.dumps([list(tokenizer.prefix_tokens), vocabulary], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def training_method(config: CourseConfig) -> str:
    """Full fine-tuning, or LoRA with its shape: adapter checkpoints cannot resume a full run, nor another rank's."""
    if not config.peft:
        return "full"
    return (f"lora r={config.lora_rank} alpha={config.lora_alpha} on {','.join(config.lora_target_modules)}"
            + (" 8-bit" if config.load_in_8bit else ""))


def run_stamp(config: CourseConfig, processor=None) -> dict:
    """The stamp of the current run; with ``processor``, its tokenizer's fingerprint too."""
    stamp = {"profile": config.profile, "model": str(config.model), "data": str(config.data),
             "language": config.language, "task": config.task, "method": training_method(config),
             "helpers": helpers_version()}
    if processor is not None:
        stamp["tokenizer"] = tokenizer_fingerprint(processor.tokenizer)
    return stamp


def stamp_path(artifact: str | Path) -> Path:
    """Where the stamp of ``artifact`` (a file or folder) lives."""
    artifact = Path(artifact)
    return artifact.parent / STAMP_DIR / f"{artifact.name}.stamp.json"


def write_stamp(artifact: str | Path, stamp: dict) -> None:
    """Record that ``artifact`` was made by the run ``stamp`` describes."""
    write_json(stamp_path(artifact), stamp)


def read_stamp(artifact: str | Path) -> dict | None:
    """The stamp of ``artifact``, or ``None`` when it has none."""
    try:
        return json.loads(stamp_path(artifact).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def differences(made: dict, now: dict) -> list[str]:
    """The fields both stamps have and that differ, as "field 'there' (now 'here')" phrases."""
    return [f"{key} {made[key]!r} (this run: {now[key]!r})"
            for key in made if key in now and key not in _NOTED_ONLY and made[key] != now[key]]


def check_stamp(artifact: str | Path, stamp: dict, start_over: str) -> None:
    """Stop with :class:`RunMismatch` when ``artifact`` was made by a run other than ``stamp``'s.

    ``start_over`` completes the sentence: what to run (or delete) to remake the artifact for this run. An
    artifact without a stamp (made before stamps existed) passes with a note.
    """
    artifact = Path(artifact)
    made = read_stamp(artifact)
    if made is None:
        print(f"Note: {artifact.name} has no run stamp, so it cannot be checked against this run's settings.")
        return
    changed = differences(made, stamp)
    if changed:
        raise RunMismatch(f"{artifact.name} in {artifact.parent} was made by another run: "
                          f"{'; '.join(changed)}. {start_over}")
    if made.get("helpers") != stamp.get("helpers"):
        print(f"Note: {artifact.name} was made with helpers {made.get('helpers')}; this is {stamp.get('helpers')}.")
