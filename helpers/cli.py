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
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from helpers.config import PROFILES, CourseConfig, describe, get_config
from helpers.runtime.errors import CourseError

OVERRIDES = {
    # flag: (config field, type, help)
    "--model": ("model", str, "model id on the Hub or a local folder (e.g. openai/whisper-small)"),
    "--data": ("data", str, "Common Voice folder, audiofolder, mdc:<dataset-id> or a Hub dataset id"),
    "--language": ("language", str, "language to transcribe, e.g. sinhalese; 'none' for English-only models"),
    "--task": ("task", str, "transcribe or translate; 'none' for English-only models"),
    "--output-dir": ("output_dir", str, "folder for checkpoints, TensorBoard logs, the model and results"),
    "--max-steps": ("max_steps", int, "optimizer steps to train"),
    "--batch-size": ("train_batch_size", int, "training batch size per device"),
    "--eval-batch-size": ("eval_batch_size", int, "evaluation batch size per device"),
    "--gradient-accumulation-steps": ("gradient_accumulation_steps", int, "batches per optimizer step"),
    "--learning-rate": ("learning_rate", float, "peak learning rate"),
    "--warmup-steps": ("warmup_steps", int, "linear warm-up steps"),
    "--lr-scheduler-type": ("lr_scheduler_type", str, "learning-rate schedule after warm-up (course: constant_with_warmup)"),
    "--eval-steps": ("eval_steps", int, "evaluate every N steps"),
    "--save-steps": ("save_steps", int, "save a checkpoint every N steps (a multiple of --eval-steps)"),
    "--logging-steps": ("logging_steps", int, "log the loss every N steps"),
    "--save-total-limit": ("save_total_limit", int, "checkpoints kept on disk (older ones are deleted)"),
    "--generation-max-length": ("generation_max_length", int, "longest generated transcript, in tokens"),
    "--eval-num-beams": ("eval_num_beams", int, "beams of the fine-tuned model's extra beam-search score (t4: 5)"),
    "--max-train-samples": ("max_train_samples", int, "use only the first N training clips"),
    "--max-test-samples": ("max_test_samples", int, "use only the first N test clips"),
    "--validation-size": ("validation_size", int,
                          "dev clips held out (seeded) to choose the best checkpoint; the rest of dev trains"),
    "--num-proc": ("num_proc", int, "clips prepared at a time (threads) in preprocessing"),
    "--seed": ("seed", int, "random seed"),
    "--peft": ("peft", str, "'lora' trains LoRA adapters only (default: none, every weight is trained)"),
    "--lora-rank": ("lora_rank", int, "LoRA rank r (default 32)"),
    "--lora-alpha": ("lora_alpha", int, "LoRA scaling alpha; the update is scaled by alpha / r (default 64)"),
    "--lora-dropout": ("lora_dropout", float, "dropout on the LoRA path (default 0.05)"),
    "--lora-target-modules": ("lora_target_modules", str,
                              ("modules LoRA adapts, comma-separated: q_proj,v_proj (default), k_proj, "
                               "out_proj, fc1, fc2")),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, summary in (("prepare", "load and preprocess; write report.json"),
                          ("run", "prepare, evaluate zero-shot, train, evaluate; write results.json")):
        sub = commands.add_parser(name, help=summary, description=summary)
        sub.add_argument("--profile", choices=list(PROFILES),
                         help="settings to start from (default: COURSE_PROFILE, else chosen from the machine)")
        for flag, (field, kind, text) in OVERRIDES.items():
            sub.add_argument(flag, dest=field, type=kind, help=text)
        if name == "run":
            sub.add_argument("--no-resume", action="store_true", help="start over instead of resuming")
            sub.add_argument("--no-fp16", action="store_true", help="train in fp32 even on a GPU")
            sub.add_argument("--no-gradient-checkpointing", action="store_true", help="faster, more memory")
            sub.add_argument("--fast-generate", dest="fast_generate", action=argparse.BooleanOptionalAction,
                             help=("evaluate with a static KV cache, compiled on a GPU (default: chosen from the "
                                   "machine and the pass's length; greedy transcripts are the same)"))
            sub.add_argument("--freeze-encoder", action="store_true",
                             help="train the decoder only: about a third of a full step's compute")
            sub.add_argument("--auto-find-batch-size", action="store_true",
                             help="halve the batch size until a step fits in GPU memory")
            sub.add_argument("--push-to", metavar="REPO_ID", help="push the final model to this Hub repo")
            sub.add_argument("--load-in-8bit", action="store_true",
                             help="with --peft lora: keep the frozen base in 8 bits (bitsandbytes, CUDA only)")
            sub.add_argument("--export-ct2", action="store_true",
                             help="also export the model to CTranslate2 (faster-whisper) in OUTPUT/ct2")
            sub.add_argument("--ct2-quantization", default="float16",
                             help="weights of the CTranslate2 export: float16 (default), int8, or float32")
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
    """The profile's config with every flag the user gave applied ('none' clears language and task)."""
    # argparse gives None for a flag not on the command line: only the flags given are overrides.
    overrides = {field: getattr(args, field) for field, _, _ in OVERRIDES.values() if getattr(args, field) is not None}
    for field in ("language", "task", "peft"):
        if field in overrides and overrides[field].strip().lower() in ("none", ""):
            overrides[field] = None
    if overrides.get("peft"):
        from helpers.extras.lora import check_peft

        overrides["peft"] = overrides["peft"].strip().lower()
        check_peft(overrides["peft"])
    config = get_config(args.profile, **overrides)
    if config.task not in (None, "transcribe", "translate"):
        raise CourseError(f"Unknown task {config.task!r}; use transcribe, translate or none (English-only models).")
    if getattr(args, "no_fp16", False):
        config = config.replace(fp16=False)
    if getattr(args, "fast_generate", None) is not None:
        config = config.replace(fast_generate=args.fast_generate)
    if getattr(args, "no_gradient_checkpointing", False):
        config = config.replace(gradient_checkpointing=False)
    if getattr(args, "freeze_encoder", False):
        config = config.replace(freeze_encoder=True)
    if getattr(args, "load_in_8bit", False):
        if not config.peft:
            raise CourseError("--load-in-8bit freezes the base weights: it needs --peft lora.")
        config = config.replace(load_in_8bit=True)
    return config


def load_and_prepare(config: CourseConfig, processor, output_dir: Path):
    """Load ``config.data``, subsample if asked, preprocess, and write ``report.json``; return (prepared, report)."""
    from helpers.data import load_common_voice, subsample
    from helpers.preparation import format_report, prepare_splits
    from helpers.runtime.distributed import is_main_process, local_main_process_first
    from helpers.runtime.workspace import write_json

    with local_main_process_first():  # in a distributed run one process fills the datasets cache, the others read it
        splits = subsample(load_common_voice(config.data, seed=config.seed, validation_size=config.validation_size),
                           config.max_train_samples, config.max_test_samples)
        prepared, report = prepare_splits(splits, processor, max_label_tokens=448, num_proc=config.num_proc)
    if is_main_process():
        write_json(output_dir / "report.json", report)  # atomic: a kill never leaves half a report
        print(format_report(report))
    for split in ("train", "validation", "test"):
        if len(prepared[split]) == 0:
            raise CourseError(f"No {split} clip survived preprocessing; {output_dir / 'report.json'} says why "
                              "each was dropped.")
    return prepared, report


def prepare(config: CourseConfig) -> dict:
    from helpers.model import load_processor

    output_dir = Path(config.output_dir)
    processor = load_processor(config.model, config.language, config.task)
    _, report = load_and_prepare(config, processor, output_dir)
    print(f"Wrote {output_dir / 'report.json'}")
    return report


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
    from helpers.model import load_model_and_processor
    from helpers.runtime.distributed import from_main_process, is_main_process
    from helpers.runtime.workspace import run_stamp

    if config.load_in_8bit and not config.peft:
        raise CourseError("8-bit base weights (load_in_8bit) are frozen: they need peft='lora' (--peft lora).")
    main = is_main_process()  # under a launcher this starts the process group, which the Trainer reuses
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model, processor = load_model_and_processor(config.model, config.language, config.task)
    stamp = run_stamp(config, processor)  # which run made the files in output_dir (helpers.runtime.workspace)
    check_checkpoints(stamp, output_dir, resume)
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
    from helpers.evaluation import evaluate_model

    return evaluate_model(model, processor, test, config.eval_batch_size, config.generation_max_length,
                          fp16=config.fp16, num_beams=num_beams, fast=config.fast_generate)


def check_checkpoints(stamp: dict, output_dir: Path, resume: bool) -> None:
    """Stop before resuming checkpoints another run (other model, data, language...) left in ``output_dir``."""
    from helpers.runtime.workspace import check_stamp
    from helpers.training import last_checkpoint

    if resume and last_checkpoint(output_dir, verbose=False):
        check_stamp(output_dir / "checkpoints", stamp,
                    f"Use another --output-dir, or --no-resume to start over in {output_dir}.")


def score_zero_shot(config: CourseConfig, model, processor, test, output_dir: Path, resume: bool,
                    stamp: dict) -> dict | None:
    """The model before training, on the test split: from baseline.json when this run has scored it already.

    On the main process only (``None`` elsewhere), which also stamps the checkpoints folder as this run's.
    """
    from helpers.evaluation import evaluation_key, reuse_or_evaluate
    from helpers.runtime.distributed import is_main_process, wait_for_everyone
    from helpers.runtime.workspace import write_stamp

    zero_shot = None
    if is_main_process():
        baseline_file = output_dir / "baseline.json"
        if not resume:
            baseline_file.unlink(missing_ok=True)
        # Computed once per model, data and generation settings: a resumed or repeated run reuses it.
        zero_shot, reused = reuse_or_evaluate(baseline_file, evaluation_key(config, config.model, test, processor),
                                              lambda: _score(config, model, processor, test))
        print(f"Zero-shot{' (reused from ' + baseline_file.name + ')' if reused else ''}: {zero_shot['scores']}")
        write_stamp(output_dir / "checkpoints", stamp)
    wait_for_everyone()  # the others would otherwise wait for it inside training's first collective call
    return zero_shot


def train_model(config: CourseConfig, model, processor, prepared, output_dir: Path, resume: bool,
                auto_find_batch_size: bool = False):
    """LoRA adapters when ``config.peft``, the course's trainer, and training (resumed when it can be)."""
    from helpers.training import build_trainer, train

    if config.peft:  # after the zero-shot score, which is the full-precision model's as for full fine-tuning
        from helpers.extras.lora import lora_from_config

        model = lora_from_config(model, config)
    trainer = build_trainer(model, processor, prepared, config, output_dir, auto_find_batch_size=auto_find_batch_size)
    train(trainer, resume=resume)
    return trainer


def save_model(config: CourseConfig, trainer, processor, output_dir: Path, stamp: dict):
    """The kept model with its processor in O/model (after LoRA: the adapter in O/adapter, merged into O/model),
    stamped; returns the model to score."""
    from helpers.runtime.distributed import is_main_process
    from helpers.runtime.workspace import write_stamp

    model_dir, final_model = output_dir / "model", trainer.model
    if not config.peft:
        trainer.save_model(str(model_dir))  # in every process: it writes on the main one, gathering shards if any
    if not is_main_process():
        return final_model
    if config.peft:
        from helpers.extras.lora import merge_and_save

        final_model = merge_and_save(trainer.model, processor, model_dir, output_dir / "adapter")
        write_stamp(output_dir / "adapter", stamp)
        print(f"Saved the adapter alone to {output_dir / 'adapter'} and the merged model to {model_dir}")
    else:
        processor.save_pretrained(str(model_dir))
    write_stamp(model_dir, stamp)
    return final_model


def score_fine_tuned(config: CourseConfig, model, processor, test, zero_shot: dict, output_dir: Path) -> dict:
    """Greedy (the course's decoding) and beam search on the test split; writes results.json and predictions.json."""
    from helpers.evaluation import beam_search_record, predictions_record, results_record
    from helpers.runtime.workspace import write_json

    greedy = _score(config, model, processor, test)
    print(f"Fine-tuned: {greedy['scores']} (greedy, the course's decoding: the score to compare with the course's)")
    beams = _score(config, model, processor, test, config.eval_num_beams)
    print(f"Fine-tuned, {config.eval_num_beams} beams: {beams['scores']} "
          f"({beams['seconds']:.0f} s against greedy's {greedy['seconds']:.0f} s)")
    results = results_record(config, zero_shot["scores"], greedy["scores"],
                             beam_search_record(greedy, beams, config.eval_num_beams))
    write_json(output_dir / "results.json", results)
    write_json(output_dir / "predictions.json", predictions_record(zero_shot, greedy))
    print(f"Wrote {output_dir / 'results.json'}, {output_dir / 'predictions.json'} and the model to "
          f"{output_dir / 'model'}")
    return results


def push(config: CourseConfig, repo_id: str, scores: dict, output_dir: Path) -> None:
    """Publish O/model with 06's card; only now, with the model saved: a failed push leaves it and says how to
    retry (a warning, not a failed run)."""
    from helpers.extras.sharing import PushError, course_model_card, push_model

    model_dir = output_dir / "model"
    card = course_model_card(config, repo_id, scores, model_dir, output_dir / "adapter" if config.peft else None)
    card.save(str(model_dir / "README.md"))  # the card 06 shows, uploaded with the model
    try:
        print(push_model(model_dir, repo_id, raise_on_failure=True))
    except PushError as error:
        print(f"warning: {error}", file=sys.stderr)


def export_and_try(model_dir: Path, ct2_dir: Path, quantization: str | None, processor, test, config) -> None:
    """Export ``model_dir`` to CTranslate2 and print its transcript of the first test clip beside the reference."""
    from helpers.audio import from_int16
    from helpers.extras.ctranslate2 import export_ctranslate2, transcribe_ct2

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

    try:
        if args.command == "push":
            from helpers.extras.sharing import push_model

            print(push_model(Path(args.model_dir), args.repo_id, raise_on_failure=True))
            return 0
        if args.command == "export-ct2":
            from helpers.extras.ctranslate2 import export_ctranslate2

            out = export_ctranslate2(Path(args.model_dir), Path(args.output_dir), _quantization(args.quantization))
            print(f"Exported {args.model_dir} to CTranslate2 in {out} (faster-whisper loads this folder).")
            return 0
        config = config_from_args(args)
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, say it once (before any process group exists)
            print(describe(config))
        from helpers.services.hub import use_cache_only_if_unreachable

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
