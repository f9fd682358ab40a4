"""The workshop's extras: the teacher's agenda, the pre-flight check, and the baseline before training.

``workshop.ipynb`` runs the seven stages in one runtime for a class. A teacher plans with :data:`AGENDA`
(rendered by :func:`agenda_table` into the notebook and into ``docs/workshop.md``), each learner runs
:func:`preflight` the day before (one line per check: ok, or what to do), and stage 4 scores the zero-shot
model first (:func:`zero_shot_baseline`) so that the baseline is on screen while the model trains; stage 5
then reuses it from ``baseline.json``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from helpers.config import CourseConfig, is_random_init, workspace_dir
from helpers.data import DataSourceError
from helpers.evaluation import (
    describe_zero_shot,
    evaluate_once,
    evaluate_zero_shot,
    evaluation_key,
)
from helpers.model import load_model_and_processor
from helpers.runtime.secrets import in_colab
from helpers.services.data_mirror import MIRROR_SOURCE, fetch_from_hub
from helpers.services.hub import find_token
from helpers.services.mdc import check_access, find_common_voice, mdc_api_key

# (start, what, what runs and for how long on a free T4 with SHORT_RUN = True, what to teach meanwhile).
# The compute times are the unit's budget for SHORT_RUN's values (benchmarks/budget.py: the course's 45 T4 minutes
# scaled by work measured side by side; set-up, download and push are estimates), not yet timed on a T4.
AGENDA: tuple[tuple[str, str, str, str], ...] = (
    ("0:00", "Welcome; set-up cell (pre-flight was the day before)", "install, about 1 min",
     "what Whisper is; the course's goal: Dhivehi from over 100 % WER to about 14 %"),
    ("0:10", "0 · Hub login", "1 min", "tokens and Colab secrets; never paste a token into a cell"),
    ("0:15", "1 · Load Common Voice", "download and copy, about 3 min",
     "why Common Voice moved to the Mozilla Data Collective; listen to clips; train + dev against test"),
    ("0:35", "2 · Preprocess", "about 1 min", "16 kHz, the log-mel, the 30 s window and 448 tokens; why \"sinhalese\""),
    ("0:50", "3 · Collate", "1 min", "-100 padding and the start token, on one real batch"),
    ("1:00", "4 · Train: zero-shot score, then training", "zero-shot about 1 min, training about 12 min",
     "the training arguments one by one; while it trains: the talking points in stage 4"),
    ("1:30", "Break", "training may still be finishing", ""),
    ("1:45", "5 · Evaluate", "1-3 min (the zero-shot score is reused)",
     "four WERs, named; why BasicTextNormalizer flatters Thaana; the worst clips"),
    ("2:15", "6 · Share", "push about 1 GB, about 2 min", "the model card, pipeline(...), long recordings, the demo"),
    ("2:35", "Try it yourself; questions", "", "the solutions are under each exercise"),
    ("3:00", "End", "", ""),
)

# What the workspace (Drive) and the runtime's own disk need free for the real run: on Drive the prepared data,
# two fp16 checkpoint copies (about 0.5 GB each) and the model (about 1 GB); on the runtime's disk up to three
# full whisper-small checkpoints (about 3 GB each), the Common Voice archive and its unpacked clips.
REAL_RUN_GB = {"workspace": 10.0, "disk": 15.0}
SMOKE_RUN_GB = {"workspace": 0.5, "disk": 0.5}


def agenda_table() -> str:
    """:data:`AGENDA` as a Markdown table."""
    rows = ["| start | stage | runs (free T4, estimate) | teach meanwhile |", "|---|---|---|---|"]
    rows += [f"| {start} | {what} | {runs or '–'} | {teach or '–'} |" for start, what, runs, teach in AGENDA]
    return "\n".join(rows)


@dataclass
class Check:
    """One pre-flight check: its name, whether it passed, and what it found or what to do."""

    name: str
    ok: bool
    says: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'TODO'}  {self.name}: {self.says}"


def _need_gb(config: CourseConfig | None, where: str) -> float:
    smoke = config is not None and is_random_init(config.model)
    return (SMOKE_RUN_GB if smoke else REAL_RUN_GB)[where]


def _free_gb(path: Path) -> float:
    while not path.exists():  # a folder made later: measure the disk it will be on
        path = path.parent
    return shutil.disk_usage(path).free / 1e9


def _space(name: str, path: Path, need_gb: float, what_to_do: str) -> Check:
    free = _free_gb(path)
    if free >= need_gb:
        return Check(name, True, f"{free:.1f} GB free in {path} (the run needs about {need_gb:g} GB)")
    return Check(name, False, f"only {free:.1f} GB free in {path}, the run needs about {need_gb:g} GB: {what_to_do}")


def check_gpu() -> Check:
    """A CUDA GPU, named with its memory; else where to switch one on."""
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        return Check("GPU", True, f"{properties.name}, {properties.total_memory / 2**30:.0f} GiB")
    return Check("GPU", False, "none in this runtime: Runtime > Change runtime type > T4 GPU (if Colab gives none, "
                               "the GPU quota is used up: try another account or later)")


def check_workspace_space(config: CourseConfig, need_gb: float | None = None) -> Check:
    """Free space where the workspace lives (Google Drive in Colab) for checkpoints and prepared data."""
    need = need_gb if need_gb is not None else _need_gb(config, "workspace")
    root = workspace_dir(config.profile)
    name = "Drive space" if str(root).startswith("/content/drive") else "Workspace space"
    return _space(name, root, need, "free space on Drive and empty its bin (drive.google.com > Bin)")


def check_disk(path: Path | None = None, need_gb: float | None = None, config: CourseConfig | None = None) -> Check:
    """Free space on the runtime's own disk, where the Common Voice archive is downloaded and unpacked."""
    need = need_gb if need_gb is not None else _need_gb(config, "disk")
    where = path or (Path("/content") if in_colab() else Path.home())
    return _space("Free disk", where, need, "Runtime > Disconnect and delete runtime gives a fresh disk")


def check_mdc(config: CourseConfig) -> Check:
    """Whether this run's data needs the Mozilla Data Collective, and if so whether the key may download it.

    The release is found in the catalogue (``common-voice:<locale>``) and the key is tried on it with a real
    request (:func:`helpers.services.mdc.check_access`): a rejected key and terms not yet accepted each
    come back as what to do, the day before rather than during the class.
    """
    source = config.data
    if source.startswith(MIRROR_SOURCE):  # the teacher's mirror on the Hub: can this learner's token read it?
        try:
            archive = fetch_from_hub(source[len(MIRROR_SOURCE):].strip(), download=False)
        except DataSourceError as error:
            return Check("MDC access", False, str(error))
        return Check("MDC access", True, f"not needed: the class's mirror {source} holds {archive}, readable with "
                                         "your token")
    if not source.startswith(("mdc:", "common-voice:")):
        return Check("MDC access", True, f"not needed: the data is {source}")
    if not mdc_api_key():
        return Check("MDC access", False, "no MDC_API_KEY: add it as a Colab secret (stage 1 lists the steps), or "
                                          'set DATA = "bundled" above the set-up cell to use the bundled clips')
    try:
        if source.startswith("common-voice:"):
            release = find_common_voice(source.removeprefix("common-voice:"))
            dataset_id, name = release.id, f"{release.name} (version {release.version})"
        else:
            dataset_id = name = source.removeprefix("mdc:").strip()
        allowed = check_access(dataset_id)
    except DataSourceError as error:
        return Check("MDC access", False, str(error))
    return Check("MDC access", True, f"{name}: {allowed}")


def check_hub_token() -> Check:
    """A Hugging Face token for pushing in stage 6 (optional: without one, stage 6 exports instead)."""
    if find_token():
        return Check("Hub token", True, "found (not shown); stage 6 can push")
    return Check("Hub token", False, "none: stage 6 will write an export folder instead of pushing; to push, add a "
                                     "Colab secret HF_TOKEN with a write token (https://huggingface.co/settings/tokens)")


def preflight(config: CourseConfig) -> list[Check]:
    """Run every check the day before a workshop and print one line each: ok, or what to do."""
    checks = [check_gpu(), check_workspace_space(config), check_disk(config=config), check_mdc(config),
              check_hub_token()]
    for check in checks:
        print(check.line())
    todo = sum(not check.ok for check in checks)
    print("All set for the workshop." if not todo else f"{todo} to do before the workshop (see TODO above).")
    return checks


def zero_shot_baseline(config: CourseConfig, test, processor) -> dict:
    """The zero-shot model's scores on ``test``, saved in ``baseline.json`` (or reused from it), stamped.

    The same key, file and stamp as stage 5's, so stage 5 reuses this score instead of computing it again.
    """
    def score() -> dict:
        model, model_processor = load_model_and_processor(config.model, config.language, config.task)
        return evaluate_zero_shot(model, model_processor, test, config)

    result, reused = evaluate_once("baseline", evaluation_key(config, config.model, test, processor), score, processor)
    print("Zero-shot score", "reused from baseline.json" if reused else "computed and saved to baseline.json")
    print(describe_zero_shot(result))
    return result
