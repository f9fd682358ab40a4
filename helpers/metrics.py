"""Word and character error rates, orthographic and normalised, with jiwer.

Whisper's ``BasicTextNormalizer`` (the course's normaliser) replaces every Unicode mark with a space.
Thaana and Sinhala write vowels as combining marks, so it cuts every word into pieces and its "WER" counts
fragments, not words. :func:`normalize` lower-cases and removes punctuation but keeps marks and the
joiners that are part of a word's spelling; we report both. The names follow the course: ``wer_ortho`` (raw
text) and ``wer`` (after ``BasicTextNormalizer``) are its two metrics; ours, after :func:`normalize`, are
``wer_words`` and ``cer_words`` (the words kept whole). ``wer_words`` picks the best checkpoint
(:data:`CHECKPOINT_METRIC`); ``docs/metrics.md`` says why.

Our scores call jiwer directly rather than the course's ``evaluate.load("wer")``: that call fetches a
script from the Hugging Face Hub (so it fails offline), and the script does the same sums with jiwer's
``process_words`` (evaluate >= 0.4.4). :func:`course_evaluate_wer` makes the course's call to show it.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Callable

import evaluate
import jiwer
from huggingface_hub import constants
from packaging.version import Version
from transformers.models.whisper.english_normalizer import BasicTextNormalizer

from helpers.services.hub import hub_reachable

_basic = BasicTextNormalizer()

# The error rates wer_scores returns, in the order tables and plots show them (``n`` comes beside them).
SCORE_NAMES = ("wer_ortho", "wer", "wer_words", "cer_words")
# The one the trainer keeps the best checkpoint by (metric_for_best_model): words are whole in it, so a
# checkpoint that spells more words right wins, not one that gets more vowel-mark fragments right.
CHECKPOINT_METRIC = "wer_words"

# Format characters (category Cf) that belong to a word's spelling: ZERO WIDTH NON-JOINER and ZERO WIDTH
# JOINER pick a conjunct, a ligature or a letter's shape in Brahmic scripts (Sinhala's yansaya, rakaransaya,
# repaya and touching letters are written with ZWJ) and in Arabic-script Persian and Urdu (the ZWNJ of
# می‌خواهم), and MONGOLIAN VOWEL SEPARATOR sits inside Mongolian words.
WORD_JOINERS = frozenset("\u200c\u200d\u180e")
# ZERO WIDTH SPACE is a format character too, but its job is to mark a word boundary without a visible
# space (Thai, Khmer, Myanmar): it separates words.
_INVISIBLE_SEPARATORS = frozenset("\u200b")
# Apostrophes join the parts of one word ("it's", "don't"): between two letters they are removed, not
# turned into a space, so the word stays one word.
_APOSTROPHES = frozenset("'\u2019")
# ARABIC TATWEEL (category Lm) only stretches a word to justify a line: a decoration, removed.
_DECORATIONS = frozenset("\u0640")


def _is_word_character(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LMN" or ch in WORD_JOINERS


def normalize(text: str) -> str:
    """Lower-case; remove punctuation, symbols and invisible controls; keep every letter, mark and joiner.

    Unicode categories, character by character (after NFC composition and lower-casing):

    * kept: letters (L*), digits and other numbers (N*), combining marks (Mn, Mc, Me: the vowel signs,
      viramas/al-lakuna, Thaana's fili and sukun, nuktas; they are part of the letter they sit on), the
      joiners in :data:`WORD_JOINERS` (Cf; ZWJ and ZWNJ change which word is written, see above), and
      private-use or unassigned code points (Co, Cn: a letter from a newer Unicode version than Python's
      tables is still a letter);
    * become a space, since they separate words: punctuation (P*), symbols (S*: currency, maths, emoji,
      spacing accents), spaces and line or paragraph separators (Z*), control characters (Cc: tab,
      newline) and ZERO WIDTH SPACE;
    * removed without a space, since they sit inside a word and change nothing a listener hears: the other
      format characters (Cf: soft hyphen, left-to-right and right-to-left marks and embeddings, word joiner,
      byte-order mark), an apostrophe between two letters, ARABIC TATWEEL, and lone surrogates (Cs).

    So "ශ්‍රී ලංකාව." is two words with its ZWJ intact, "It's FINE!" is "its fine", and spaces are squeezed.
    A "word" made of joiners alone (left over from removed punctuation) is dropped.
    """
    text = unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).lower())
    out = []
    for i, ch in enumerate(text):
        category = unicodedata.category(ch)
        if ch in WORD_JOINERS:
            out.append(ch)
        elif ch in _APOSTROPHES and 0 < i < len(text) - 1 and _is_word_character(text[i - 1]) \
                and _is_word_character(text[i + 1]):
            continue
        elif ch in _INVISIBLE_SEPARATORS or category[0] in "PSZ" or category == "Cc":
            out.append(" ")
        elif category in ("Cf", "Cs") or ch in _DECORATIONS:
            continue
        else:
            out.append(ch)
    words = "".join(out).split()
    return " ".join(word for word in words if not set(word) <= WORD_JOINERS)


def basic_normalize(text: str) -> str:
    """Whisper's ``BasicTextNormalizer``, as the course uses it (splits words at combining marks)."""
    return _basic(text)


def scored_pairs(predictions: list[str], references: list[str]) -> list[int]:
    """Indices of the (prediction, reference) pairs that are scored: those whose reference has a word left
    after :func:`normalize`.

    A pair whose reference is empty (or only punctuation) has no word to get right or wrong, so every
    error rate would be undefined for it on its own; like the course (which drops references that its
    normaliser leaves empty), we leave such pairs out of all four scores.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    return [i for i, reference in enumerate(references) if normalize(reference)]


def left_out_note(references: list[str]) -> str | None:
    """One sentence when :func:`scored_pairs` leaves clips out of the scores: how many, and why; else ``None``."""
    left = sum(1 for reference in references if not normalize(reference))
    if not left:
        return None
    return (f"{left} of {len(references)} clips are left out of every score: their reference transcript has no "
            "words (empty, or only punctuation), so no error rate is defined for them.")


class ErrorRate:
    """What the course's ``metric = evaluate.load("wer")`` gives: ``metric.compute(predictions=..., references=...)``,
    a fraction, corpus-level (all errors over all reference words), with jiwer directly (see the module's note).

    A reference that a metric's own normaliser empties (Whisper's can, e.g. "(laughs)") adds its prediction
    as insertions (jiwer >= 4); with no reference word (or character) at all the rate is undefined: NaN.
    """

    def __init__(self, measure: Callable[[list[str], list[str]], float]):
        self.measure = measure

    def compute(self, predictions: list[str], references: list[str]) -> float:
        if not any(reference.strip() for reference in references):
            return float("nan")
        return float(self.measure(list(references), list(predictions)))


metric = ErrorRate(jiwer.wer)  # the course's evaluate.load("wer")
cer_metric = ErrorRate(jiwer.cer)  # evaluate.load("cer"), for our cer_words


def _rate(error_rate: ErrorRate, references: list[str], predictions: list[str]) -> float:
    return round(100 * error_rate.compute(predictions=predictions, references=references), 2)


def wer_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Error rates in percent over the scored pairs (see :func:`scored_pairs`), and ``n``, how many there are.

    * ``wer_ortho``: word error rate on the raw text (case and punctuation count as errors), the course's;
    * ``wer``: word error rate after Whisper's ``BasicTextNormalizer``, the course's normalised WER;
    * ``wer_words``: word error rate after :func:`normalize` (case and punctuation ignored, words kept whole);
    * ``cer_words``: character error rate after :func:`normalize`: edit distance over Unicode code points (NFC),
      each combining mark and joiner one character and the single space between words included, divided
      by the references' code points.

    All four count the same ``n`` pairs; with none (every reference empty) each rate is NaN.
    """
    keep = scored_pairs(predictions, references)
    refs, hyps = [references[i] for i in keep], [predictions[i] for i in keep]
    norm_refs, norm_hyps = [normalize(t) for t in refs], [normalize(t) for t in hyps]
    return {
        "wer_ortho": _rate(metric, refs, hyps),
        "wer": _rate(metric, [basic_normalize(t) for t in refs], [basic_normalize(t) for t in hyps]),
        "wer_words": _rate(metric, norm_refs, norm_hyps),
        "cer_words": _rate(cer_metric, norm_refs, norm_hyps),
        "n": len(keep),
    }


def course_evaluate_wer(predictions: list[str], references: list[str], path: str = "wer") -> tuple[float | None, str]:
    """The course's ``100 * evaluate.load("wer").compute(...)`` on the pairs and text ``wer`` scores.

    Returns ``(score, sentence)``: the score rounded as ours are, or ``None`` and one sentence saying why it
    could not be computed (an ``evaluate`` too old for jiwer 4, or no Hub to fetch the script from:
    ``evaluate.load`` downloads ``wer.py`` for the installed version, or reads it from its cache).
    ``path`` goes to ``evaluate.load`` (a local script works offline).
    """
    keep = scored_pairs(predictions, references)
    refs = [basic_normalize(references[i]) for i in keep]
    hyps = [basic_normalize(predictions[i]) for i in keep]
    if Version(evaluate.__version__) < Version("0.4.4"):
        return None, (f"Skipped: evaluate {evaluate.__version__}'s WER script calls jiwer's compute_measures, "
                      "which jiwer 4 removed; evaluate 0.4.4 and later use process_words.")
    if not refs:
        return None, "Skipped: no reference has a word to score."
    local = Path(path).is_file()
    offline = not local and (_offline_mode(evaluate) or not hub_reachable())
    was_offline = evaluate.config.HF_EVALUATE_OFFLINE
    # Offline, evaluate goes straight to its cache instead of retrying the Hub.
    evaluate.config.HF_EVALUATE_OFFLINE = was_offline or offline
    try:
        result = evaluate.load(path).compute(predictions=hyps, references=refs)
        score = 100 * (result["wer"] if isinstance(result, dict) else result)  # some script versions return a dict
    except Exception as error:  # network, cache, script: the cell must say why and go on
        if offline:
            return None, ("Skipped: offline, and evaluate.load fetches its WER script from the Hugging Face Hub "
                          "(it is not in the local cache); our scores use jiwer directly, the same sums.")
        said = str(error).strip().splitlines()
        return None, f"Skipped: evaluate.load({path!r}) failed ({type(error).__name__}: {said[0] if said else ''})."
    finally:
        evaluate.config.HF_EVALUATE_OFFLINE = was_offline
    return round(score, 2), f"evaluate {evaluate.__version__}'s WER script, on the {len(refs)} pairs wer scores"


def _offline_mode(evaluate) -> bool:
    return bool(evaluate.config.HF_EVALUATE_OFFLINE or constants.HF_HUB_OFFLINE)


def make_compute_metrics(tokenizer) -> Callable:
    """The course's ``compute_metrics`` for ``Seq2SeqTrainer(predict_with_generate=True)``, with our two scores.

    Line for line the course's (``wer_ortho`` on the raw text; ``wer`` after ``BasicTextNormalizer``, over
    the pairs whose normalised reference is not empty), then ``wer_words`` and ``cer_words`` after
    :func:`normalize`, over the pairs :func:`scored_pairs` keeps; ``n`` is how many clips were decoded.
    """
    normalizer = BasicTextNormalizer()

    def compute_metrics(pred) -> dict[str, float]:
        pred_ids = pred.predictions
        label_ids = pred.label_ids

        # replace -100 with the pad_token_id
        label_ids[label_ids == -100] = tokenizer.pad_token_id
        # (ours) generated ids are padded with -100 too, when a batch's rows end at different lengths
        pred_ids[pred_ids < 0] = tokenizer.pad_token_id

        # we do not want to group tokens when computing the metrics
        pred_str = tokenizer.batch_decode(pred_ids, skip_special_tokens=True)
        label_str = tokenizer.batch_decode(label_ids, skip_special_tokens=True)

        # compute orthographic wer
        wer_ortho = 100 * metric.compute(predictions=pred_str, references=label_str)

        # compute normalised WER
        pred_str_norm = [normalizer(pred) for pred in pred_str]
        label_str_norm = [normalizer(label) for label in label_str]
        # filtering step to only evaluate the samples that correspond to non-zero references:
        pred_str_norm = [pred_str_norm[i] for i in range(len(pred_str_norm)) if len(label_str_norm[i]) > 0]
        label_str_norm = [label_str_norm[i] for i in range(len(label_str_norm)) if len(label_str_norm[i]) > 0]

        wer = 100 * metric.compute(predictions=pred_str_norm, references=label_str_norm)

        # ours: after our normaliser, which keeps vowel marks, so words stay whole (see helpers.metrics)
        keep = scored_pairs(pred_str, label_str)
        pred_str_words = [normalize(pred_str[i]) for i in keep]
        label_str_words = [normalize(label_str[i]) for i in keep]
        wer_words = 100 * metric.compute(predictions=pred_str_words, references=label_str_words)
        cer_words = 100 * cer_metric.compute(predictions=pred_str_words, references=label_str_words)

        return {"wer_ortho": wer_ortho, "wer": wer, "wer_words": wer_words, "cer_words": cer_words, "n": len(pred_str)}

    return compute_metrics


def alignment_report(predictions: list[str], references: list[str], worst: int = 3) -> str:
    """jiwer's word-level alignment of the ``worst`` examples by ``wer_words``, for reading errors."""
    scored = []
    for i in scored_pairs(predictions, references):
        ref_n, hyp_n = normalize(references[i]), normalize(predictions[i])
        scored.append((jiwer.wer(ref_n, hyp_n), ref_n, hyp_n))
    scored.sort(key=lambda item: item[0], reverse=True)
    if not scored:
        return "(no references to align)"
    _, refs, hyps = zip(*scored[:worst])
    return jiwer.visualize_alignment(jiwer.process_words(list(refs), list(hyps)), show_measures=False)
