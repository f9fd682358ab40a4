"""Finding Common Voice on the Mozilla Data Collective: the newest release for a locale from the public
catalogue (``common-voice:<locale>``), what the learner is shown, and where archives go in Colab.

The SDK's catalogue call is replaced by a stand-in returning the SDK's own models, shaped as the MDC lists
Common Voice (names like "Common Voice Scripted Speech 23.0 - Dhivehi"); no network is used.
"""

from __future__ import annotations

import pytest
from datacollective.models import DatasetDetails, DatasetList
from datasets import Dataset, DatasetDict

from helpers import data
from helpers.data import DataSourceError, find_common_voice, load_common_voice


def catalogue(*items: dict) -> DatasetList:
    return DatasetList(items=[DatasetDetails(**item) for item in items], total=len(items))


LISTED = catalogue(
    {"id": "cv-sps-dv", "name": "Common Voice Spontaneous Speech 25.0 - Dhivehi", "locale": "dv"},
    {"id": "cv22-dv", "name": "Common Voice Scripted Speech 22.0 - Dhivehi", "locale": "dv", "sizeBytes": 9e8},
    {"id": "cv23-dv", "name": "Common Voice Scripted Speech 23.0 - Dhivehi", "locale": "dv", "sizeBytes": 1.23e9,
     "licenseAbbreviation": "CC0-1.0", "slug": "common-voice-scripted-speech-23-0-dhivehi"},
    {"id": "cv9-dv", "name": "Common Voice Scripted Speech 9.0 - Dhivehi", "locale": "dv"},
    {"id": "cv24-si", "name": "Common Voice Scripted Speech 24.0 - Sinhala", "locale": "si"},  # another locale
    {"id": "other", "name": "Dhivehi news readings 30.0", "locale": "dv"},
)


@pytest.fixture
def listed(monkeypatch):
    calls = []

    def list_datasets(query=None, **filters):
        calls.append((query, filters))
        return LISTED

    monkeypatch.setattr("datacollective.list_datasets", list_datasets)
    monkeypatch.setattr(data, "_mdc_reachable", lambda timeout=2.0: True)
    return calls


def test_the_newest_scripted_speech_release_of_the_locale_is_found_and_described(listed):
    release = find_common_voice("dv")
    # 23.0 after 22.0 and 9.0; not the spontaneous speech, not another locale, not another collection
    assert release.id == "cv23-dv" and release.version == "23.0"
    assert listed == [("Common Voice Scripted Speech", {"locale": "dv", "sort": "newest", "results_per_page": 50})]
    text = release.describe()
    for part in ("Common Voice Scripted Speech 23.0 - Dhivehi", "version 23.0", "1.23 GB", "CC0-1.0", "cv23-dv",
                 "common-voice-scripted-speech-23-0-dhivehi"):
        assert part in text


def test_a_locale_without_a_release_and_an_unreachable_catalogue_each_say_what_to_do(listed, monkeypatch):
    with pytest.raises(DataSourceError, match="no Common Voice release for locale 'xx'"):
        find_common_voice("xx")
    monkeypatch.setattr(data, "_mdc_reachable", lambda timeout=2.0: False)
    with pytest.raises(DataSourceError, match="cannot be reached.*mdc:<dataset id>"):
        find_common_voice("dv")


def test_common_voice_source_downloads_the_release_it_found(listed, monkeypatch, capsys):
    downloaded = []
    splits = DatasetDict(train=Dataset.from_dict({"x": [1]}), test=Dataset.from_dict({"x": [2]}))
    monkeypatch.setattr(data, "load_from_mdc", lambda dataset_id, seed=42, validation_size=300: downloaded.append(dataset_id) or splits)
    assert load_common_voice("common-voice:dv") is splits
    assert downloaded == ["cv23-dv"]
    assert "Common Voice Scripted Speech 23.0 - Dhivehi" in capsys.readouterr().out


def test_mdc_archives_go_to_the_colab_runtimes_own_disk_not_drive(monkeypatch):
    monkeypatch.delenv("MDC_DOWNLOAD_PATH", raising=False)
    monkeypatch.setattr(data, "in_colab", lambda: True)
    assert data._mdc_download_dir() == "/content/mdc"
    monkeypatch.setenv("MDC_DOWNLOAD_PATH", "/somewhere")
    assert data._mdc_download_dir() is None  # the SDK reads MDC_DOWNLOAD_PATH itself
    monkeypatch.delenv("MDC_DOWNLOAD_PATH")
    monkeypatch.setattr(data, "in_colab", lambda: False)
    assert data._mdc_download_dir() is None  # the SDK's own default folder
