"""``python -m helpers``: the whole fine-tuning path in one command, or its preparation alone.

    python -m helpers prepare --data D --output-dir O      # load + preprocess, writes O/report.json
    python -m helpers run --model M --data D --language L --task T --max-steps N --output-dir O
    accelerate launch -m helpers run ...                   # the same on several GPUs

``run`` prepares, evaluates the zero-shot model, trains (resuming from the last checkpoint in O), saves
the model to O/model, evaluates it on the same test split, and writes O/results.json (scores) and
O/predictions.json (both models' transcripts). The best checkpoint
is chosen on the validation slice of dev (``--validation-size``); the test split is scored only by the
zero-shot and the final model. ``--peft lora`` trains LoRA adapters only (O/adapter holds the adapter,
O/model the merged model); ``--export-ct2`` adds a CTranslate2 copy in O/ct2.

    python -m helpers export-ct2 --model-dir O/model --output-dir O/ct2 [--quantization int8]

``share-data`` is the teacher's mirror (``helpers.services.data_mirror``): the Common Voice release, downloaded
once, into a private Hub dataset (``--to-hub ORG/NAME``) or a folder to share (``--to-folder DIR``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import typing
from pathlib import Path

from helpers.audio import from_int16
from helpers.config import PROFILES, CourseConfig, describe, get_config
from helpers.data import find_cv_folder, load_common_voice, subsample
from helpers.evaluation import (
    beam_search_record,
    describe_zero_shot,
    evaluate_model,
    evaluate_zero_shot,
    evaluation_key,
    predictions_record,
    results_record,
    reuse_or_evaluate,
)
from helpers.extras.ctranslate2 import export_ctranslate2, transcribe_ct2
from helpers.extras.lora import check_peft, lora_from_config, merge_and_save
from helpers.extras.sharing import PushError, course_model_card, push_model
from helpers.model import load_model_and_processor, load_processor
from helpers.preparation import format_report, prepare_splits
from helpers.runtime.checkpoints import last_checkpoint
from helpers.runtime.distributed import (
    from_main_process,
    is_main_process,
    local_main_process_first,
    wait_for_everyone,
)
from helpers.runtime.errors import CourseError, check_writable, explain_disk_error
from helpers.runtime.lock import RunLock
from helpers.runtime.mirror import save_costs
from helpers.runtime.workspace import check_stamp, checkpoint_stamp, run_stamp, write_json, write_stamp
from helpers.services.data_mirror import share_data
from helpers.services.hub import use_cache_only_if_unreachable
from helpers.training import build_trainer, train

AGAIN = "then run the same command again"
REPORT_ROOM = 2**20  # report.json lists every dropped clip: well under a megabyte

# The command line's settings are CourseConfig's fields, one flag each (--max-steps for max_steps), so a new
# setting cannot be left off one side; these are the fields that are not settings, and the flags' help.
NOT_FLAGS = ("profile", "reason", "recipe", "recipe_reason")  # --profile has its own choices; the rest is derived
ALIASES = {"train_batch_size": ("--batch-size",)}  # the spelling the docs use, beside --train-batch-size
HELP = {
    "model": "model id on the Hub or a local folder (e.g. openai/whisper-small)",
    "data": ("Common Voice folder, audiofolder, mdc:<dataset-id>, common-voice:<locale>, a Hub dataset id, or a "
             "teacher's mirror (mirror:ORG/NAME, or the shared folder)"),
    "language": "language to transcribe, e.g. sinhalese; 'none' for English-only models",
    "task": "transcribe or translate; 'none' for English-only models",
    "output_dir": "folder for checkpoints, TensorBoard logs, the model and results",
    "max_steps": "optimizer steps to train",
    "train_batch_size": "training batch size per device",
    "eval_batch_size": "evaluation batch size per device",
    "gradient_accumulation_steps": "batches per optimizer step",
    "learning_rate": "peak learning rate",
    "warmup_steps": "linear warm-up steps",
    "lr_scheduler_type": "learning-rate schedule after warm-up (course: constant_with_warmup)",
    "eval_steps": "evaluate every N steps",
    "save_steps": "save a checkpoint every N steps (a multiple of --eval-steps)",
    "logging_steps": "log the loss every N steps",
    "save_total_limit": "checkpoints kept on disk (older ones are deleted)",
    "gradient_checkpointing": "recompute activations in the backward pass: less GPU memory, slower (--no-...: faster)",
    "freeze_encoder": "train the decoder only: about a third of a full step's compute",
    "dropout": "Whisper's dropout while training (default: the checkpoint's, 0.0)",
    "fp16": "train and evaluate in fp16 on a GPU (--no-fp16: fp32 even there)",
    "generation_max_length": "longest generated transcript, in tokens",
    "fast_generate": ("evaluate with a static KV cache, compiled on a GPU (default: chosen from the machine and the "
                      "pass's length; greedy transcripts are the same)"),
    "eval_num_beams": ("beams of the fine-tuned model's extra beam-search score (1: none, the t4 profile's; 5 costs "
                       "about as long again as the greedy pass)"),
    "load_best_model_at_end": "after training, reload the checkpoint with the best validation wer_words",
    "zero_shot_samples": "test clips the zero-shot baseline transcribes, a seeded sample ('none': all of them)",
    "zero_shot_token_margin": "tokens the zero-shot model may generate beyond the longest reference",
    "stop_repeats": "stop a transcript after this many repeats of the same tail (0: never)",
    "max_train_samples": "use only the first N training clips",
    "max_test_samples": "use only the first N test clips",
    "num_proc": "clips prepared at a time (threads) in preprocessing",
    "dataloader_num_workers": "processes loading training batches (0 on a CPU: they would compete with the step)",
    "seed": "random seed",
    "validation_size": "dev clips held out (seeded) to choose the best checkpoint; the rest of dev trains",
    "peft": "'lora' trains LoRA adapters only (default: none, every weight is trained)",
    "lora_rank": "LoRA rank r (default 32)",
    "lora_alpha": "LoRA scaling alpha; the update is scaled by alpha / r (default 64)",
    "lora_dropout": "dropout on the LoRA path (default 0.05)",
    "lora_target_modules": "modules LoRA adapts, comma-separated: q_proj,v_proj (default), k_proj, out_proj, fc1, fc2",
    "load_in_8bit": ("with --peft lora: keep the frozen base in 8 bits (bitsandbytes, CUDA only; experimental: not "
                     "yet run on a GPU)"),
}


class _Cleared:
    """What 'none' on the command line means for a setting that may be empty (argparse's None is 'not given')."""

    def __repr__(self) -> str:
        return "none"


CLEARED = _Cleared()


def _value(kind: type, optional: bool):
    """argparse's ``type`` for a field of type ``kind``: 'none' (or an empty value) clears an optional one."""
    def parse(text: str):
        if optional and text.strip().lower() in ("none", ""):
            return CLEARED
        return kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error ("invalid int value")
    return parse


def config_flags() -> list[tuple[str, tuple[str, ...], dict]]:
    """``(field, flags, add_argument keywords)`` for every setting of :class:`~helpers.config.CourseConfig`."""
    hints = typing.get_type_hints(CourseConfig)
    found = []
    for field in dataclasses.fields(CourseConfig):
        if field.name in NOT_FLAGS:
            continue
        hint = hints[field.name]
        kinds = [k for k in typing.get_args(hint) if k is not type(None)] or [hint]
        optional = type(None) in typing.get_args(hint)
        kind = typing.get_origin(kinds[0]) or kinds[0]
        flags = (*ALIASES.get(field.name, ()), "--" + field.name.replace("_", "-"))
        keywords = {"dest": field.name, "help": HELP.get(field.name, f"CourseConfig.{field.name}")}
        if kind is bool:
            keywords["action"] = argparse.BooleanOptionalAction
        else:
            keywords["type"] = _value(str if kind is tuple else kind, optional)  # a tuple as "a,b" (__post_init__)
        found.append((field.name, flags, keywords))
    return found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, summary in (("prepare", "load and preprocess; write report.json"),
                          ("run", "prepare, evaluate zero-shot, train, evaluate; write results.json")):
        sub = commands.add_parser(name, help=summary, description=summary)
        sub.add_argument("--profile", choices=list(PROFILES),
                         help="settings to start from (default: COURSE_PROFILE, else chosen from the machine)")
        settings = sub.add_argument_group("settings", "each a CourseConfig field; the profile's value when not given")
        for _, flags, keywords in config_flags():
            settings.add_argument(*flags, **keywords)
        if name == "run":
            sub.add_argument("--no-resume", action="store_true", help="start over instead of resuming")
            sub.add_argument("--auto-find-batch-size", action="store_true",
                             help="halve the batch size until a step fits in GPU memory")
            sub.add_argument("--push-to", metavar="REPO_ID", help="push the final model to this Hub repo")
            sub.add_argument("--export-ct2", action="store_true",
                             help="also export the model to CTranslate2 (faster-whisper) in OUTPUT/ct2")
            sub.add_argument("--ct2-quantization", default="float16",
                             help="weights of the CTranslate2 export: float16 (default), int8, or float32")
    share = commands.add_parser("share-data", help="a teacher's mirror: share a Common Voice release with a class",
                                description=("put the release you downloaded into a private Hub dataset and/or a "
                                             "folder to share (Common Voice is CC0); learners set DATA to read it"))
    share.add_argument("--data", required=True,
                       help="common-voice:<locale> or mdc:<id> (downloaded once), a release folder or its archive")
    share.add_argument("--to-hub", metavar="ORG/NAME", help="a private Hub dataset; learners set DATA='mirror:ORG/NAME'")
    share.add_argument("--to-folder", metavar="DIR", help="a folder to share, e.g. on Google Drive")
    push = commands.add_parser("push", help="push a saved model folder to the Hub")
    push.add_argument("--model-dir", required=True)
    push.add_argument("--repo-id", required=True)
    ct2 = commands.add_parser("export-ct2", help="convert a saved model folder to CTranslate2 (faster-whisper)")
    ct2.add_argument("--model-dir", required=True, help="a saved Whisper folder, e.g. OUTPUT/model")
    ct2.add_argument("--output-dir", required=True, help="where the CTranslate2 model goes, e.g. OUTPUT/ct2")
    ct2.add_argument("--quantization", default="float16",
                     help="float16 (default), int8, int8_float16, float32, ... or none to keep the model's own")
    return parser


def config_from_args(args: argparse.Namespace) -> CourseConfig:
    """The profile's config with every setting the user gave applied ('none' clears language, task...)."""
    # argparse gives None for a flag not on the command line: only the flags given are overrides.
    overrides = {field: getattr(args, field) for field, _, _ in config_flags() if getattr(args, field) is not None}
    overrides = {field: None if value is CLEARED else value for field, value in overrides.items()}
    if overrides.get("peft"):
        overrides["peft"] = overrides["peft"].strip().lower()
        check_peft(overrides["peft"])
    config = get_config(args.profile, **overrides)
    if config.task not in (None, "transcribe", "translate"):
        raise CourseError(f"Unknown task {config.task!r}; use transcribe, translate or none (English-only models).")
    if overrides.get("load_in_8bit") and not config.peft:
        raise CourseError("--load-in-8bit freezes the base weights: it needs --peft lora.")
    return config


def load_and_prepare(config: CourseConfig, processor, output_dir: Path):
    """Load ``config.data``, subsample if asked, preprocess, and write ``report.json``; return (prepared, report)."""
    with local_main_process_first():  # in a distributed run one process fills the datasets cache, the others read it
        splits = subsample(load_common_voice(config.data, seed=config.seed, validation_size=config.validation_size),
                           config.max_train_samples, config.max_test_samples)
        prepared, report = prepare_splits(splits, processor, max_label_tokens=448, num_proc=config.num_proc,
                                           seed=config.seed)
    if is_main_process():
        write_json(output_dir / "report.json", report)  # atomic: a kill never leaves half a report
        print(format_report(report))
    for split in ("train", "validation", "test"):
        if len(prepared[split]) == 0:
            raise CourseError(f"No {split} clip survived preprocessing; {output_dir / 'report.json'} says why "
                              "each was dropped.")
    return prepared, report


def prepare(config: CourseConfig) -> dict:
    output_dir = check_writable(config.output_dir, REPORT_ROOM, "the report", AGAIN)  # before, not after, the work
    with one_run_at_a_time(output_dir):
        processor = load_processor(config.model, config.language, config.task)
        _, report = load_and_prepare(config, processor, output_dir)
    print(f"Wrote {output_dir / 'report.json'}")
    return report


def one_run_at_a_time(output_dir: Path, main: bool = True):
    """The run's lock on ``output_dir`` (:mod:`helpers.runtime.lock`), held by the main process only."""
    return RunLock(output_dir, "or use another --output-dir") if main else contextlib.nullcontext()


def run(config: CourseConfig, resume: bool = True, auto_find_batch_size: bool = False,
        push_to: str | None = None, export_ct2: bool = False, ct2_quantization: str | None = "float16") -> dict:
    """The whole path, stage by stage; see the module docstring. Returns what it writes to results.json.

    With ``config.peft == "lora"`` only LoRA adapters train (``helpers.extras.lora``); checkpoints hold the adapter,
    and at the end O/adapter gets the adapter alone and O/model the merged model, a plain Whisper folder, so
    scoring, ``pipeline`` and the model card work as after full fine-tuning. ``export_ct2`` also converts
    O/model to CTranslate2 in O/ct2 (``helpers.extras.ctranslate2``) and transcribes the first test clip with it.

    In a distributed run (torchrun, accelerate launch) every process trains, and the in-training evaluation
    is shared between them; only the main process scores the zero-shot and the final model, prints and
    writes files, while the others wait. Every process returns the main process's record.
    """
    if config.load_in_8bit and not config.peft:
        raise CourseError("8-bit base weights (load_in_8bit) are frozen: they need peft='lora' (--peft lora).")
    main = is_main_process()  # under a launcher this starts the process group, which the Trainer reuses
    output_dir = check_writable(config.output_dir, then=AGAIN)  # before minutes of loading and preparing
    with one_run_at_a_time(output_dir, main):  # two runs in one folder would mix their checkpoints
        model, processor = load_model_and_processor(config.model, config.language, config.task, config.dropout)
        if main:  # room for a checkpoint and the final model, or the run stops at its first save
            cost = save_costs(model.num_parameters(), model.num_parameters(only_trainable=True))
            check_writable(output_dir, cost["full"] + cost["final_model"], "a checkpoint and the model", AGAIN)
        stamp = run_stamp(config, processor)  # which run made the files in output_dir (helpers.runtime.workspace)
        check_checkpoints(checkpoint_stamp(stamp, config), output_dir, resume)
        prepared, _ = load_and_prepare(config, processor, output_dir)                      # stages 1 and 2
        zero_shot = score_zero_shot(config, model, processor, prepared["test"], output_dir, resume, stamp)  # 5's
        trainer = train_model(config, model, processor, prepared, output_dir, resume, auto_find_batch_size)  # 3, 4
        final_model = save_model(config, trainer, processor, output_dir, stamp)
        results = None
        if main:
            results = score_fine_tuned(config, final_model, processor, prepared["test"], zero_shot, output_dir)  # 5
            if export_ct2:
                export_and_try(output_dir / "model", output_dir / "ct2", ct2_quantization, processor, prepared["test"],
                               config)
            if push_to:
                push(config, push_to, results["finetuned"], output_dir)                   # stage 6
    return from_main_process(results)  # also keeps the others until the main process is done


def _score(config: CourseConfig, model, processor, test, num_beams: int = 1) -> dict:
    return evaluate_model(model, processor, test, config.eval_batch_size, config.generation_max_length,
                          fp16=config.fp16, num_beams=num_beams, fast=config.fast_generate)


def check_checkpoints(stamp: dict, output_dir: Path, resume: bool) -> None:
    """Stop before resuming checkpoints another run (other model, data, language...) left in ``output_dir``."""
    if resume and last_checkpoint(output_dir, verbose=False):
        check_stamp(output_dir / "checkpoints", stamp,
                    f"Use another --output-dir, or --no-resume to start over in {output_dir}.")


def score_zero_shot(config: CourseConfig, model, processor, test, output_dir: Path, resume: bool,
                    stamp: dict) -> dict | None:
    """The model before training, on the test split: from baseline.json when this run has scored it already.

    On the main process only (``None`` elsewhere), which also stamps the checkpoints folder as this run's.
    """
    zero_shot = None
    if is_main_process():
        baseline_file = output_dir / "baseline.json"
        if not resume:
            baseline_file.unlink(missing_ok=True)
        # Computed once per model, data and generation settings: a resumed or repeated run reuses it.
        zero_shot, reused = reuse_or_evaluate(baseline_file, evaluation_key(config, config.model, test, processor),
                                              lambda: evaluate_zero_shot(model, processor, test, config))
        print(f"Zero-shot{' (reused from ' + baseline_file.name + ')' if reused else ''}: {zero_shot['scores']}")
        print(describe_zero_shot(zero_shot))
        write_stamp(output_dir / "checkpoints", checkpoint_stamp(stamp, config))
    wait_for_everyone()  # the others would otherwise wait for it inside training's first collective call
    return zero_shot


def train_model(config: CourseConfig, model, processor, prepared, output_dir: Path, resume: bool,
                auto_find_batch_size: bool = False):
    """LoRA adapters when ``config.peft``, the course's trainer, and training (resumed when it can be)."""
    if config.peft:  # after the zero-shot score, which is the full-precision model's as for full fine-tuning
        model = lora_from_config(model, config)
    trainer = build_trainer(model, processor, prepared, config, output_dir, auto_find_batch_size=auto_find_batch_size)
    train(trainer, resume=resume)
    return trainer


def save_model(config: CourseConfig, trainer, processor, output_dir: Path, stamp: dict):
    """The kept model with its processor in O/model (after LoRA: the adapter in O/adapter, merged into O/model),
    stamped; returns the model to score."""
    model_dir, final_model = output_dir / "model", trainer.model
    if not config.peft:
        trainer.save_model(str(model_dir))  # in every process: it writes on the main one, gathering shards if any
    if not is_main_process():
        return final_model
    if config.peft:
        final_model = merge_and_save(trainer.model, processor, model_dir, output_dir / "adapter")
        write_stamp(output_dir / "adapter", stamp)
        print(f"Saved the adapter alone to {output_dir / 'adapter'} and the merged model to {model_dir}")
    else:
        processor.save_pretrained(str(model_dir))
    write_stamp(model_dir, stamp)
    return final_model


def score_fine_tuned(config: CourseConfig, model, processor, test, zero_shot: dict, output_dir: Path) -> dict:
    """Greedy (the course's decoding) and, with ``eval_num_beams`` > 1, beam search on the test split; writes
    results.json and predictions.json."""
    greedy = _score(config, model, processor, test)
    print(f"Fine-tuned: {greedy['scores']} (greedy, the course's decoding: the score to compare with the course's)")
    beam_search = None
    if config.eval_num_beams > 1:  # opt-in on the t4 profile: about as long again as the greedy pass
        beams = _score(config, model, processor, test, config.eval_num_beams)
        print(f"Fine-tuned, {config.eval_num_beams} beams: {beams['scores']} "
              f"({beams['seconds']:.0f} s against greedy's {greedy['seconds']:.0f} s)")
        beam_search = beam_search_record(greedy, beams, config.eval_num_beams)
    results = results_record(config, zero_shot["scores"], greedy["scores"], beam_search)
    write_json(output_dir / "results.json", results)
    write_json(output_dir / "predictions.json", predictions_record(zero_shot, greedy))
    print(f"Wrote {output_dir / 'results.json'}, {output_dir / 'predictions.json'} and the model to "
          f"{output_dir / 'model'}")
    return results


def push(config: CourseConfig, repo_id: str, scores: dict, output_dir: Path) -> None:
    """Publish O/model with 06's card; only now, with the model saved: a failed push leaves it and says how to
    retry (a warning, not a failed run)."""
    model_dir = output_dir / "model"
    card = course_model_card(config, repo_id, scores, model_dir, output_dir / "adapter" if config.peft else None)
    card.save(str(model_dir / "README.md"))  # the card 06 shows, uploaded with the model
    try:
        print(push_model(model_dir, repo_id, raise_on_failure=True))
    except PushError as error:
        print(f"warning: {error}", file=sys.stderr)


def export_and_try(model_dir: Path, ct2_dir: Path, quantization: str | None, processor, test, config) -> None:
    """Export ``model_dir`` to CTranslate2 and print its transcript of the first test clip beside the reference."""
    export_ctranslate2(model_dir, ct2_dir, quantization)
    clip = test[0]
    text = transcribe_ct2(ct2_dir, from_int16(clip["audio_16k"]), processor.tokenizer.language,
                          processor.tokenizer.task, config.generation_max_length)
    weights = quantization or "the model's own precision"
    print(f"Exported to CTranslate2 ({weights}) in {ct2_dir}.\n  reference:   {clip.get('sentence', '')}\n"
          f"  CTranslate2: {text}")


def _quantization(text: str) -> str | None:
    return None if text.strip().lower() in ("none", "") else text.strip().lower()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = None
    try:
        if args.command == "push":
            print(push_model(Path(args.model_dir), args.repo_id, raise_on_failure=True))
            return 0
        if args.command == "share-data":
            release = Path(args.data).expanduser()
            if release.is_dir():  # a release folder, or one above it (cv-corpus-*/, a Drive folder)
                release = find_cv_folder(release) or release
            print("\n".join(share_data(str(release) if release.is_dir() else args.data, args.to_hub, args.to_folder)))
            return 0
        if args.command == "export-ct2":
            out = export_ctranslate2(Path(args.model_dir), Path(args.output_dir), _quantization(args.quantization))
            print(f"Exported {args.model_dir} to CTranslate2 in {out} (faster-whisper loads this folder).")
            return 0
        config = config_from_args(args)
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, say it once (before any process group exists)
            print(describe(config))
        note = use_cache_only_if_unreachable(config.model, config.data)  # fail fast, not after minutes of retries
        if note:
            print(note)
        if args.command == "prepare":
            prepare(config)
        else:
            run(config, resume=not args.no_resume, auto_find_batch_size=args.auto_find_batch_size,
                push_to=args.push_to, export_ct2=args.export_ct2, ct2_quantization=_quantization(args.ct2_quantization))
        return 0
    except CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a full or read-only disk, whichever library met it, is one sentence too
        output_dir = config.output_dir if config else getattr(args, "output_dir", None)
        sentence = explain_disk_error(error, output_dir, then=AGAIN + ": it goes on from what was saved")
        if sentence is None:
            raise
        print(f"error: {sentence}", file=sys.stderr)
        return 2
