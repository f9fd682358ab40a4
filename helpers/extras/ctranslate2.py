"""The fine-tuned model where most people run Whisper: CTranslate2 (what faster-whisper loads).

:func:`export_ctranslate2` converts a saved Whisper folder (ours: ``OUTPUT/model``, a merged LoRA model
included) with ``ctranslate2.converters.TransformersConverter``, optionally quantising the weights, and
puts beside ``model.bin`` the files faster-whisper reads: ``tokenizer.json`` and
``preprocessor_config.json`` (transformers 5 saves the feature extractor inside ``processor_config.json``,
which faster-whisper does not read, so it is written out here).

:func:`transcribe_ct2` decodes greedily with ``ctranslate2.models.Whisper`` from the same log-mel features
(``helpers.collator.log_mel_batch``) and the same prompt tokens (``<|startoftranscript|>``, language, task,
``<|notimestamps|>``) as our evaluation's ``generate``, so its transcripts can be compared token for token.

``ctranslate2`` is imported inside the functions: nothing else in the package needs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer
from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

from helpers.collator import log_mel_batch
from helpers.runtime.errors import CourseError

# What TransformersConverter accepts; None keeps the checkpoint's own precision (float32 for ours).
QUANTIZATIONS = ("float16", "int8", "int8_float16", "int8_float32", "int8_bfloat16", "int16", "bfloat16", "float32")


def _ctranslate2():
    try:
        import ctranslate2
    except ImportError as error:
        raise CourseError("The CTranslate2 export needs ctranslate2, an extra: pip install "
                          "'whisper-course-helpers[ct2]' (pip install -e '.[ct2]' in a clone; notebook 06's "
                          "set-up cell installs it).") from error
    return ctranslate2


def export_ctranslate2(model_dir: str | Path, out_dir: str | Path, quantization: str | None = "float16") -> Path:
    """Convert the Whisper folder ``model_dir`` into a CTranslate2 folder ``out_dir`` (replaced if it exists).

    ``quantization``: ``"float16"`` (half the size; what faster-whisper's own conversions use), ``"int8"``
    (a quarter; fastest on a CPU), ``None`` for the checkpoint's precision (float32: the exact same
    arithmetic as transformers, up to kernel rounding). Returns ``out_dir``.
    """
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise CourseError(f"Unknown CTranslate2 quantization {quantization!r}; use one of {', '.join(QUANTIZATIONS)}.")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / "config.json").is_file():
        raise CourseError(f"{model_dir} holds no saved Whisper model (no config.json); train or save one first.")
    ctranslate2 = _ctranslate2()
    processor = WhisperProcessor.from_pretrained(str(model_dir))
    converter = ctranslate2.converters.TransformersConverter(str(model_dir))
    converter.convert(str(out_dir), quantization=quantization, force=True)
    processor.tokenizer.save_pretrained(str(out_dir))  # tokenizer.json (faster-whisper) and its config (ours)
    processor.feature_extractor.to_json_file(str(out_dir / "preprocessor_config.json"))
    return out_dir


class CT2Whisper:
    """A CTranslate2 Whisper folder, loaded once, that transcribes 16 kHz audio greedily in batches."""

    def __init__(self, ct2_dir: str | Path, device: str = "cpu", compute_type: str = "default",
                 threads: int | None = None):
        ctranslate2 = _ctranslate2()
        ct2_dir = Path(ct2_dir)
        if not (ct2_dir / "model.bin").is_file():
            raise CourseError(f"{ct2_dir} holds no CTranslate2 model (no model.bin); export one with "
                              "python -m helpers export-ct2.")
        self.model = ctranslate2.models.Whisper(str(ct2_dir), device=device, compute_type=compute_type,
                                                intra_threads=threads or torch.get_num_threads())
        self.tokenizer = WhisperTokenizer.from_pretrained(str(ct2_dir))
        self.extractor = WhisperFeatureExtractor.from_json_file(str(ct2_dir / "preprocessor_config.json"))

    def prompt(self, language: str | None, task: str | None) -> list[int]:
        """``<|startoftranscript|>`` [``<|language|>`` ``<|task|>``] ``<|notimestamps|>``, as our ``generate`` forces.

        English-only models take neither language nor task (``helpers.model.load_processor`` does the same).
        """
        tokens = ["<|startoftranscript|>"]
        if self.model.is_multilingual:
            code = TO_LANGUAGE_CODE.get(language.lower(), language.lower()) if language else None
            tokens += ([f"<|{code}|>"] if code else []) + [f"<|{task or 'transcribe'}|>"]
        tokens.append("<|notimestamps|>")
        return self.tokenizer.convert_tokens_to_ids(tokens)

    def generate_ids(self, audio: Sequence[np.ndarray], language: str | None = None, task: str | None = "transcribe",
                     max_length: int = 225) -> list[list[int]]:
        """Greedy token ids (prompt and end-of-text excluded) for each 16 kHz clip in ``audio``.

        ``max_length`` counts generated tokens, as ``generation_config.max_length`` does in our evaluation;
        CTranslate2's Whisper generates at most half its ``max_length`` (openai-whisper's ``sample_len``), hence
        the doubling. A multilingual model without ``language`` detects it per clip, as ``generate`` does.
        """
        ctranslate2 = _ctranslate2()
        features = ctranslate2.StorageView.from_array(
            np.ascontiguousarray(log_mel_batch(list(audio), self.extractor).numpy()))
        if self.model.is_multilingual and not language:
            detected = [found[0][0] for found in self.model.detect_language(features)]  # e.g. "<|en|>"
            prompts = [self.prompt(token.strip("<|>"), task) for token in detected]
        else:
            prompts = [self.prompt(language, task)] * len(audio)
        results = self.model.generate(features, prompts, beam_size=1, max_length=2 * max_length)
        return [result.sequences_ids[0] for result in results]

    def transcribe(self, audio: Sequence[np.ndarray], language: str | None = None, task: str | None = "transcribe",
                   max_length: int = 225, batch_size: int = 16) -> list[str]:
        """Transcripts of ``audio`` (16 kHz clips), ``batch_size`` clips per ``generate`` call."""
        texts: list[str] = []
        for start in range(0, len(audio), batch_size):
            ids = self.generate_ids(audio[start : start + batch_size], language, task, max_length)
            texts += [text.strip() for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return texts


def transcribe_ct2(ct2_dir: str | Path, audio_16k: np.ndarray | Sequence[np.ndarray], language: str | None = None,
                   task: str | None = "transcribe", max_length: int = 225,
                   compute_type: str = "default") -> str | list[str]:
    """Greedy transcript of one 16 kHz clip (a string) or of several (a list) with the CTranslate2 model in ``ct2_dir``.

    On a CUDA machine it runs on the GPU. Loading the model costs seconds: to transcribe many batches, keep
    a :class:`CT2Whisper`.
    """
    single = isinstance(audio_16k, np.ndarray) and audio_16k.ndim == 1
    clips = [audio_16k] if single else list(audio_16k)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    texts = CT2Whisper(ct2_dir, device=device, compute_type=compute_type).transcribe(clips, language, task, max_length)
    return texts[0] if single else texts
