"""The workspace: where the seven notebooks hand their results to each other, and how each is checked.

Each profile has its own folder (:func:`profile_dir`; in Colab on Google Drive, so a
disconnect loses nothing). Artifacts are named in :data:`ARTIFACTS`; :func:`load_from_workspace` (or
:func:`saved_path`) finds one or says which notebook makes it. Every artifact is stamped with the run that
made it: saving stamps it, loading it checks the stamp against the run set up in this notebook
(:func:`set_run`, called by ``helpers.notebook.session.setup``), so a stage never reads another run's files
without a word. The savers and loaders do this themselves, so the notebooks' cells show no bookkeeping.

Three layers, in this order below: JSON files written atomically (a killed session never leaves half of
one); run stamps (what shaped each artifact: profile, data, language as Whisper's token, task, tokenizer
fingerprint, and for a model and its checkpoints also the base model and the training method, in a
``.stamps`` folder beside it, where neither ``from_pretrained`` nor a Hub push looks); and the workspace's
artifacts, their savers and loaders.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

from helpers.runtime.errors import CourseError, DiskError, explain_disk_error
from helpers.runtime.lock import RunLock
from helpers.runtime.mirror import CheckpointMirror
from helpers.runtime.secrets import in_colab

if TYPE_CHECKING:  # only for the annotations: a run's stamp reads a CourseConfig's fields, by name
    from helpers.config import CourseConfig

WORKSPACE_ENV = "COURSE_WORKSPACE"


def workspace_root() -> Path:
    """Where the workspace's profile folders live: ``COURSE_WORKSPACE``, ``MyDrive/whisper-course`` in Colab
    with Drive mounted, else ./workspace."""
    if os.environ.get(WORKSPACE_ENV):
        return Path(os.environ[WORKSPACE_ENV])
    if Path("/content/drive/MyDrive").is_dir():
        return Path("/content/drive/MyDrive/whisper-course")
    return Path.cwd() / "workspace"


def profile_dir(profile: str) -> Path:
    """The workspace folder of ``profile`` (made when missing): each profile its own, so a smoke run never
    feeds a real one."""
    path = workspace_root() / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: str | Path, data) -> None:
    """Write ``data`` as JSON atomically: a kill mid-write leaves the old file (or none), never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(temporary, path)  # atomic on POSIX and Windows when both are on the same file system


def read_json(path: str | Path):
    """The JSON in ``path``, or ``None`` when it is missing or unreadable (then it is simply recomputed)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# Run stamps. Each Colab notebook is its own runtime and chooses its settings anew; a learner whose 02 ran on
# a CPU runtime with other settings must not have 04 fine-tune whisper-small on the wrong data without a word.
# So every artifact gets a stamp of what shaped it in a ``.stamps`` folder beside it, where neither
# ``from_pretrained`` nor a Hub push sees it, and a stage that reads an artifact compares the stamp with its own
# run: one sentence says what differs and how to start over. Only what shaped the artifact is compared, so a
# change that cannot have changed it (LoRA or another learning rate in 04, for the data 02 prepared) stops nothing.
STAMP_DIR = ".stamps"
# A different helpers version is worth a note, not a stop: the files' format has not changed within a release.
_NOTED_ONLY = ("helpers",)
# What shapes each artifact, as fields of :func:`run_stamp`. The clips 01 loads depend on their source; once
# tokenised (02), on the tokenizer, the language and the task too; a score on the model it scores. None of them
# depends on how a model is then trained.
SOURCE_FIELDS = ("profile", "data", "helpers")
LABEL_FIELDS = (*SOURCE_FIELDS, "language", "task", "tokenizer")
MODEL_FIELDS = (*LABEL_FIELDS, "model")
_SHAPED_BY = {"loaded": SOURCE_FIELDS, "prepared": LABEL_FIELDS, "report": LABEL_FIELDS}
# A model, its adapter and its checkpoints record the whole run, how it trained included (the method): resuming
# checkpoints needs all of it to match (see ``CheckpointMirror.claim``), while the stages after 04 score and
# share whatever model 04 saved last, and compare only the fields in MODEL_FIELDS.
WHOLE_RUN = ("training", "model", "adapter")


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


def language_token(language: str | None) -> str | None:
    """Whisper's token for ``language``, as its tokenizer maps names and codes: "sinhala", "Sinhalese" and
    "si" are all ``<|si|>``. A name Whisper does not know stays as it is (the model's loader refuses it)."""
    if not language:
        return None
    code = TO_LANGUAGE_CODE.get(language.lower(), language.lower())
    return f"<|{code}|>" if code in LANGUAGES else language


def run_stamp(config: CourseConfig, processor=None) -> dict:
    """The stamp of the current run; with ``processor``, its tokenizer's fingerprint too."""
    stamp = {"profile": config.profile, "model": str(config.model), "data": str(config.data),
             "language": language_token(config.language), "task": config.task, "method": training_method(config),
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


class UnreadableStamp(CourseError):
    """A stamp that is there but cannot be read (cut short, as a half-synced Drive file is): never "no stamp"."""


def read_stamp(artifact: str | Path) -> dict | None:
    """The stamp of ``artifact``, or ``None`` when it has none; :class:`UnreadableStamp` when it is damaged."""
    path = stamp_path(artifact)
    if not path.exists():
        return None
    stamp = read_json(path)
    if not isinstance(stamp, dict):  # fail closed: passing it as "no stamp" would let another run's files through
        artifact = Path(artifact)
        raise UnreadableStamp(f"The run stamp of {artifact.name} ({path}) cannot be read (cut short or damaged, as a "
                              f"file Drive had not finished syncing is), so {artifact} cannot be checked against "
                              f"this run: delete {artifact} and its stamp, then run the stage that made it again.")
    return stamp


def checkpoint_stamp(stamp: dict, config: CourseConfig) -> dict:
    """``stamp`` plus what only checkpoints depend on, the seed and the learning rate: a resume with others is
    noticed (two runs into one folder, or a changed set-up cell) instead of continuing another run's optimizer."""
    return {**stamp, "seed": config.seed, "learning_rate": config.learning_rate}


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
    try:
        made = read_stamp(artifact)
    except UnreadableStamp as error:
        raise UnreadableStamp(f"{error} {start_over}") from None
    if made is None:
        print(f"Note: {artifact.name} has no run stamp, so it cannot be checked against this run's settings.")
        return
    changed = differences(made, stamp)
    if changed:
        raise RunMismatch(f"{artifact.name} in {artifact.parent} was made by another run: "
                          f"{'; '.join(changed)}. {start_over}")
    if made.get("helpers") != stamp.get("helpers"):
        print(f"Note: {artifact.name} was made with helpers {made.get('helpers')}; this is {stamp.get('helpers')}.")


# artifact -> (path inside the workspace, notebook that makes it, what it is)
ARTIFACTS: dict[str, tuple[str, str, str]] = {
    "loaded": ("loaded", "01_load.ipynb", "the loaded Common Voice splits"),
    "prepared": ("prepared", "02_preprocess.ipynb", "the preprocessed train/test splits"),
    "report": ("report.json", "02_preprocess.ipynb", "the preprocessing report"),
    "training": ("training", "04_train.ipynb", "the training checkpoints"),
    "model": ("model", "04_train.ipynb", "the fine-tuned model"),
    "adapter": ("adapter", "04_train.ipynb", "the LoRA adapter (a LoRA run only)"),
    "baseline": ("baseline.json", "05_evaluate.ipynb", "the zero-shot evaluation"),
    "results": ("results.json", "05_evaluate.ipynb", "the evaluation results"),
    "predictions": ("predictions.json", "05_evaluate.ipynb", "the test-split transcripts"),
    "export": ("export", "06_share.ipynb", "the exported model"),
    "ct2": ("ct2", "06_share.ipynb", "the CTranslate2 (faster-whisper) export"),
}

_run: CourseConfig | None = None


def set_run(config: CourseConfig | None) -> None:
    """Make ``config`` the run whose stamp artifacts are saved with and checked against."""
    global _run
    _run = config


def _folder() -> Path:
    """The workspace folder of the run set up in this notebook."""
    if _run is None:
        raise CourseError("No run is set up in this kernel: run the notebook's set-up cell (setup()) first.")
    return profile_dir(_run.profile)


@contextlib.contextmanager
def no_progress():
    """Hide ``datasets`` progress bars for bookkeeping steps (casting, saving) that take no time."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


RUNTIME_ENV = "COURSE_RUNTIME_DIR"


def runtime_dir(name: str) -> Path:
    """A folder on this runtime's own disk for what Drive need not keep (full training checkpoints).

    Under ``COURSE_RUNTIME_DIR`` when set, ``/content/runtime`` in Colab (fast, free, gone after a
    disconnect), else in a ``runtime`` folder of the workspace; one folder per workspace and profile.
    """
    workspace = _folder()
    # The workspace's last two folders (root and profile): the workshop's short run gets its own folder too.
    if os.environ.get(RUNTIME_ENV):
        return Path(os.environ[RUNTIME_ENV]) / workspace.parent.name / workspace.name / name
    if in_colab():
        return Path("/content/runtime") / workspace.parent.name / workspace.name / name
    return workspace / "runtime" / name


def artifact_path(name: str) -> Path:
    """Where artifact ``name`` (a key of :data:`ARTIFACTS`) lives in the workspace, made or not."""
    if name not in ARTIFACTS:
        raise KeyError(f"unknown artifact {name!r}; known: {', '.join(ARTIFACTS)}")
    return _folder() / ARTIFACTS[name][0]


def _start_over(name: str) -> str:
    maker = ARTIFACTS[name][1] if name in ARTIFACTS else "the stage that makes it"
    return (f"Give this notebook the same settings as that run, or run {maker} again to remake it for this "
            f"run (or delete {_folder()} to start the whole course over).")


def artifact_stamp(name: str, processor=None) -> dict:
    """What of this run shapes artifact ``name``: its stamp when this run makes it (see :data:`WHOLE_RUN`)."""
    stamp = run_stamp(_run, processor)
    if name == "training":
        return checkpoint_stamp(stamp, _run)
    if name in WHOLE_RUN:
        return stamp
    fields = _SHAPED_BY.get(name, MODEL_FIELDS)
    return {key: value for key, value in stamp.items() if key in fields}


def check(name: str, processor=None) -> None:
    """Stop when artifact ``name`` exists but was shaped by settings other than this notebook's.

    Only the fields that shape it are compared; a model is read whatever method trained it.
    """
    path = artifact_path(name)
    if _run is not None and path.exists():
        fields = _SHAPED_BY.get(name, MODEL_FIELDS)
        now = {key: value for key, value in run_stamp(_run, processor).items() if key in fields}
        check_stamp(path, now, _start_over(name))


def saved_path(name: str, made_by: str | None = None, processor=None) -> Path:
    """The path of artifact ``name``, checked against this run's stamp, or a ``CourseError`` naming its maker.

    ``name`` is a key of :data:`ARTIFACTS` or a path relative to the workspace (then pass ``made_by``).
    ``processor`` adds the tokenizer's fingerprint to the comparison.
    """
    if name in ARTIFACTS:
        relative, maker, what = ARTIFACTS[name]
        made_by = made_by or maker
    else:
        relative, what = name, name
    path = _folder() / relative
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        hint = f"run {made_by} first (it saves {what} there)" if made_by else "run the previous stage first"
        raise CourseError(f"{what.capitalize()} ({relative}) is not in the workspace "
                          f"{_folder()}: {hint}.")
    if name in ARTIFACTS:
        check(name, processor)
    return path


def stamp(name: str, processor=None) -> Path:
    """Stamp artifact ``name`` as made by this run (after writing it); returns its path."""
    path = artifact_path(name)
    if _run is not None:
        write_stamp(path, artifact_stamp(name, processor))
    return path


def save_to_workspace(data, name: str, processor=None) -> Path:
    """Save ``data`` as artifact ``name``, stamped with this run; returns its path.

    A ``Dataset``/``DatasetDict`` goes through ``save_to_disk``, a dict into an atomic JSON file. An older copy
    is replaced: ``save_to_disk`` refuses to overwrite a dataset that is memory-mapped from the same folder (a
    re-run notebook), so we write next to it and swap.
    """
    target = artifact_path(name)
    if isinstance(data, dict) and not hasattr(data, "save_to_disk"):
        write_json(target, data)
        return stamp(name, processor)
    fresh = target.with_name(target.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    with no_progress():
        data.save_to_disk(str(fresh))
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    fresh.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return stamp(name, processor)


def load_from_workspace(name: str, processor=None):
    """Artifact ``name`` as an earlier stage saved it, after checking that this run made it.

    A saved dataset (``loaded``, ``prepared``) comes back as a ``DatasetDict``, a JSON record (``report``,
    ``results``, ``predictions``) as a dict. ``processor`` adds the tokenizer to the check.
    """
    path = saved_path(name, processor=processor)
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    return datasets.load_from_disk(str(path))


@contextlib.contextmanager
def saving_to_workspace(*names: str, processor=None):
    """Yield the paths of artifacts ``names`` to write; once written, stamp those that exist with this run.

    For what a library saves itself (a model folder, an export): ``with saving_to_workspace("model") as
    model_dir: trainer.save_model(model_dir)``. With several names, a tuple of paths. What an earlier run left
    there is removed first: a folder never mixes two runs' files, and an artifact this run does not write (a
    LoRA run's adapter, after full fine-tuning) is not stamped as this run's.
    """
    paths = tuple(artifact_path(name) for name in names)
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        stamp_path(path).unlink(missing_ok=True)
    try:
        yield paths[0] if len(paths) == 1 else paths
    except Exception as error:
        written = sum(_size_on_disk(path) for path in paths)
        sentence = explain_disk_error(error, paths[0].parent, then=(
            f"then run this cell again, which saves what is still in memory without training again (the save had "
            f"written {written / 1e6:.0f} MB when it stopped)"))
        if sentence is None:
            raise
        for path in paths:  # a half-written folder is no artifact: gone, with its stamp, and its space freed
            stamp_path(path).unlink(missing_ok=True)
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        raise DiskError(sentence) from error
    for name, path in zip(names, paths):
        if path.exists():
            stamp(name, processor)


def _size_on_disk(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def checkpoint_copies_on_drive(processor=None) -> CheckpointMirror:
    """The :class:`~helpers.runtime.mirror.CheckpointMirror` that keeps small copies of each save in the workspace.

    Whether the copies already there may be resumed is decided where ``RESUME`` is known:
    ``train(trainer, resume=RESUME)`` claims them (``CheckpointMirror.claim``). Resuming another run's (model,
    data, language, training method, seed, learning rate: their stamp says) stops with what differs; starting
    over deletes them, and either way the folder is then stamped as this run's. The folder is locked for this
    kernel's lifetime (:mod:`helpers.runtime.lock`): 04 open twice (two tabs, two runtimes) would mix its
    checkpoints.
    """
    folder = artifact_path("training")
    RunLock(folder, "or stop the other notebook (Runtime > Disconnect and delete runtime in Colab)").acquire()
    stamp = artifact_stamp("training", processor)

    def claim_for_this_run(resuming: bool) -> None:
        if resuming and read_stamp(folder) is not None:
            check_stamp(folder, stamp, "Set RESUME = False in 04's training cell to start over (the earlier run's "
                                       "checkpoints are deleted first), or give this notebook that run's settings "
                                       "to resume it.")
        write_stamp(folder, stamp)

    return CheckpointMirror(folder, claim=claim_for_this_run)


def embed_audio(splits):
    """Copy every clip's bytes into the splits, so the workspace copy needs none of the original files.

    A Common Voice download on the Colab disk is gone after a disconnect; the copy on Drive is not. Rows
    whose clip is missing keep their path and no bytes, so preprocessing counts them as "file not found"
    (``save_to_disk`` would stop at them if the column were still an ``Audio`` feature).
    """
    features = datasets.Features({"audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
                                  "sentence": datasets.Value("string")})

    def read(batch: dict) -> dict:
        out = []
        for audio in batch["audio"]:
            audio = audio or {}
            data, path = audio.get("bytes"), audio.get("path") or ""
            if data is None and path and Path(path).is_file():
                data = Path(path).read_bytes()
            out.append({"bytes": data, "path": path})
        return {"audio": out}

    with no_progress():
        return splits.cast(features).map(read, batched=True, batch_size=64, features=features)
