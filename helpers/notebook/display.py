"""What the notebooks show: tables, a helper's own source with the lines that matter marked, named metrics,
the training arguments explained, and what a real run reaches.

Everything returns an IPython display object (or a string): a cell shows it by leaving it as its last value.
"""

from __future__ import annotations

import html
import inspect
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from IPython.display import HTML, Audio, Markdown
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from helpers.audio import SAMPLING_RATE, from_int16
from helpers.config import BUNDLED_CORPUS, SINHALA_CORPUS, CourseConfig, is_random_init
from helpers.metrics import CHECKPOINT_METRIC
from helpers.notebook.course import COURSE_FIGURES
from helpers.runtime.errors import CourseError
from helpers.training import COURSE_TRAINING_ARGUMENTS, RENAMED_ARGUMENTS

# Every error rate with its name, wherever one is printed, so that nobody compares unlike numbers: the
# course's names mean the course's metrics (wer: 14 % after 500 steps), ours have their own (wer_words).
METRIC_LABELS: dict[str, str] = {
    "wer_ortho": "WER, orthographic (raw text; the course's wer_ortho)",
    "wer": "WER, the course's normaliser (BasicTextNormalizer; the course's normalised wer)",
    "wer_words": "WER, words kept whole (case and punctuation off, vowel marks kept; picks the checkpoint)",
    "cer_words": "CER, words kept whole (as wer_words)",
    "n": "clips scored",
}


def markdown_table(rows: Iterable[Sequence[Any]], headers: Sequence[str]):
    """An ``IPython.display.Markdown`` table (renders in Jupyter and Colab; plain text elsewhere)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return Markdown("\n".join(lines))


def _cell(value: Any) -> str:
    value = getattr(value, "value", value)  # an Enum (e.g. SchedulerType.LINEAR) as its plain value
    if isinstance(value, float):  # percentages with two decimals; a learning rate as itself
        value = f"{value:.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def disk_size(path: Path) -> int:
    """Bytes taken by a file or a folder's files."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def rows_table(dataset, n: int = 5):
    """The first ``n`` rows of a loaded split: clip file name and sentence."""
    head = dataset.select(range(min(n, len(dataset))))
    names = [Path((audio or {}).get("path") or "<bytes>").name for audio in head["audio"]]
    return markdown_table(zip(names, head["sentence"]), ["clip", "sentence"])


def scores_table(results: Mapping[str, Mapping[str, Any]], course: bool = True):
    """Error rates side by side, each row named (:data:`METRIC_LABELS`), one column per model.

    With ``course``, two more columns hold what the course reports for the real run (Common Voice 13), where
    it reports the same metric.
    """
    columns = dict(results)
    if course:
        columns.update({f"course {name} (CV13)": figures for name, figures in COURSE_FIGURES.items()})
    rows = [[f"`{metric}`: {label}"] + [scores.get(metric, "–") for scores in columns.values()]
            for metric, label in METRIC_LABELS.items()]
    return markdown_table(rows, ["metric (%)", *columns])


def first_tokens(tokenizer, rows: Mapping[str, Sequence[int]], n: int = 6):
    """A table of the first ``n`` ids of each named row, each id with its token (-100 shown as padding)."""
    special = set(tokenizer.all_special_ids)

    def show(token_id: int) -> str:
        token_id = int(token_id)
        if token_id == -100:
            return "-100 (ignored)"
        # A text token is a piece of UTF-8 bytes, often not a whole letter: say what it is, not its bytes.
        if token_id in special:
            return f"{token_id} `{tokenizer.convert_ids_to_tokens(token_id)}`"
        return f"{token_id} (text)"

    table = [[name] + [show(i) for i in list(ids)[:n]] for name, ids in rows.items()]
    return markdown_table(table, ["", *(f"position {i}" for i in range(n))])


class Source:
    """A function's or class's own source, syntax-highlighted, with some lines marked and explained.

    Shown as HTML in Jupyter and Colab (Pygments, highlighted lines), as numbered text elsewhere
    (marked lines start with ``>>``). Each mark is a piece of text that must occur on exactly one line,
    so a change to the helper that moves or removes a marked line fails loudly instead of marking nothing.
    """

    def __init__(self, obj: Any, marks: Mapping[str, str] | None = None):
        self.name = getattr(obj, "__qualname__", repr(obj))
        self.module = getattr(obj, "__module__", "")
        self.code = inspect.getsource(obj).rstrip("\n")
        self.marks: dict[int, str] = {}  # 1-based line number -> why it matters
        lines = self.code.splitlines()
        for needle, note in (marks or {}).items():
            hits = [number for number, line in enumerate(lines, 1) if needle in line]
            if len(hits) != 1:
                raise ValueError(f"mark {needle!r} is on {len(hits)} lines of {self.name}, not exactly one")
            self.marks[hits[0]] = note

    @property
    def title(self) -> str:
        return f"{self.module}.{self.name}" if self.module else self.name

    def __repr__(self) -> str:
        lines = [f"# {self.title}"]
        for number, line in enumerate(self.code.splitlines(), 1):
            lines.append(f"{'>>' if number in self.marks else '  '}{number:3d}  {line}")
        lines += [f"# line {number}: {note}" for number, note in sorted(self.marks.items())]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        formatter = HtmlFormatter(noclasses=True, linenos="inline", hl_lines=sorted(self.marks), style="default")
        notes = "".join(f"<li><b>line {number}</b>: {html.escape(note)}</li>"
                        for number, note in sorted(self.marks.items()))
        return (f"<p><code>{html.escape(self.title)}</code>: the one definition the notebooks and "
                "<code>python -m helpers</code> run</p>"
                + highlight(self.code, PythonLexer(), formatter)
                + (f"<ul>{notes}</ul>" if notes else ""))


def show_source(obj: Any, marks: Mapping[str, str] | None = None) -> Source:
    """Display ``obj``'s own source (the one definition the notebooks use), marking the lines that matter.

    ``marks`` maps a piece of a line's text to why that line matters; see :class:`Source`.
    """
    return Source(obj, marks)


# What each of the course's Seq2SeqTrainingArguments does, and what it costs on a free Colab T4 (16 GB).
TRAINING_ARGUMENT_NOTES: dict[str, str] = {
    "output_dir": "full checkpoints and TensorBoard logs, on the runtime's own disk; after each save a small "
                  "copy (fp16 weights, no optimizer moments) goes to the workspace (Drive), so a disconnect loses "
                  "at most the steps since the last save",
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
    "max_steps": "optimizer steps in all; the course's 500 steps of batch 16 and its evaluation take about 45 minutes on "
                 "a T4 (ours, with SDPA attention, about 29: the unit's budget)",
    "gradient_checkpointing": "recompute activations in the backward pass instead of storing them: slower steps, "
                              "far less memory; what lets batch 16 fit on a T4",
    "activation_checkpointing": "recompute activations in the backward pass instead of storing them: slower "
                                "steps, far less memory; what lets batch 16 fit on a T4",
    "fp16": "mixed precision on the T4's tensor cores: faster steps and about half the activation memory "
            "(CPUs train in fp32, so it is off there)",
    "fp16_full_eval": "evaluation in half precision too: faster generation, half the memory (the course sets it)",
    "eval_strategy": "'steps': evaluate every eval_steps (generation over the evaluation clips: about a minute "
                     "for 300 clips on a T4)",
    "per_device_eval_batch_size": "clips per generation batch during evaluation; memory, not quality",
    "predict_with_generate": "evaluate by generating transcripts, so that WER can be computed (slower than loss)",
    "generation_max_length": "longest transcript generated in evaluation, in tokens; far above a Common Voice "
                             "sentence, it only stops runaway repetitions",
    "save_steps": "checkpoint every N steps (weights + optimizer: about 2.9 GB for whisper-small on the runtime's "
                  "disk, 0.48 GB copied to Drive), for a disconnect; with load_best_model_at_end it must be a "
                  "multiple of eval_steps",
    "eval_steps": "evaluate every N steps (the course: once, at 500); each evaluation of 300 clips costs about "
                  "a minute of generation on a T4",
    "logging_steps": "log the training loss every N steps (TensorBoard, the progress table); costs nothing",
    "save_total_limit": "keep only the newest N checkpoints (and the best) on the runtime's disk; Drive keeps the "
                        "newest copy and the best",
    "report_to": "TensorBoard event files under output_dir/runs",
    "load_best_model_at_end": "after training, reload the checkpoint with the best metric (not simply the last "
                              "one); with one evaluation, at the end, there is nothing to choose (off in the real "
                              "run, which saves between evaluations)",
    "metric_for_best_model": "the metric that picks the best checkpoint: wer_words (words kept whole, not "
                             "cut at vowel marks as the course's wer cuts them)",
    "greater_is_better": "False: a lower WER is better",
    "push_to_hub": "False: 06_share pushes after a local save, so the token never enters these arguments "
                   "(they are pickled into every checkpoint)",
    "remove_unused_columns": "False: the collator needs the stored 16 kHz audio, which the model does not take",
    "dataloader_num_workers": "processes preparing batches (log-mel features) while the GPU trains",
    "seed": "the random seed for shuffling and initialisation, for repeatable runs",
    "use_cpu": "True only without a GPU: the same run on the CPU, in fp32",
    "eval_accumulation_steps": "1: each evaluation batch's generated ids leave the GPU at once, so evaluation "
                               "holds one batch's worth of memory",
    "disable_tqdm": "False: the notebook's live progress table, while the libraries' own logs stay quiet",
}


def explain_training_arguments(args) -> Any:
    """A table of the training arguments: the course's value (``COURSE_TRAINING_ARGUMENTS``, under the
    course's name where transformers has renamed it) beside this run's, in bold where they differ, and what
    each does and costs on a T4. An argument the course does not set shows the default it gets there."""
    course = {RENAMED_ARGUMENTS.get(name, name): (name, value) for name, value in COURSE_TRAINING_ARGUMENTS.items()}
    defaults = type(args)()  # what the course's call gets for an argument it leaves out
    rows = []
    for name, note in TRAINING_ARGUMENT_NOTES.items():
        if not hasattr(args, name) or (name == "gradient_checkpointing" and hasattr(args, "activation_checkpointing")):
            continue  # transformers renamed gradient_checkpointing to activation_checkpointing: show the one in use
        value = getattr(args, name)
        if name in course:
            course_name, course_value = course[name]
            theirs = _cell(course_value) + (f" (`{course_name}`)" if course_name != name else "")
        else:
            course_value = getattr(defaults, name)
            theirs = f"not set: {_cell(course_value)}"
        same = _cell(course_value) == _cell(value)
        if name == "output_dir":
            value = Path(value).name  # the full path is printed elsewhere; keep the table narrow
        rows.append((f"`{name}`", theirs, _cell(value) if same else f"**{_cell(value)}**", note))
    return markdown_table(rows, ["argument", "the course's", "this run", "what it does, what it costs on a T4"])


def best_evaluation(log_history: list[dict], best_step: int | None = None) -> dict:
    """The evaluation entry (step and metrics) of the checkpoint the trainer kept as best.

    ``best_step`` is ``trainer.state.best_global_step`` when known; otherwise the lowest ``wer_words`` (the
    metric the trainer chooses by) wins and, as in the trainer (which needs a strict improvement), the
    earliest of equal ones.
    """
    key = f"eval_{CHECKPOINT_METRIC}"
    evaluations = [entry for entry in log_history if key in entry]
    if not evaluations:
        raise CourseError("The trainer logged no evaluation; train for at least eval_steps steps.")
    if best_step is not None:
        for entry in evaluations:
            if entry.get("step") == best_step:
                return entry
    return min(evaluations, key=lambda entry: entry[key])


def evaluations_table(log_history: list[dict], best_step: int | None = None):
    """Every evaluation during training, the course's normalised WER and ours side by side; the best marked."""
    best = best_evaluation(log_history, best_step)["step"]
    metrics = ("wer", "wer_words", "wer_ortho", "cer_words")
    rows = [[f"{entry['step']}{' (kept)' if entry['step'] == best else ''}", entry.get("eval_loss", "–"),
             *(entry.get(f"eval_{metric}", "–") for metric in metrics)]
            for entry in log_history if f"eval_{CHECKPOINT_METRIC}" in entry]
    return markdown_table(rows, ["step", "test loss", *(f"`{m}` %" for m in metrics)])


def _figures(stage: str) -> str:
    figures = COURSE_FIGURES[stage]
    return f"{figures['wer_ortho']} % orthographic (`wer_ortho`), {figures['wer']} % normalised (`wer`)"


def real_run_note(config: CourseConfig, about: str = "scores"):
    """What these numbers mean and what the real run reaches, as a Markdown note beside a result.

    ``about`` is ``"scores"`` (error rates) or ``"transcripts"`` (what the model wrote).
    """
    course = (f"The course reports, for whisper-small on Common Voice 13 Dhivehi: zero-shot {_figures('zero-shot')}; "
              f"after 500 steps {_figures('fine-tuned')}.")
    if is_random_init(config.model):
        what = ("its transcripts are noise (broken characters, shown as �, or another script)" if about == "transcripts"
                else "these rates only show that the code ran, not how well Whisper learns")
        text = (f"**Smoke run.** The model is a tiny Whisper with random weights, trained for {config.max_steps} "
                f"steps on synthetic clips: {what}. {course}")
    elif Path(config.data).resolve() in (BUNDLED_CORPUS.resolve(), SINHALA_CORPUS.resolve()):
        frozen = " with its encoder frozen" if config.freeze_encoder else ""
        text = (f"**Offline run.** A real pretrained Whisper ({Path(config.model).name}), fine-tuned for "
                f"{config.max_steps} steps{frozen} on a few dozen synthetic Sinhala clips (espeak-ng, a small "
                "vocabulary): zero-shot it writes Sinhala speech in Latin letters, fine-tuned in Sinhala script. "
                f"The fall shows it learning; the figures are not comparable with the course's. {course}")
    else:
        text = (f"**What to expect.** {course} Today's Common Voice release is not CV13 (more clips, other "
                "speakers and test sentences), so expect figures near these, not equal to them.")
    return Markdown(f"> {text}")


def transcripts_side_by_side(predictions: Mapping[str, Sequence[str]], test: Sequence[Mapping[str, Any]],
                             clips: int | Sequence[int] = 5):
    """A few test clips, each with an audio player, its reference, the zero-shot and the fine-tuned transcript.

    ``predictions`` is what ``predictions.json`` holds (``references``, ``zero_shot``, ``fine_tuned``: clip for
    clip, in the test split's order, see :func:`helpers.evaluation.predictions_record`); ``test`` is the
    prepared test split those transcripts were made from (its ``audio_16k`` column). ``clips`` is how many
    clips to show (the first ones with a reference) or which ones, by index. Returns an
    ``IPython.display.HTML``: a table that Jupyter and Colab render with a player per clip.
    """
    references, zero_shot, fine_tuned = (list(predictions[key]) for key in ("references", "zero_shot", "fine_tuned"))
    if not len(references) == len(zero_shot) == len(fine_tuned) == len(test):
        raise CourseError(f"These transcripts are of {len(references)} clips and the test split has {len(test)}: "
                          "they were made from another test split. Run this stage's scoring cells again.")
    if isinstance(clips, int):  # the zero-shot pass may have scored a sample: clips it left out hold None
        clips = [i for i, reference in enumerate(references) if reference.strip() and zero_shot[i] is not None][:clips]
    rows = []
    for i in clips:
        player = Audio(from_int16(test[i]["audio_16k"]), rate=SAMPLING_RATE, normalize=False).src_attr()
        texts = "".join(f'<tr><th style="text-align:left">{name}</th><td style="text-align:left">'
                        f"{html.escape(text if text is not None else '(not in the zero-shot sample)')}</td></tr>"
                        for name, text in (("reference", references[i]), ("zero-shot", zero_shot[i]),
                                           ("fine-tuned", fine_tuned[i])))
        rows.append(f'<tr><td style="vertical-align:top">clip {i}<br><audio controls preload="none" src="{player}">'
                    f"</audio></td><td><table>{texts}</table></td></tr>")
    return HTML(f'<table class="transcripts">{"".join(rows)}</table>')
