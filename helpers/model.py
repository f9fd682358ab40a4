"""Whisper models and processors: the real ones from the Hub, and an offline smoke stand-in.

The smoke model is a tiny randomly initialised ``WhisperForConditionalGeneration`` with Whisper's real
multilingual vocabulary (built from openai-whisper's ``multilingual.tiktoken``) and a generation config
like whisper-small's. It is saved as an ordinary folder, so ``load_model_and_processor`` calls the very
same ``from_pretrained`` for it as for ``openai/whisper-small``.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from transformers import (
    AddedToken,
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)
from transformers.convert_slow_tokenizer import TikTokenConverter
from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

from .config import RANDOM_INIT_MARK, SMOKE_MODEL_DIR, CourseError, error_chain, first_line
from .hub import explain_hub_error, transport_errors

# Whisper's special tokens, in the order openai-whisper assigns ids after the BPE ranks.
NUM_LANGUAGES = 99  # whisper-small and every model but large-v3 (100)
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    *[f"<|{code}|>" for code in list(LANGUAGES)[:NUM_LANGUAGES]],
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
]
TIMESTAMP_TOKENS = [f"<|{i * 0.02:.2f}|>" for i in range(1501)]
# openai-whisper's non_speech_tokens(): symbols that would let the model hallucinate speaker tags or music.
_NON_SPEECH = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』') + (
    "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
)
_MISC_SYMBOLS = "♩♪♫♬♭♮♯"


class ModelLoadError(CourseError):
    """A model id or folder that cannot be loaded; the message says why and what to do."""


def multilingual_tiktoken_path(name: str = "multilingual") -> Path:
    """Path of openai-whisper's ``<name>.tiktoken`` (``pip install --no-deps openai-whisper``).

    ``multilingual`` is the vocabulary of every multilingual Whisper; ``gpt2`` that of the ``*.en`` models.
    Found without importing ``whisper``, whose ``__init__`` needs numba and the full model code.
    """
    spec = importlib.util.find_spec("whisper")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "assets" / f"{name}.tiktoken"
        if path.is_file():
            return path
    raise ModelLoadError(
        f"openai-whisper's {name}.tiktoken was not found; install it with "
        "'pip install --no-deps openai-whisper' to build the offline smoke model."
    )


def build_whisper_tokenizer(tiktoken_file: Path | None = None) -> WhisperTokenizer:
    """Whisper's tokenizer rebuilt offline from the real BPE ranks; ids match openai-whisper's.

    The special tokens follow the BPE ranks in openai-whisper's order, so the same code gives the
    multilingual tokenizer (``<|endoftext|>`` = 50257) and, from ``gpt2.tiktoken``, the English-only one
    (``<|endoftext|>`` = 50256).
    """
    vocab, merges = TikTokenConverter().extract_vocab_merges_from_model(str(tiktoken_file or multilingual_tiktoken_path()))
    tokenizer = WhisperTokenizer(vocab=vocab, merges=merges)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS[1:]]}
    )
    # Timestamps are ordinary added tokens in the Hub tokenizers: decode() filters them by id instead.
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TIMESTAMP_TOKENS])
    tokenizer.pad_token = "<|endoftext|>"  # as in the Hub tokenizers; padding is masked by attention, not id
    tokenizer.model_max_length = 448
    return tokenizer


def whisper_generation_config(
    tokenizer: WhisperTokenizer, max_target_positions: int = 448, multilingual: bool = True
) -> GenerationConfig:
    """A generation config shaped like openai/whisper-small's (or whisper-small.en's), from ``tokenizer``'s ids."""
    ids = tokenizer.convert_tokens_to_ids
    suppress = {tokenizer.encode(" -", add_special_tokens=False)[0], tokenizer.encode(" '", add_special_tokens=False)[0]}
    for symbol in _NON_SPEECH + list(_MISC_SYMBOLS):
        for text in (symbol, " " + symbol):
            pieces = tokenizer.encode(text, add_special_tokens=False)
            if len(pieces) == 1 or symbol in _MISC_SYMBOLS:
                suppress.add(pieces[0])
    suppress |= {ids(t) for t in ("<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>")}
    languages = dict(
        lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in list(LANGUAGES)[:NUM_LANGUAGES]},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
    )
    return GenerationConfig(
        bos_token_id=ids("<|endoftext|>"),
        eos_token_id=ids("<|endoftext|>"),
        pad_token_id=ids("<|endoftext|>"),
        decoder_start_token_id=ids("<|startoftranscript|>"),
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        **(languages if multilingual else {}),  # *.en checkpoints have neither
        is_multilingual=multilingual,
        begin_suppress_tokens=[tokenizer.encode(" ", add_special_tokens=False)[0], ids("<|endoftext|>")],
        suppress_tokens=sorted(suppress),
        max_initial_timestamp_index=50,
        max_length=max_target_positions,
    )


# Small enough for a few dozen steps on 2 CPU cores, big enough to get past predicting the commonest byte
# token: with d_model 64 the loss stalls at the unigram entropy (about 2.7) on the bundled clips.
SMOKE_ARCHITECTURE = dict(
    d_model=128,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=512,
    decoder_ffn_dim=512,
)


def build_smoke_model(folder: Path = SMOKE_MODEL_DIR, seed: int = 0, english_only: bool = False) -> Path:
    """Save a tiny random Whisper with the real vocabulary and processor to ``folder``; return it.

    ``english_only`` gives a stand-in for the ``*.en`` checkpoints (GPT-2 vocabulary, no language tokens in
    its generation config), so that path is tested offline too.
    """
    import torch

    tokenizer = build_whisper_tokenizer(multilingual_tiktoken_path("gpt2" if english_only else "multilingual"))
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        **SMOKE_ARCHITECTURE,
        max_source_positions=1500,
        max_target_positions=448,
        pad_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.convert_tokens_to_ids("<|startoftranscript|>"),
        **{RANDOM_INIT_MARK: True},  # picks its own training recipe, in this folder and in its fine-tuned copies
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = whisper_generation_config(tokenizer, multilingual=not english_only)
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


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


def smoke_model_is_current(folder: Path = SMOKE_MODEL_DIR) -> bool:
    """Whether ``folder`` holds a smoke model built with today's ``SMOKE_ARCHITECTURE``."""
    try:
        saved = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    expected = {**SMOKE_ARCHITECTURE, RANDOM_INIT_MARK: True}
    return all(saved.get(key) == value for key, value in expected.items())


def ensure_smoke_model(force: bool = False) -> Path:
    """Build the smoke model in ``SMOKE_MODEL_DIR`` when it is missing, outdated, or ``force`` asks."""
    if force or not smoke_model_is_current(SMOKE_MODEL_DIR):
        print(f"Building the offline smoke model in {SMOKE_MODEL_DIR}.")
        build_smoke_model(SMOKE_MODEL_DIR)
    return SMOKE_MODEL_DIR


def _ensure_smoke_model(model_id: str) -> None:
    if Path(model_id) == SMOKE_MODEL_DIR:
        ensure_smoke_model()


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


def _from_pretrained(kind, model_id: str):
    try:
        return kind.from_pretrained(model_id)
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
    _ensure_smoke_model(model_id)
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
    model_id: str, language: str | None = None, task: str | None = None
) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """Load a Whisper checkpoint and its processor, set up to transcribe ``language``.

    Language and task go on ``model.generation_config`` (today's API; ``forced_decoder_ids`` is gone) and on
    the tokenizer, whose prefix tokens then start every label. English-only checkpoints (``*.en``) take
    neither, as in :func:`load_processor`.
    """
    processor, english_only = _load_processor(model_id, language, task)
    model = _from_pretrained(WhisperForConditionalGeneration, model_id)
    generation = model.generation_config
    generation.language = None if english_only else processor.tokenizer.language
    generation.task = None if english_only else processor.tokenizer.task
    generation.forced_decoder_ids = None
    return model, processor
