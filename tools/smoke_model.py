"""The offline smoke model: a tiny random Whisper with Whisper's real vocabulary, for CI and quick runs.

The smoke model is a tiny randomly initialised ``WhisperForConditionalGeneration`` with Whisper's real
multilingual vocabulary (built from openai-whisper's ``multilingual.tiktoken``) and a generation config
like whisper-small's. It is saved as an ordinary folder (``SMOKE_MODEL_DIR``), so the course's code calls
the very same ``from_pretrained`` for it as for ``openai/whisper-small``. The tokenizer and generation
config builders serve :mod:`tools.pretrained_whisper` too. This is test and CI infrastructure, so it lives
here and not in the package a learner installs; ``scripts/setup.sh`` builds the model, and so do the test
suites when it is missing or outdated.

    python -m tools.smoke_model [--force]
"""

from __future__ import annotations

import importlib.util
import json
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
from transformers.models.whisper.tokenization_whisper import LANGUAGES

from helpers.config import RANDOM_INIT_MARK, SMOKE_MODEL_DIR
from helpers.model import ModelLoadError

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


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Build the offline smoke model (when missing or outdated).")
    parser.add_argument("--force", action="store_true", help="rebuild even if it is current")
    args = parser.parse_args(argv)
    print(f"Smoke model ready in {ensure_smoke_model(force=args.force)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
