"""Whisper models and processors with the course's language and task, and loading errors in one sentence.

The offline smoke model CI runs (``tools/smoke_model.py``, not part of this package) is an ordinary saved
folder, so ``load_model_and_processor`` calls the very same ``from_pretrained`` for it as for
``openai/whisper-small``.
"""

from __future__ import annotations

import re
from pathlib import Path

from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)
from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

from helpers.config import SMOKE_MODEL_DIR
from helpers.runtime.errors import CourseError, error_chain, first_line
from helpers.services.hub_errors import explain_hub_error, transport_errors


class ModelLoadError(CourseError):
    """A model id or folder that cannot be loaded; the message says why and what to do."""


def resolve_language(language: str | None) -> str | None:
    """Validate a language name or code against Whisper's list; ``None`` stays ``None`` (English-only models)."""
    if language is None or language == "":
        return None
    key = language.lower()
    if key in TO_LANGUAGE_CODE or key in LANGUAGES:
        return key
    raise CourseError(
        f"Unknown Whisper language {language!r}. Use a name such as 'sinhalese' or a code such as 'si' "
        "(Dhivehi is not a Whisper language; the course uses Sinhala, its closest relative)."
    )


def _check_smoke_model(model_id: str) -> None:
    """The smoke model is built by ``tools/smoke_model.py`` (test infrastructure, not part of this package)."""
    if Path(model_id) == SMOKE_MODEL_DIR and not (SMOKE_MODEL_DIR / "config.json").is_file():
        raise ModelLoadError(f"The offline smoke model is not built in {SMOKE_MODEL_DIR}: run "
                             "'python -m tools.smoke_model' in the repository (scripts/setup.sh does).")


# Anything else a path-like id could be is checked before from_pretrained, whose errors do not say which.
_HUB_ID = re.compile(r"\w[\w.-]*(/\w[\w.-]*)?")
GPT2_END_OF_TEXT = 50256  # <|endoftext|> in the *.en models' GPT-2 vocabulary; 50257 in the multilingual one


def _source_problem(model_id: str) -> str | None:
    """Why ``model_id`` cannot be a model, seen before anything is loaded: a folder that is not there or holds
    no model. ``None`` for a folder with a config.json and for anything shaped like a Hub id."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        return None if (path / "config.json").is_file() else f"the folder {path} holds no saved model (no config.json)"
    if path.exists():
        return f"{path} is a file; a saved model is a folder with config.json, the weights and the tokenizer"
    if _HUB_ID.fullmatch(model_id) and ".." not in model_id:
        return None
    return f"there is no folder {path} (a Hub model id looks like 'openai/whisper-small')"


def _causes(error: BaseException) -> str:
    """The first line of ``error`` and, when it wraps another, of the error at the root of it all."""
    root = error_chain(error)[-1]
    outer, innermost = first_line(error), first_line(root)
    return outer if root is error or innermost in outer else f"{outer.rstrip('.')}: {innermost}"


def _load_error(model_id: str, error: BaseException) -> ModelLoadError:
    """One sentence on why ``model_id`` did not load, keeping what the underlying error said."""
    prefix = f"Could not load the Whisper model {model_id!r}: "
    if Path(model_id).expanduser().exists():
        return ModelLoadError(f"{prefix}the folder's files could not be read as a Whisper model ({_causes(error)}).")
    hub = explain_hub_error(error, model_id)
    if hub:
        return ModelLoadError(f"{prefix}{hub}; nor is there a folder of that name here.")
    return ModelLoadError(f"{prefix}it is neither a folder here nor a Hub model id that can be loaded ({_causes(error)}).")


# Named, so that the training-step benchmark and the GPU checks compare the course's "eager" with what we load.
ATTENTION = "sdpa"


def _from_pretrained(kind, model_id: str, **options):
    try:
        return kind.from_pretrained(model_id, **options)
    # What a missing, unreachable, refused or broken checkpoint raises (transformers wraps the Hub's errors
    # in OSError, a broken JSON file is a ValueError); other errors are bugs and keep their traceback.
    except (OSError, ValueError, *transport_errors()) as error:
        raise _load_error(model_id, error) from error


def is_english_only(model_id: str, tokenizer: WhisperTokenizer | None = None) -> bool:
    """Whether ``model_id`` is an English-only checkpoint (``*.en``), which takes no language or task token.

    Its generation config says so as ``generate`` reads it (``is_multilingual`` false, or no ``lang_to_id``);
    a checkpoint saved without one is told by its vocabulary: GPT-2's, where ``<|endoftext|>`` is 50256.
    Every ``*.en`` tokenizer has the language tokens too, so their presence proves nothing.
    """
    try:
        generation = GenerationConfig.from_pretrained(model_id)
    except (OSError, ValueError):  # no generation_config.json (optional): the vocabulary decides
        generation = None
    if generation is not None and hasattr(generation, "is_multilingual"):
        return not (generation.is_multilingual and getattr(generation, "lang_to_id", None))
    tokenizer = tokenizer or _from_pretrained(WhisperTokenizer, model_id)
    return tokenizer.convert_tokens_to_ids("<|endoftext|>") == GPT2_END_OF_TEXT


def _load_processor(model_id: str, language: str | None, task: str | None) -> tuple[WhisperProcessor, bool]:
    """``(processor, english_only)``; the one place that decides the label prefix (see ``load_processor``)."""
    _check_smoke_model(model_id)
    problem = _source_problem(model_id)
    if problem:
        raise ModelLoadError(f"Could not load the Whisper model {model_id!r}: {problem}.")
    language = resolve_language(language)
    # config.json first: its errors carry the Hub's typed error or the JSON error as their cause, which
    # the processor's loader drops ("Can't load feature extractor for ...").
    _from_pretrained(WhisperConfig, model_id)
    processor = _from_pretrained(WhisperProcessor, model_id)
    english_only = is_english_only(model_id, processor.tokenizer)
    if english_only:
        if language not in (None, "english", "en") or task not in (None, "transcribe"):
            print(f"Note: {model_id} is English-only; language {language!r} and task {task!r} are ignored.")
        language = task = None
    tokenizer = processor.tokenizer
    # Set directly: set_prefix_tokens(language=None) would keep a language saved with the tokenizer.
    tokenizer.language, tokenizer.task = language, task
    tokenizer.set_prefix_tokens()  # rebuilds the label template: <|startoftranscript|>[lang][task]<|notimestamps|>
    return processor, english_only


def load_processor(model_id: str, language: str | None = None, task: str | None = None) -> WhisperProcessor:
    """The checkpoint's processor, its tokenizer's label prefix set to ``language`` and ``task``.

    An English-only checkpoint (``*.en``, see :func:`is_english_only`) takes neither: its labels start
    ``<|startoftranscript|><|notimestamps|>``, and a language or task other than English transcription is
    ignored with a printed note. ``None`` leaves the language (or task) out of the prefix.
    """
    return _load_processor(model_id, language, task)[0]


def load_model_and_processor(
    model_id: str, language: str | None = None, task: str | None = None, dropout: float | None = None
) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """Load a Whisper checkpoint and its processor, set up to transcribe ``language``.

    ``dropout`` replaces the checkpoint's (Whisper reads it when its layers are built, so it is set here, not
    on ``model.config`` afterwards); ``None`` keeps it.

    Language and task go on ``model.generation_config`` (today's API; ``forced_decoder_ids`` is gone) and on
    the tokenizer, whose prefix tokens then start every label. English-only checkpoints (``*.en``) take
    neither, as in :func:`load_processor`.
    """
    processor, english_only = _load_processor(model_id, language, task)
    # PyTorch's scaled_dot_product_attention: the same loss as the course's eager attention (tested), with a
    # fused kernel on a T4 (memory-efficient attention); about half the course's step time on a GPU.
    model = _from_pretrained(WhisperForConditionalGeneration, model_id, attn_implementation=ATTENTION,
                             **({} if dropout is None else {"dropout": dropout}))
    generation = model.generation_config
    generation.language = None if english_only else processor.tokenizer.language
    generation.task = None if english_only else processor.tokenizer.task
    generation.forced_decoder_ids = None
    return model, processor
