"""What the seven course notebooks share: set-up, badges, display helpers and the Hub login.

Every notebook starts with the same set-up cell, which installs the project in Colab and then calls
:func:`setup`: quiet library logging, Google Drive mounted as the workspace in Colab, the profile in use and
why, and this notebook's run (for the stamps :mod:`helpers.workspace` checks). Stages hand their results to
each other through :mod:`helpers.workspace`.

The repository URL lives here (:data:`REPO_URL`) and nowhere else: ``tools/make_notebooks.py`` writes the
Colab badges and the install command from it.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

from .config import PROFILE_ENV, WORKSPACE_ENV, CourseConfig, CourseError, describe, get_config, in_colab, workspace_dir
from .workspace import set_run

REPO_URL = "https://github.com/whisper-course/whisper-finetune-companion"
BRANCH = "main"
NOTEBOOK_FOLDER = "notebooks"
# Where the set-up cell clones the project in Colab (an editable install keeps data/ and helpers/ together).
COLAB_CHECKOUT = "/content/whisper-finetune-companion"
NONINTERACTIVE_ENV = "COURSE_NONINTERACTIVE"  # set by batch runners (nbmake, scripts/run_notebooks.py)

NOTEBOOKS: tuple[str, ...] = (
    "00_hub_login.ipynb",
    "01_load.ipynb",
    "02_preprocess.ipynb",
    "03_collate.ipynb",
    "04_train.ipynb",
    "05_evaluate.ipynb",
    "06_share.ipynb",
)

def colab_url(notebook: str) -> str:
    """The Colab link that opens ``notebook`` straight from the repository on GitHub."""
    path = REPO_URL.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{path}/blob/{BRANCH}/{NOTEBOOK_FOLDER}/{notebook}"


def colab_badge(notebook: str) -> str:
    """Markdown for the "Open in Colab" badge of ``notebook``."""
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(notebook)})"


def interactive() -> bool:
    """True in a notebook a person is looking at (not one executed by nbmake or scripts/run_notebooks.py)."""
    if os.environ.get(NONINTERACTIVE_ENV, "") not in ("", "0"):
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def quiet() -> None:
    """Keep notebook outputs readable: library warnings off, errors still shown, progress bars for people."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # else a fork warning per datasets worker
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    datasets.logging.set_verbosity_error()
    for name in ("huggingface_hub", "accelerate", "torch.distributed.elastic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Deprecation notices are for library authors, not learners; they would repeat in every cell.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*non-GUI backend.*")
    if not interactive() and not in_colab():
        # Executed by nbmake or scripts/run_notebooks.py: a saved progress bar shows its first frame
        # ("0%"), not its last, so leave them out. (Plain tqdm bars read TQDM_DISABLE, set by those runners.)
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


def _short_course_errors() -> None:
    """Show a ``CourseError`` as its one sentence instead of a traceback wall (the cell still fails)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def handler(shell, etype, value, tb, tb_offset=None):  # IPython's custom-exception signature
        print(f"{etype.__name__}: {value}", file=sys.stderr)

    shell.set_custom_exc((CourseError,), handler)


def _mount_drive() -> None:
    """Mount Google Drive in Colab so the workspace survives a disconnect; say so when it cannot."""
    if os.environ.get(WORKSPACE_ENV) or Path("/content/drive/MyDrive").is_dir():
        return
    try:
        from google.colab import drive  # type: ignore[import-not-found]

        drive.mount("/content/drive")
    except Exception as error:  # declined, or Drive unavailable: work locally, and say what that means
        print(f"Google Drive is not mounted ({type(error).__name__}): the workspace is on the Colab disk and "
              "is lost when the runtime disconnects.")


def setup(drive: bool = True, needs_gpu: bool = False, **overrides: Any) -> CourseConfig:
    """Prepare a notebook: quiet logs, Drive in Colab, print profile, recipe and workspace; return the config.

    ``overrides`` go to :func:`helpers.config.get_config` (e.g. ``setup(max_steps=100)``). ``needs_gpu``
    (notebooks 04 and 05) stops a real run on a Colab runtime without a GPU with what to do, instead of
    training or evaluating whisper-small on two vCPUs for hours. The profile is then kept for the rest of
    this kernel, and this notebook's artifacts are stamped with, and checked against, this run.
    """
    quiet()
    _short_course_errors()
    if drive and in_colab():
        _mount_drive()
    config = get_config(**overrides)
    os.environ[PROFILE_ENV] = config.profile  # later calls in this kernel see the same profile and workspace
    print(describe(config))
    if needs_gpu and config.profile != "smoke":
        import torch

        if not torch.cuda.is_available():
            message = (f"This notebook runs {config.model} and needs a GPU, and this runtime has none. In Colab: "
                       "Runtime > Change runtime type > T4 GPU, then run the notebook again (the workspace on "
                       f"Drive is kept). If your GPU quota is used up, set {PROFILE_ENV}=smoke in the set-up cell "
                       "to run the offline profile instead: a tiny random model that shows the steps, not a "
                       "useful result; it has its own workspace folder.")
            if in_colab():
                raise CourseError(message)
            print(f"Warning: {message}")
    set_run(config)
    print(f"Workspace: {workspace_dir(config.profile)}")
    return config


def use_colab_secret(name: str) -> bool:
    """In Colab, copy the secret ``name`` into the environment (never printed); True when it is set."""
    if not os.environ.get(name) and in_colab():
        try:
            from google.colab import userdata  # type: ignore[import-not-found]

            os.environ[name] = userdata.get(name)
        except Exception:  # no such secret, or access not granted
            pass
    return bool(os.environ.get(name))


def disk_size(path: Path) -> int:
    """Bytes taken by a file or a folder's files."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def markdown_table(rows: Iterable[Sequence[Any]], headers: Sequence[str]):
    """An ``IPython.display.Markdown`` table (renders in Jupyter and Colab; plain text elsewhere)."""
    from IPython.display import Markdown

    def cell(value: Any) -> str:
        value = getattr(value, "value", value)  # an Enum (e.g. SchedulerType.LINEAR) as its plain value
        if isinstance(value, float):  # percentages with two decimals; a learning rate as itself
            value = f"{value:.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:g}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return Markdown("\n".join(lines))


def rows_table(dataset, n: int = 5):
    """The first ``n`` rows of a loaded split: clip file name and sentence."""
    head = dataset.select(range(min(n, len(dataset))))
    names = [Path((audio or {}).get("path") or "<bytes>").name for audio in head["audio"]]
    return markdown_table(zip(names, head["sentence"]), ["clip", "sentence"])


def scores_table(results: dict[str, dict]):
    """Metrics side by side: one row per metric, one column per model (e.g. zero-shot, fine-tuned)."""
    metrics = ("wer_ortho", "wer", "wer_basic", "cer", "n")
    rows = [[metric] + [scores.get(metric, "") for scores in results.values()] for metric in metrics]
    return markdown_table(rows, ["metric (%)"] + list(results))


def first_tokens(tokenizer, rows: dict[str, Sequence[int]], n: int = 6):
    """A table of the first ``n`` ids of each named row, each id with its token (-100 shown as padding)."""

    special = set(tokenizer.all_special_ids)

    def show(token_id: int) -> str:
        token_id = int(token_id)
        if token_id == -100:
            return "-100 (ignored)"
        # A text token is a piece of UTF-8 bytes, often not a whole letter: say what it is, not its bytes.
        return f"{token_id} `{tokenizer.convert_ids_to_tokens(token_id)}`" if token_id in special else f"{token_id} (text)"

    table = [[name] + [show(i) for i in list(ids)[:n]] for name, ids in rows.items()]
    return markdown_table(table, ["", *(f"position {i}" for i in range(n))])


# What each of the course's Seq2SeqTrainingArguments does, and what it costs on a free Colab T4 (16 GB).
TRAINING_ARGUMENT_NOTES: dict[str, str] = {
    "output_dir": "checkpoints and TensorBoard logs; in the workspace (Drive), so a disconnect loses at most "
                  "the steps since the last checkpoint",
    "per_device_train_batch_size": "clips per step; 16 fits whisper-small on a T4 with fp16 and checkpointing. "
                                   "Out of memory? halve it and double gradient_accumulation_steps",
    "gradient_accumulation_steps": "batches summed before each optimizer step: a larger effective batch for no "
                                   "extra memory, that many times slower per step",
    "learning_rate": "peak learning rate; 1e-5 for whisper-small nudges the pre-trained weights instead of "
                     "relearning them (too high and WER goes up)",
    "lr_scheduler_type": "how the learning rate moves after warm-up; the course keeps it constant for 500 steps "
                         "('constant_with_warmup') and suggests 'linear' decay for longer runs",
    "warmup_steps": "the learning rate ramps up linearly from 0 over these steps, so the first, noisy updates "
                    "do not damage the pre-trained weights",
    "max_steps": "optimizer steps in all; the course's 500 steps of batch 16 take about 45 minutes on a T4",
    "gradient_checkpointing": "recompute activations in the backward pass instead of storing them: slower steps, "
                              "far less memory; what lets batch 16 fit on a T4",
    "activation_checkpointing": "recompute activations in the backward pass instead of storing them: slower "
                                "steps, far less memory; what lets batch 16 fit on a T4",
    "fp16": "mixed precision on the T4's tensor cores: faster steps and about half the activation memory "
            "(CPUs train in fp32, so it is off there)",
    "fp16_full_eval": "evaluation in half precision too: faster generation, half the memory (the course sets it)",
    "eval_strategy": "'steps': evaluate every eval_steps (generation over the whole test split: minutes on a T4)",
    "per_device_eval_batch_size": "clips per generation batch during evaluation; memory, not quality",
    "predict_with_generate": "evaluate by generating transcripts, so that WER can be computed (slower than loss)",
    "generation_max_length": "longest transcript generated in evaluation, in tokens; far above a Common Voice "
                             "sentence, it only stops runaway repetitions",
    "save_steps": "checkpoint every N steps (weights + optimizer: about 3 GB for whisper-small); a multiple of "
                  "eval_steps so the best model can be found",
    "eval_steps": "evaluate every N steps; each evaluation costs minutes of generation on a T4",
    "logging_steps": "log the training loss every N steps (TensorBoard, the progress table); costs nothing",
    "save_total_limit": "keep only the newest N checkpoints (and the best), so Drive and the Colab disk do not fill up",
    "report_to": "TensorBoard event files under output_dir/runs",
    "load_best_model_at_end": "after training, reload the checkpoint with the best metric (not simply the last one)",
    "metric_for_best_model": "the metric that picks the best checkpoint: WER",
    "greater_is_better": "False: a lower WER is better",
    "push_to_hub": "False: 06_share.ipynb pushes after a local save, so the token never enters these arguments "
                   "(they are pickled into every checkpoint)",
    "remove_unused_columns": "False: the collator needs the stored 16 kHz audio, which the model does not take",
    "dataloader_num_workers": "processes preparing batches (log-mel features) while the GPU trains",
    "seed": "the random seed for shuffling and initialisation, for repeatable runs",
}


def explain_training_arguments(args) -> Any:
    """A table of the course's training arguments: this run's value and what each does and costs on a T4."""
    rows = []
    for name, note in TRAINING_ARGUMENT_NOTES.items():
        if not hasattr(args, name) or (name == "gradient_checkpointing" and hasattr(args, "activation_checkpointing")):
            continue  # transformers renamed gradient_checkpointing to activation_checkpointing: show the one in use
        value = getattr(args, name)
        if name == "output_dir":
            value = Path(value).name  # the full path is printed elsewhere; keep the table narrow
        rows.append((f"`{name}`", value, note))
    return markdown_table(rows, ["argument", "this run", "what it does, what it costs on a T4"])


def best_evaluation(log_history: list[dict], best_step: int | None = None) -> dict:
    """The evaluation entry (step and metrics) of the checkpoint the trainer kept as best.

    ``best_step`` is ``trainer.state.best_global_step`` when known; otherwise the lowest WER wins and, as
    in the trainer (which needs a strict improvement), the earliest of equal ones.
    """
    evaluations = [entry for entry in log_history if "eval_wer" in entry]
    if not evaluations:
        raise CourseError("The trainer logged no evaluation; train for at least eval_steps steps.")
    if best_step is not None:
        for entry in evaluations:
            if entry.get("step") == best_step:
                return entry
    return min(evaluations, key=lambda entry: entry["eval_wer"])


def card_language(config: CourseConfig) -> str | None:
    """The dataset's language code for the model card: the locale at the end of the data source, if any.

    Common Voice names folders and ids by locale ('.../dv', 'common-voice-dv'); Whisper's own language can
    differ (the course transcribes Dhivehi as 'sinhalese'), so the data source is asked first.
    """
    tail = str(config.data).rstrip("/").replace("\\", "/").split("/")[-1].split(":")[-1].split("-")[-1]
    if tail.isalpha() and 2 <= len(tail) <= 3:
        return tail.lower()
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    return TO_LANGUAGE_CODE.get((config.language or "").lower(), config.language)


def source_label(source: str, keep: int = 2) -> str:
    """A model or data source fit for a model card: a Hub id as is, a local folder as its last ``keep`` parts.

    A card must not carry the full local path (it names the machine's user and folders).
    """
    text = str(source)
    path = Path(text).expanduser()
    if path.is_absolute() or path.exists():
        return "/".join(path.resolve().parts[-keep:])
    return text.removeprefix("mdc:")


def training_summary(config: CourseConfig) -> dict[str, Any]:
    """The training settings worth putting in a model card."""
    fields = ("max_steps", "train_batch_size", "gradient_accumulation_steps", "learning_rate", "warmup_steps",
              "gradient_checkpointing", "fp16", "seed")
    summary = {name: getattr(config, name) for name in fields}
    summary.update(language=config.language, task=config.task)
    return summary


def export_model(model_dir: Path, card, destination: Path) -> Path:
    """Copy the saved model and processor to ``destination`` with ``card`` as its README.md."""
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(model_dir, destination)
    card.save(str(destination / "README.md"))
    return destination


def gradio_demo(asr) -> Any:
    """A small Gradio app around an ASR ``pipeline``: record or upload a clip, read the transcript."""
    import gradio as gr  # installed by the optional cell in Colab; not a dependency of the course

    def transcribe(path: str | None) -> str:
        return asr(path)["text"] if path else ""

    return gr.Interface(
        fn=transcribe,
        inputs=gr.Audio(sources=["microphone", "upload"], type="filepath"),
        outputs="text",
        title="Fine-tuned Whisper",
        description="Record or upload a clip; the fine-tuned model transcribes it.",
    )


def login() -> None:
    """Use a token that is already there (``HF_TOKEN``, Colab secret, cached login); else offer the widget.

    The widget appears only in Colab or in a notebook a person is looking at; the token itself is never
    printed.
    """
    from .hub import find_token

    if find_token():
        print("A Hugging Face token was found (HF_TOKEN, a Colab secret or a cached login); it is not shown.")
        return
    if in_colab() or interactive():
        from huggingface_hub import notebook_login

        notebook_login()
        print("Paste a token with write access above (https://huggingface.co/settings/tokens), "
              "then run the next cell.")
        return
    print("No Hugging Face token and nobody to ask for one: continuing without logging in.")
