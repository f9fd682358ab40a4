"""The offline tokenizer is Whisper's real one: ids equal openai-whisper's, and it saves like a Hub one."""

import pytest
from transformers import WhisperProcessor

from tools.smoke_model import build_whisper_tokenizer, whisper_generation_config

TEXTS = {
    "english": "Hello world, this is a test of Whisper's tokenizer!",
    "sinhala": "ආයුබෝවන්, ඔබට කොහොමද? මම ගෙදර යනවා.",
    "thaana": "ދިވެހިރާއްޖޭގެ ރައްޔިތުން. މިއީ ތާނަ އަކުރުތަކެވެ",
    "mixed": "  numbers 12345 and symbols ♪ (music) «quotes» ",
}


@pytest.fixture(scope="module")
def tokenizer():
    return build_whisper_tokenizer()


def test_vocabulary_size_and_special_ids(tokenizer):
    ids = tokenizer.convert_tokens_to_ids
    assert len(tokenizer) == 51865  # whisper-small's vocab_size
    assert ids("<|endoftext|>") == 50257
    assert ids("<|startoftranscript|>") == 50258
    assert ids("<|en|>") == 50259
    assert ids("<|si|>") == 50322
    assert ids("<|translate|>") == 50358
    assert ids("<|transcribe|>") == 50359
    assert ids("<|notimestamps|>") == 50363
    assert ids("<|0.00|>") == 50364 and ids("<|30.00|>") == 51864


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_text_ids_match_openai_whisper(tokenizer, reference_tokenizer, name):
    text = TEXTS[name]
    ours = tokenizer.encode(text, add_special_tokens=False)
    assert ours == reference_tokenizer.encode(text)
    assert tokenizer.decode(ours) == text


@pytest.mark.parametrize("language", ["sinhala", "english", "sinhalese"])
def test_prefix_tokens_match_openai_whisper(tokenizer, openai_whisper, language):
    code = {"sinhala": "si", "sinhalese": "si", "english": "en"}[language]
    reference = openai_whisper("tokenizer").get_tokenizer(
        multilingual=True, num_languages=99, language=code, task="transcribe"
    )
    tokenizer.set_prefix_tokens(language=language, task="transcribe")
    labels = tokenizer("ආයුබෝවන්").input_ids
    expected = list(reference.sot_sequence_including_notimestamps) + reference.encode("ආයුබෝවන්") + [reference.eot]
    assert labels == expected


def test_special_token_ids_match_openai_whisper(tokenizer, reference_tokenizer):
    for token, expected in reference_tokenizer.special_tokens.items():
        assert tokenizer.convert_tokens_to_ids(token) == expected, token


def test_saved_processor_loads_with_from_pretrained(tmp_path, tokenizer):
    from transformers import WhisperFeatureExtractor

    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tokenizer).save_pretrained(tmp_path)
    loaded = WhisperProcessor.from_pretrained(tmp_path, language="sinhalese", task="transcribe")
    text = TEXTS["sinhala"]
    assert loaded.tokenizer.encode(text, add_special_tokens=False) == tokenizer.encode(text, add_special_tokens=False)
    assert loaded.tokenizer("x").input_ids[:4] == [50258, 50322, 50359, 50363]
    # decode() drops special and timestamp tokens, as the Hub tokenizer does
    assert loaded.tokenizer.decode([50258, 50322, 50359, 50363, 50364, *tokenizer.encode(" hi", add_special_tokens=False)],
                                   skip_special_tokens=True).strip() == "hi"


def test_generation_config_like_whisper_small(tokenizer, reference_tokenizer):
    config = whisper_generation_config(tokenizer)
    assert config.decoder_start_token_id == 50258
    assert config.no_timestamps_token_id == 50363
    assert config.lang_to_id["<|si|>"] == 50322 and len(config.lang_to_id) == 99
    assert config.task_to_id == {"transcribe": 50359, "translate": 50358}
    assert config.begin_suppress_tokens == [220, 50257]
    assert set(reference_tokenizer.non_speech_tokens) <= set(config.suppress_tokens)


def test_english_only_tokenizer_matches_openai_whisper(openai_whisper):
    """The *.en stand-in: GPT-2 ranks with the specials one id lower, as in whisper-small.en."""
    from tools.smoke_model import build_whisper_tokenizer, multilingual_tiktoken_path

    reference = openai_whisper("tokenizer").get_tokenizer(multilingual=False)
    ours = build_whisper_tokenizer(multilingual_tiktoken_path("gpt2"))
    text = "Hello world, this is an English-only Whisper!"
    assert ours.encode(text, add_special_tokens=False) == reference.encode(text)
    for token in ("<|endoftext|>", "<|startoftranscript|>", "<|transcribe|>", "<|notimestamps|>"):
        assert ours.convert_tokens_to_ids(token) == reference.special_tokens[token]
    assert ours.convert_tokens_to_ids("<|endoftext|>") == 50256 and len(ours) == 51864


def test_outdated_smoke_model_is_detected(tmp_path):
    """A cached smoke model from an older architecture is rebuilt rather than silently reused."""
    import json

    from helpers.config import SMOKE_MODEL_DIR
    from tools.smoke_model import smoke_model_is_current

    assert smoke_model_is_current(SMOKE_MODEL_DIR)
    saved = json.loads((SMOKE_MODEL_DIR / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, "d_model": saved["d_model"] // 2}))
    assert not smoke_model_is_current(tmp_path)
    assert not smoke_model_is_current(tmp_path / "missing")
