"""05's transcripts side by side: the real HTML holds each clip's three transcripts and a player of its audio."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import soundfile as sf

from helpers.audio import SAMPLING_RATE, from_int16
from helpers.notebook.display import transcripts_side_by_side
from helpers.runtime.errors import CourseError


class _Players(HTMLParser):
    """The ``src`` of every <audio> element, and the text of every cell."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "audio":
            self.sources.append(dict(attrs)["src"])

    def handle_data(self, data) -> None:
        if data.strip():
            self.texts.append(data.strip())


def test_each_clip_shows_its_three_transcripts_and_plays_its_own_audio(prepared):
    _, ready, _ = prepared
    test = ready["test"]
    references = list(test["sentence"])
    # What predictions.json holds: clip for clip, in the test split's order (markup in a transcript stays text).
    predictions = {"references": references,
                   "zero_shot": [f"<zero {i}> & latin letters" for i in range(len(test))],
                   "fine_tuned": [f"fine {i}: {reference[:10]}" for i, reference in enumerate(references)]}
    shown = [0, 3, len(test) - 1]
    html = transcripts_side_by_side(predictions, test, clips=shown).data
    page = _Players()
    page.feed(html)
    assert len(page.sources) == len(shown)
    for i, source in zip(shown, page.sources):
        assert source.startswith("data:audio/wav;base64,")
        decoded, rate = sf.read(io.BytesIO(base64.b64decode(source.split(",", 1)[1])), dtype="float32")
        expected = from_int16(test[i]["audio_16k"])
        assert rate == SAMPLING_RATE and len(decoded) == len(expected) > SAMPLING_RATE // 2  # real clips, not silence
        assert np.abs(expected).max() > 0.01
        assert np.allclose(decoded, expected, atol=2 / 32767)  # the clip's own samples, not another's
        for text in (references[i], predictions["zero_shot"][i], predictions["fine_tuned"][i]):
            assert text in page.texts
    assert "<zero 0>" not in html and "&lt;zero 0&gt; &amp; latin letters" in html
    assert not any(f"fine {i}:" in html for i in range(len(test)) if i not in shown)


def test_a_count_shows_the_first_clips_with_a_reference(prepared):
    _, ready, _ = prepared
    test = ready["test"].select(range(4))
    references = ["", *test["sentence"][1:]]
    html = transcripts_side_by_side({"references": references, "zero_shot": ["z"] * 4, "fine_tuned": ["f"] * 4},
                                    test, clips=2).data
    assert re.findall(r"clip (\d+)", html) == ["1", "2"]


def test_transcripts_of_another_test_split_are_refused(prepared):
    _, ready, _ = prepared
    test = ready["test"]
    with pytest.raises(CourseError, match="another test split"):
        transcripts_side_by_side({"references": ["a"], "zero_shot": ["b"], "fine_tuned": ["c"]}, test)


def test_clips_the_zero_shot_sample_left_out_are_not_shown_first():
    """On the t4 profile the zero-shot pass scores a sample: predictions.json holds None for the others."""
    from helpers.audio import to_flac

    test = [{"audio_16k": to_flac(np.zeros(1600, dtype=np.float32))} for _ in range(4)]
    predictions = {"references": ["a", "b", "c", "d"], "zero_shot": [None, "zb", None, "zd"],
                   "fine_tuned": ["fa", "fb", "fc", "fd"]}
    html = transcripts_side_by_side(predictions, test, clips=2).data
    assert "clip 1<" in html and "clip 3<" in html and "clip 0<" not in html
    assert "(not in the zero-shot sample)" in transcripts_side_by_side(predictions, test, clips=[0]).data
