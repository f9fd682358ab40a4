"""Word and character error rates, orthographic and normalised, with jiwer.

Whisper's ``BasicTextNormalizer`` (the course's normaliser) replaces every Unicode mark with a space.
Thaana and Sinhala write vowels as combining marks, so it cuts every word into pieces and its "WER" counts
fragments, not words. ``normalize`` lower-cases and removes punctuation but keeps marks; we report both.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable

import jiwer
import numpy as np
from transformers.models.whisper.english_normalizer import BasicTextNormalizer

_basic = BasicTextNormalizer()


def normalize(text: str) -> str:
    """Lower-case, drop punctuation and symbols, keep letters, digits and combining marks, squeeze spaces."""
    text = unicodedata.normalize("NFC", text).lower()
    kept = (" " if unicodedata.category(ch)[0] in "PSZC" else ch for ch in text)
    return re.sub(r"\s+", " ", "".join(kept)).strip()


def basic_normalize(text: str) -> str:
    """Whisper's ``BasicTextNormalizer``, as the course uses it (splits words at combining marks)."""
    return _basic(text)


def _rate(measure: Callable, references: list[str], predictions: list[str]) -> float:
    # jiwer refuses empty references; like the course, score only the pairs with a reference left.
    pairs = [(r, p) for r, p in zip(references, predictions) if r.strip()]
    if not pairs:
        return float("nan")
    refs, hyps = zip(*pairs)
    return round(100 * measure(list(refs), list(hyps)), 2)


def wer_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """``wer_ortho`` (raw text), ``wer`` (our normaliser), ``wer_basic`` (course's), ``cer``: percentages."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    norm_refs, norm_hyps = [normalize(t) for t in references], [normalize(t) for t in predictions]
    return {
        "wer_ortho": _rate(jiwer.wer, references, predictions),
        "wer": _rate(jiwer.wer, norm_refs, norm_hyps),
        "wer_basic": _rate(jiwer.wer, [basic_normalize(t) for t in references], [basic_normalize(t) for t in predictions]),
        "cer": _rate(jiwer.cer, norm_refs, norm_hyps),
        "n": len(references),
    }


def make_compute_metrics(tokenizer) -> Callable:
    """A ``compute_metrics`` for ``Seq2SeqTrainer(predict_with_generate=True)``: decodes and scores."""

    def compute_metrics(prediction) -> dict[str, float]:
        pred_ids = np.where(prediction.predictions < 0, tokenizer.pad_token_id, prediction.predictions)
        label_ids = np.where(prediction.label_ids == -100, tokenizer.pad_token_id, prediction.label_ids)
        predictions = tokenizer.batch_decode(pred_ids, skip_special_tokens=True)
        references = tokenizer.batch_decode(label_ids, skip_special_tokens=True)
        return wer_scores(predictions, references)

    return compute_metrics


def alignment_report(predictions: list[str], references: list[str], worst: int = 3) -> str:
    """jiwer's word-level alignment of the ``worst`` examples by normalised WER, for reading errors."""
    scored = []
    for hyp, ref in zip(predictions, references):
        ref_n, hyp_n = normalize(ref), normalize(hyp)
        if ref_n:
            scored.append((jiwer.wer(ref_n, hyp_n), ref_n, hyp_n))
    scored.sort(key=lambda item: item[0], reverse=True)
    if not scored:
        return "(no references to align)"
    _, refs, hyps = zip(*scored[:worst])
    return jiwer.visualize_alignment(jiwer.process_words(list(refs), list(hyps)), show_measures=False)
