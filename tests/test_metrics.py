"""WER/CER with jiwer, and why our normaliser keeps the combining marks that Thaana and Sinhala need."""

import math

import numpy as np
import pytest
from transformers.trainer_utils import EvalPrediction

from helpers.metrics import alignment_report, basic_normalize, make_compute_metrics, normalize, wer_scores

THAANA = "ދިވެހިރާއްޖޭގެ ރައްޔިތުން!"  # "the people of the Maldives"
SINHALA = "ආයුබෝවන්, ඔබට කොහොමද?"


def test_normalize_keeps_marks_and_drops_punctuation():
    assert normalize(THAANA) == "ދިވެހިރާއްޖޭގެ ރައްޔިތުން"
    assert normalize(SINHALA) == "ආයුබෝවන් ඔබට කොහොමද"
    assert normalize("Hello, World!  It's  FINE.") == "hello world it s fine"
    assert len(normalize(THAANA).split()) == 2


def test_basic_normalizer_cuts_thaana_and_sinhala_words_apart():
    # Every vowel sign is a Unicode mark (category M), and BasicTextNormalizer turns marks into spaces.
    assert len(basic_normalize(THAANA).split()) > 2 * len(normalize(THAANA).split())
    assert len(basic_normalize(SINHALA).split()) > 2 * len(normalize(SINHALA).split())
    assert "ދިވެހިރާއްޖޭގެ" not in basic_normalize(THAANA)


def test_wer_scores_on_known_errors():
    references = ["ආයුබෝවන්, ඔබට කොහොමද?", "the cat sat on the mat"]
    predictions = ["ආයුබෝවන් ඔබට කොහොමද", "The cat sat on a mat."]
    scores = wer_scores(predictions, references)
    # orthographic: "ආයුබෝවන්," "කොහොමද?" differ (2/3) + "The" "a" "mat." (3/6): 5 errors in 9 words
    assert scores["wer_ortho"] == pytest.approx(100 * 5 / 9, abs=0.01)
    # normalised: only "the"->"a" remains: 1 error in 9 words
    assert scores["wer"] == pytest.approx(100 * 1 / 9, abs=0.01)
    assert scores["n"] == 2
    assert 0 < scores["cer"] < scores["wer"]
    # a one-letter slip in a Sinhala word is one word error for us, but several pieces for the basic normaliser
    slip = wer_scores(["ආයුබෝවන් ඔබට කොහොමද"], ["ආයුබෝවන් ඔබට කොහොමදා"])
    assert slip["wer"] == pytest.approx(100 / 3, abs=0.01)
    assert slip["wer_basic"] != slip["wer"]


def test_perfect_and_empty_references():
    assert wer_scores(["a b"], ["a b"])["wer"] == 0.0
    scores = wer_scores(["anything"], ["!!!"])  # nothing left after normalising: not scored
    assert math.isnan(scores["wer"]) and scores["wer_ortho"] == 100.0


def test_compute_metrics_maps_minus_100_back_to_padding(processor):
    tok = processor.tokenizer
    ref = tok("ඔබට කොහොමද").input_ids
    labels = np.array([ref[1:] + [-100] * 3])  # as the collator hands them over: start stripped, -100 padding
    preds = np.array([ref + [tok.pad_token_id] * 2])
    scores = make_compute_metrics(tok)(EvalPrediction(predictions=preds, label_ids=labels))
    assert scores["wer"] == 0.0 and scores["wer_ortho"] == 0.0


def test_alignment_report_shows_word_level_errors():
    text = alignment_report(["the cat sat"], ["the dog sat"])
    assert "REF:" in text and "HYP:" in text and "dog" in text and "S" in text
