"""WER/CER with jiwer, and a normaliser that keeps Brahmic, Thaana and Arabic-script words whole.

Test strings are real words. Sinhala's conjuncts are spelled with Unicode's own named sequences (yansaya,
rakaransaya, repaya: al-lakuna and ZERO WIDTH JOINER), so a typo in a literal cannot hide a missing joiner.
"""

import math
import unicodedata

import jiwer
import numpy as np
import pytest
from transformers.trainer_utils import EvalPrediction

from helpers.metrics import (
    alignment_report,
    basic_normalize,
    course_evaluate_wer,
    make_compute_metrics,
    normalize,
    scored_pairs,
    wer_scores,
)

ZWJ, ZWNJ = "\u200d", "\u200c"
YANSAYA = unicodedata.lookup("SINHALA CONSONANT SIGN YANSAYA")  # al-lakuna, ZWJ, YAYANNA
RAKARANSAYA = unicodedata.lookup("SINHALA CONSONANT SIGN RAKAARAANSAYA")  # al-lakuna, ZWJ, RAYANNA
REPAYA = unicodedata.lookup("SINHALA CONSONANT SIGN REPAYA")  # RAYANNA, al-lakuna, ZWJ

THAANA = "ދިވެހިރާއްޖޭގެ ރައްޔިތުން!"  # "the people of the Maldives": three sukuns (އް twice, ން)
SINHALA = "ආයුබෝවන්, ඔබට කොහොමද?"

# (text, words it has): words written with joiners, conjuncts and combining marks, and punctuation.
WHOLE_WORDS = [
    # ශ්‍රී ලංකාව, Sri Lanka (rakaransaya); ද්‍රව්‍ය, substance (rakaransaya and yansaya)
    pytest.param(f"ශ{RAKARANSAYA}ී ලංකාව.", 2, id="sri-lanka"),
    pytest.param(f"ද{RAKARANSAYA}ව{YANSAYA}", 1, id="dravya"),
    # ක්‍ෂ, the touching ka + ssa of ක්‍ෂණය (moment)
    pytest.param(f"ක්{ZWJ}ෂණය", 1, id="touching-kssa"),
    # කාර්‍ය (task), ධර්‍ම (dharma) with repaya; වාක්‍ය (sentence), මනුෂ්‍යයෝ (humans) with yansaya
    pytest.param(f"කා{REPAYA}ය!", 1, id="karya-repaya"),
    pytest.param(f"ධ{REPAYA}ම, වාක{YANSAYA}", 2, id="dharma-vakya"),
    pytest.param(f"මනුෂ{YANSAYA}යෝ නිදහස්ව", 2, id="manushyayo"),
    # Dhivehi in Thaana, with the Arabic comma and question mark it uses
    pytest.param("ދިވެހިރާއްޖޭގެ ރައްޔިތުން، ކިހިނެއް؟", 3, id="thaana"),
    # Persian: "I want to go", "I don't know", "I read the books": ZWNJ inside each verb or plural
    pytest.param(f"می{ZWNJ}خواهم بروم.", 2, id="persian-mikhaham"),
    pytest.param(f"نمی{ZWNJ}دانم؟", 1, id="persian-nemidanam"),
    pytest.param(f"کتاب{ZWNJ}ها را خواندم.", 3, id="persian-ketabha"),
    pytest.param("یہ ٹھیک ہے۔", 3, id="urdu"),  # "this is fine", with the Urdu full stop
    # Hindi conjuncts (क्ष, त्र, द्व), a nukta and the danda; then Devanagari's half form (ZWJ) and
    # explicit virama (ZWNJ): two spellings of one cluster, each one word
    pytest.param("क्षत्रिय द्वार पर खड़ा है।", 5, id="hindi"),
    pytest.param(f"क्{ZWJ}ष क्{ZWNJ}ष", 2, id="devanagari-joiners"),
]


def marks_and_joiners(text: str) -> list[str]:
    return [ch for ch in text if unicodedata.category(ch)[0] == "M" or ch in (ZWJ, ZWNJ)]


@pytest.mark.parametrize("text, words", WHOLE_WORDS)
def test_normalize_keeps_every_word_whole_with_its_marks_and_joiners(text, words):
    cleaned = normalize(text)
    assert len(cleaned.split()) == words, cleaned
    # Every combining mark and joiner survives, in order; only punctuation went.
    assert marks_and_joiners(cleaned) == marks_and_joiners(unicodedata.normalize("NFC", text))
    assert all(unicodedata.category(ch)[0] in "LMN" or ch in (ZWJ, ZWNJ, " ") for ch in cleaned)
    assert normalize(cleaned) == cleaned  # idempotent


def test_sri_lanka_is_two_words_not_three():
    # Treating ZWJ as a separator (any category-C character) gave "ශ් රී ලංකාව" and "ද් රව් ය".
    assert normalize(f"ශ{RAKARANSAYA}ී ලංකාව") == f"ශ{RAKARANSAYA}ී ලංකාව"
    assert normalize(f"ද{RAKARANSAYA}ව{YANSAYA}") == f"ද{RAKARANSAYA}ව{YANSAYA}"
    # The joiner is part of the spelling: without it the word is a different (non-conjunct) spelling.
    assert normalize(f"ශ{RAKARANSAYA}ී") != normalize("ශ්රී")


def test_every_thaana_fili_and_the_sukun_are_kept():
    fili = [chr(cp) for cp in range(0x07A6, 0x07B1)]  # abafili ... oaboafili, and sukun (U+07B0)
    assert unicodedata.name(fili[-1]) == "THAANA SUKUN"
    syllables = " ".join("ހ" + sign for sign in fili)  # ހަ ހާ ހި ... ހް: how Thaana is recited
    assert normalize(syllables + ".") == syllables
    assert len(normalize(syllables).split()) == len(fili) == 11
    sentence = normalize(THAANA)
    assert sentence == "ދިވެހިރާއްޖޭގެ ރައްޔިތުން" and sentence.count("\u07b0") == 3


def test_normalize_drops_punctuation_symbols_and_case_only():
    assert normalize("Hello, World!  It's  FINE.") == "hello world its fine"  # an apostrophe joins a word
    assert normalize("«Ça va?» — 'oui'…") == "ça va oui"
    assert normalize("100% of $5 = 5+0 🙂") == "100 of 5 5 0"
    assert normalize(SINHALA) == "ආයුබෝවන් ඔබට කොහොමද"
    assert normalize("ΣΟΦΙΑ İstanbul") == "σοφια i\u0307stanbul"
    assert normalize("!!! ... ?") == ""


def test_invisible_format_characters_do_not_split_words_but_zero_width_space_does():
    assert normalize("co\u00adop\u200eerate\ufeff") == "cooperate"  # soft hyphen, LRM, byte-order mark
    assert normalize("سـلام") == "سلام"  # tatweel only stretches the word
    assert normalize("ab\u200bcd\tef\ngh") == "ab cd ef gh"
    assert normalize(f"word {ZWJ} . {ZWNJ}") == "word"  # joiners left alone by punctuation are no word


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
    assert scores["wer_words"] == pytest.approx(100 * 1 / 9, abs=0.01)
    assert scores["n"] == 2
    # a one-letter slip in a Sinhala word is one word error for us, but several pieces for the basic normaliser
    slip = wer_scores(["ආයුබෝවන් ඔබට කොහොමද"], ["ආයුබෝවන් ඔබට කොහොමදා"])
    assert slip["wer_words"] == pytest.approx(100 / 3, abs=0.01)
    assert slip["wer"] != slip["wer_words"]


def test_wer_counts_a_conjunct_word_as_one_word():
    sri_lanka = f"ශ{RAKARANSAYA}ී ලංකාව"
    assert wer_scores([sri_lanka], [sri_lanka + "."])["wer_words"] == 0.0
    # The wrong vowel on ලංකාව is one word of two wrong, not one of three pieces.
    assert wer_scores([f"ශ{RAKARANSAYA}ී ලංකාවි"], [sri_lanka])["wer_words"] == 50.0
    # Dropping the joiner changes the first word's spelling: one word of two.
    assert wer_scores(["ශ්රී ලංකාව"], [sri_lanka])["wer_words"] == 50.0


def test_cer_uses_our_normaliser_and_counts_code_points():
    sri_lanka = f"ශ{RAKARANSAYA}ී ලංකාව"
    assert len(normalize(sri_lanka)) == 11  # ශ ් ZWJ ර ී, the space, ල ං ක ා ව
    # Case and punctuation are no character errors ...
    assert wer_scores(["hello world"], ["Hello, World!"])["cer_words"] == 0.0
    assert wer_scores([sri_lanka], [sri_lanka + "?"])["cer_words"] == 0.0
    # ... a missing joiner is one of the reference's 11 code points, a missing space one of "ab cd"'s 5 ...
    assert wer_scores(["ශ්රී ලංකාව"], [sri_lanka])["cer_words"] == pytest.approx(100 / 11, abs=0.01)
    assert wer_scores(["abcd"], ["ab cd"])["cer_words"] == 20.0
    # ... and a wrong Thaana vowel sign (ibifili for abafili) one substitution among the word's code points.
    assert wer_scores(["ރިއްޔިތުން"], ["ރައްޔިތުން"])["cer_words"] == pytest.approx(100 / len("ރައްޔިތުން"), abs=0.01)


def test_n_counts_the_pairs_scored_and_empty_references_are_left_out():
    # The second reference has no word after normalising and the third is empty: neither is scored, so
    # their predictions are not counted as insertions anywhere.
    scores = wer_scores(["a b", "anything", "more"], ["a b", "!!!", ""])
    assert scores == {"wer_ortho": 0.0, "wer_words": 0.0, "wer": 0.0, "cer_words": 0.0, "n": 1}
    assert scored_pairs(["a b", "anything", "more"], ["a b", "!!!", ""]) == [0]
    nothing = wer_scores(["anything"], ["!!!"])
    assert nothing["n"] == 0 and all(math.isnan(nothing[key]) for key in ("wer_ortho", "wer_words", "wer", "cer_words"))
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        wer_scores(["a", "b"], ["a"])


def test_a_reference_only_whisper_s_normaliser_empties_is_still_scored_by_all_four():
    # BasicTextNormalizer drops text in brackets: "(hello)" has no word for it, but one for us. The pair is
    # scored (n = 2) and its prediction counts as an insertion in wer: 1 error over 2 words.
    scores = wer_scores(["hello", "a b"], ["(hello)", "a b"])
    assert scores["n"] == 2 and scores["wer_words"] == 0.0 and scores["wer"] == 50.0


def test_compute_metrics_maps_minus_100_back_to_padding(processor):
    tok = processor.tokenizer
    ref = tok("ඔබට කොහොමද").input_ids
    labels = np.array([ref[1:] + [-100] * 3])  # as the collator hands them over: start stripped, -100 padding
    preds = np.array([ref + [tok.pad_token_id] * 2])
    scores = make_compute_metrics(tok)(EvalPrediction(predictions=preds, label_ids=labels))
    assert scores["wer_words"] == 0.0 and scores["wer_ortho"] == 0.0 and scores["n"] == 1


def test_compute_metrics_scores_as_the_course_writes_it_and_adds_ours(processor):
    """The course's two scores as its compute_metrics computes them (wer drops the pairs whose reference
    BasicTextNormalizer empties, here "(laughs)"), then ours, which keep that pair: it has a word for us."""
    tok = processor.tokenizer
    references, predictions = ["Hello world", "(laughs)"], ["hello word", "ha"]
    width = max(len(tok(text).input_ids) for text in references + predictions)

    def padded(text, pad):
        ids = tok(text).input_ids
        return ids + [pad] * (width - len(ids))

    labels = np.array([padded(text, -100)[1:] for text in references])  # start stripped, -100 padding
    preds = np.array([padded(text, -100) for text in predictions])  # generate's rows padded with -100 too
    scores = make_compute_metrics(tok)(EvalPrediction(predictions=preds, label_ids=labels))
    assert scores["wer_ortho"] == pytest.approx(100 * 3 / 3)  # Hello, world, (laughs): all three wrong
    assert scores["wer"] == pytest.approx(100 * 1 / 2)  # only "hello world" is left to score: "word" is wrong
    assert scores["wer_words"] == pytest.approx(100 * 2 / 3) and scores["n"] == 2  # word, laughs wrong
    assert scores["cer_words"] == pytest.approx(100 * jiwer.cer(["hello world", "laughs"], ["hello word", "ha"]))


def test_alignment_report_shows_word_level_errors():
    text = alignment_report(["the cat sat", "x"], ["the dog sat", "..."])
    assert "REF:" in text and "HYP:" in text and "dog" in text and "S" in text


# The arithmetic of evaluate's "wer" script (evaluate >= 0.4.4): per pair, jiwer's process_words; the
# sums of errors and of reference words over all pairs. Written here so the test runs offline.
LOCAL_WER_MODULE = '''
import datasets
import evaluate
import jiwer


class LocalWER(evaluate.Metric):
    def _info(self):
        features = datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")})
        return evaluate.MetricInfo(description="WER", citation="", inputs_description="", features=features)

    def _compute(self, predictions=None, references=None):
        errors = words = 0
        for prediction, reference in zip(predictions, references):
            out = jiwer.process_words(reference, prediction)
            errors += out.substitutions + out.deletions + out.insertions
            words += out.substitutions + out.deletions + out.hits
        return errors / words
'''

COURSE_PAIRS = (
    ["ආයුබෝවන් ඔබට කොහොමද", "The cat sat on a mat.", "ދިވެހިރާއްޖެ", "noise"],
    ["ආයුබෝවන්, ඔබට කොහොමදා?", "the cat sat on the mat", "ދިވެހިރާއްޖޭގެ ރައްޔިތުން", "..."],
)


def test_course_evaluate_wer_scores_what_wer_scores(tmp_path):
    pytest.importorskip("evaluate")
    script = tmp_path / "local_wer" / "local_wer.py"
    script.parent.mkdir()
    script.write_text(LOCAL_WER_MODULE, encoding="utf-8")
    predictions, references = COURSE_PAIRS
    score, note = course_evaluate_wer(predictions, references, path=str(script))
    expected = wer_scores(predictions, references)
    assert score == expected["wer"] != expected["wer_words"], note
    assert f"the {expected['n']} pairs" in note and expected["n"] == 3


def test_course_evaluate_wer_offline_says_why_it_was_skipped(monkeypatch):
    evaluate = pytest.importorskip("evaluate")
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
    score, note = course_evaluate_wer(*COURSE_PAIRS)
    assert score is None
    assert note.startswith("Skipped: offline") and "Hub" in note and "\n" not in note
    assert evaluate.config.HF_EVALUATE_OFFLINE is True  # left as it was


def hub_allowed() -> bool:
    from helpers.services.hub import hub_reachable

    return hub_reachable()  # offline mode on counts as unreachable


@pytest.mark.hub
@pytest.mark.skipif(not hub_allowed(), reason="needs the Hugging Face Hub (HF_HUB_OFFLINE=0): evaluate.load "
                    "fetches its WER script from there")
def test_course_evaluate_wer_from_the_hub_equals_wer():
    predictions, references = COURSE_PAIRS
    score, note = course_evaluate_wer(predictions, references)
    assert score == wer_scores(predictions, references)["wer"], note


def test_a_score_that_leaves_clips_out_says_how_many_and_why(processor, prepared, capsys):
    from helpers.evaluation import evaluate_model
    from helpers.metrics import left_out_note
    from helpers.model import load_model_and_processor
    from helpers.config import get_config

    assert left_out_note(["a b", "!!!", ""]) == ("2 of 3 clips are left out of every score: their reference "
                                                  "transcript has no words (empty, or only punctuation), so no "
                                                  "error rate is defined for them.")
    assert left_out_note(["a b"]) is None
    _, done, _ = prepared
    test = done["test"].select(range(2))
    test = test.map(lambda row, i: {"sentence": "?!... —" if i == 0 else row["sentence"]}, with_indices=True)
    config = get_config("smoke")
    model, _ = load_model_and_processor(config.model, config.language, config.task)
    result = evaluate_model(model, processor, test, batch_size=2, max_length=4)
    assert result["scores"]["n"] == 1
    assert "1 of 2 clips are left out of every score" in capsys.readouterr().out
