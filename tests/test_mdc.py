"""Common Voice from the Mozilla Data Collective, through the course's own client of its HTTP API and a local
server answering as the MDC's API does (tests/standins.py): the t4 profile's ``common-voice:<locale>`` finds the
newest release in the public catalogue and loads it; a missing, wrong or not-granted key, terms not
accepted, an unknown id and a download cut halfway each end in one sentence saying what to do; a cut
download is never used, and the next call resumes it or starts afresh and loads the release. The MDC's SDK,
which needs a newer requests than Colab's, is never imported; a ``.env`` file still gives the key, as it did
with the SDK.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.config import REPO_ROOT
from helpers.data import DataSourceError, load_common_voice
from helpers.runtime.secrets import SecretNotGranted
from helpers.services.mdc import find_common_voice
from tests.standins import MdcStandIn, common_voice_archive, install_colab
from tests.test_data import tsv_rows

ID = MdcStandIn.RELEASE_ID


@pytest.fixture(scope="module")
def archive(corpus) -> bytes:
    return common_voice_archive(corpus)


@pytest.fixture
def mdc(archive, tmp_path, monkeypatch):
    """The stand-in API at MDC_API_URL, a valid key in MDC_API_KEY, downloads into a fresh folder."""
    with MdcStandIn(archive) as server:
        monkeypatch.setenv("MDC_API_URL", f"{server.url}/api")
        monkeypatch.setenv("MDC_API_KEY", MdcStandIn.KEY)
        monkeypatch.setenv("MDC_DOWNLOAD_PATH", str(tmp_path / "mdc"))
        yield server


def sentence(error: pytest.ExceptionInfo) -> str:
    """The error's message, checked to be one line ending a sentence, with no key in it."""
    message = str(error.value)
    assert "\n" not in message and message.endswith(".") and MdcStandIn.KEY not in message, message
    return message


def downloads(server: MdcStandIn) -> list[dict[str, str]]:
    """The headers of each request for the archive itself."""
    return [headers for method, path, headers in server.requests if path.startswith("/files/")]


def assert_is_the_release(splits, corpus) -> None:
    # dev is split between training and the validation slice that chooses the checkpoint; test stays apart
    assert len(splits["train"]) + len(splits["validation"]) == len(tsv_rows(corpus / "train.tsv")) + len(
        tsv_rows(corpus / "dev.tsv"))
    assert 0 < len(splits["validation"]) <= len(tsv_rows(corpus / "dev.tsv"))
    assert len(splits["test"]) == len(tsv_rows(corpus / "test.tsv"))
    first = tsv_rows(corpus / "train.tsv")[0]
    assert splits["train"][0]["sentence"] == first[2]
    clip = splits["train"][0]["audio"]["path"]
    assert clip.endswith(f"cv-corpus-23.0-2025-09-05/dv/clips/{first[1]}")
    assert Path(clip).read_bytes() == (corpus / "clips" / first[1]).read_bytes()  # the archive's bytes, whole


def test_common_voice_source_finds_the_newest_release_and_loads_it(mdc, corpus, tmp_path, capsys):
    splits = load_common_voice("common-voice:dv")
    assert_is_the_release(splits, corpus)
    out = capsys.readouterr().out
    # 23.0 after 22.0 and 9.0; not the spontaneous speech, not another locale, not another collection
    for part in ("Common Voice Scripted Speech 23.0 - Dhivehi", "version 23.0", "CC0-1.0", ID):
        assert part in out
    assert MdcStandIn.KEY not in out
    catalogue = next(path for method, path, _ in mdc.requests if path.startswith("/api/datasets?"))
    assert "locale=dv" in catalogue and "sort=newest" in catalogue
    assert "q=Common+Voice+Scripted+Speech" in catalogue and "limit=50" in catalogue  # the stand-in checks the names
    session = next(headers for method, path, headers in mdc.requests if path.endswith("/download"))
    assert session["Authorization"] == f"Bearer {MdcStandIn.KEY}"
    assert (tmp_path / "mdc" / MdcStandIn.FILENAME).stat().st_size == len(mdc.archive)

    assert_is_the_release(load_common_voice(f"mdc:{ID}"), corpus)  # downloaded once, then reused
    assert len(downloads(mdc)) == 1


def test_the_catalogue_describes_the_release_before_any_download(mdc):
    release = find_common_voice("dv")
    assert (release.id, release.version, release.size_bytes) == (ID, "23.0", len(mdc.archive))
    assert "common-voice-scripted-speech-23-0-dhivehi" in release.describe()
    assert downloads(mdc) == [] and not any(path.endswith("/download") for _, path, _ in mdc.requests)


def test_a_locale_without_a_release_and_an_unreachable_catalogue_each_say_what_to_do(mdc, monkeypatch):
    with pytest.raises(DataSourceError) as caught:
        find_common_voice("xx")
    assert "no Common Voice release for locale 'xx'" in sentence(caught)
    monkeypatch.setenv("MDC_API_URL", "http://127.0.0.1:9/api")  # nothing listens there
    with pytest.raises(DataSourceError) as caught:
        find_common_voice("dv")
    assert "cannot be reached" in sentence(caught) and "mdc:<dataset id>" in str(caught.value)


def test_a_missing_key_says_where_to_get_one(mdc, monkeypatch):
    monkeypatch.delenv("MDC_API_KEY")
    with pytest.raises(DataSourceError) as caught:
        load_common_voice(f"mdc:{ID}")
    assert "MDC_API_KEY" in sentence(caught) and "https://mozilladatacollective.com/api-reference" in str(caught.value)
    assert not any(path.endswith("/download") for _, path, _ in mdc.requests)  # stopped before asking


def test_a_wrong_key_terms_not_accepted_an_unknown_id_and_no_network_each_say_what_to_do(mdc, monkeypatch, tmp_path):
    said = {}
    monkeypatch.setenv("MDC_API_KEY", "mdc-key-mistyped")
    with pytest.raises(DataSourceError) as caught:
        load_common_voice(f"mdc:{ID}")
    said["wrong key"] = sentence(caught)
    assert "rejected the API key in MDC_API_KEY (401" in said["wrong key"] and "mdc-key-mistyped" not in said["wrong key"]

    monkeypatch.setenv("MDC_API_KEY", MdcStandIn.KEY)
    mdc.terms_accepted = False
    with pytest.raises(DataSourceError) as caught:
        load_common_voice(f"mdc:{ID}")
    said["terms"] = sentence(caught)
    assert "terms have not been accepted" in said["terms"] and "mozilladatacollective.com" in said["terms"]

    with pytest.raises(DataSourceError) as caught:
        load_common_voice("mdc:cmf-no-such-id")
    said["unknown id"] = sentence(caught)
    assert "has no dataset 'cmf-no-such-id'" in said["unknown id"]

    monkeypatch.setenv("MDC_API_URL", "http://127.0.0.1:9/api")  # nothing listens there
    with pytest.raises(DataSourceError) as caught:
        load_common_voice(f"mdc:{ID}")
    said["no network"] = sentence(caught)
    assert "could not be reached" in said["no network"]
    assert len(set(said.values())) == 4 and not (tmp_path / "mdc" / MdcStandIn.FILENAME).exists()


def test_a_colab_secret_is_used_and_one_not_granted_says_how_to_grant_it(mdc, monkeypatch, corpus, capsys):
    import os

    monkeypatch.delenv("MDC_API_KEY")
    install_colab(monkeypatch, secrets={}, not_granted=("MDC_API_KEY",))
    with pytest.raises(SecretNotGranted) as caught:
        load_common_voice(f"mdc:{ID}")
    assert "MDC_API_KEY exists but this notebook may not read it" in sentence(caught)
    assert "'Notebook access'" in str(caught.value)

    install_colab(monkeypatch, secrets={})  # no such secret: the missing-key sentence
    with pytest.raises(DataSourceError, match="needs an API key in the MDC_API_KEY"):
        load_common_voice(f"mdc:{ID}")

    install_colab(monkeypatch, secrets={"MDC_API_KEY": MdcStandIn.KEY})
    assert_is_the_release(load_common_voice(f"mdc:{ID}"), corpus)
    assert os.environ["MDC_API_KEY"] == MdcStandIn.KEY  # read once, and seen by the run's processes
    assert MdcStandIn.KEY not in capsys.readouterr().out


def test_a_download_cut_halfway_is_never_used_and_the_next_call_resumes_it(mdc, corpus, tmp_path):
    folder = tmp_path / "mdc"
    mdc.cut_next = "length"  # the client knows how long the body should be, and sees it end early
    with pytest.raises(DataSourceError) as caught:
        load_common_voice(f"mdc:{ID}")
    message = sentence(caught)
    assert "the download stopped after" in message and "run this again, which resumes where it stopped" in message
    assert not (folder / MdcStandIn.FILENAME).exists() and not (folder / "mcv-scripted-dv-v23.0").exists()
    part = folder / f"{MdcStandIn.FILENAME}.part"
    kept = part.stat().st_size
    assert 0 < kept < len(mdc.archive)

    assert_is_the_release(load_common_voice(f"mdc:{ID}"), corpus)
    first, second = downloads(mdc)
    assert "Range" not in first and second["Range"] == f"bytes={kept}-"  # resumed, not started again
    assert (folder / MdcStandIn.FILENAME).read_bytes() == mdc.archive and not part.exists()


def test_a_short_archive_the_stream_ended_with_is_removed_and_downloaded_again(mdc, corpus, tmp_path):
    """With no Content-Length the client cannot tell a cut from the end: the stream's file takes its final name,
    and only the size the catalogue lists shows it is incomplete."""
    folder = tmp_path / "mdc"
    mdc.cut_next = "no-length"
    with pytest.raises(DataSourceError) as caught:
        load_common_voice(f"mdc:{ID}")
    message = sentence(caught)
    assert "is incomplete or damaged" in message and "run this again to download it afresh" in message
    assert list(folder.iterdir()) == []  # neither the short archive nor a half-unpacked folder is left

    assert_is_the_release(load_common_voice(f"mdc:{ID}"), corpus)
    assert [("Range" in headers) for headers in downloads(mdc)] == [False, False]


def test_a_download_folder_that_cannot_be_written_says_so(mdc, monkeypatch, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("MDC_DOWNLOAD_PATH", str(tmp_path / "a-file" / "mdc"))
    with pytest.raises(DataSourceError) as caught:
        load_common_voice(f"mdc:{ID}")
    assert "the archive could not be written" in sentence(caught) and "MDC_DOWNLOAD_PATH" in str(caught.value)


def test_a_dotenv_file_in_the_working_folder_gives_the_key(mdc, monkeypatch, tmp_path, corpus):
    """The SDK loaded a ``.env`` file when imported; the docs still promise it, and the environment wins over it."""
    monkeypatch.delenv("MDC_API_KEY")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"MDC_API_KEY={MdcStandIn.KEY}\n", encoding="utf-8")
    assert_is_the_release(load_common_voice(f"mdc:{ID}"), corpus)
    monkeypatch.setenv("MDC_API_KEY", "mdc-key-mistyped")  # set in the environment: the file does not override it
    monkeypatch.setenv("MDC_DOWNLOAD_PATH", str(tmp_path / "elsewhere"))  # not downloaded there: the key is sent
    with pytest.raises(DataSourceError, match="rejected the API key"):
        load_common_voice(f"mdc:{ID}")


# In a fresh process: download, unpack and look up the release, then name the modules of the MDC's SDK loaded.
WITHOUT_SDK = """
import json, os, sys
from pathlib import Path
from tests.standins import MdcStandIn, common_voice_archive
from helpers.services.mdc import download_from_mdc, find_common_voice
with MdcStandIn(common_voice_archive(Path(sys.argv[1]))) as server:
    os.environ.update(MDC_API_URL=f"{server.url}/api", MDC_API_KEY=MdcStandIn.KEY, MDC_DOWNLOAD_PATH=sys.argv[2])
    folder = download_from_mdc(find_common_voice("dv").id)
unpacked = (folder / "cv-corpus-23.0-2025-09-05" / "dv" / "train.tsv").is_file()
print(json.dumps([unpacked, sorted(m for m in sys.modules if m.partition(".")[0] == "datacollective")]))
"""


def test_the_mdcs_sdk_is_never_imported(corpus, tmp_path):
    """Every datacollective release with the API the course uses needs requests>=2.32.5, which Colab's set-up
    would have to move; the course speaks the MDC's HTTP itself, so nothing of ours may import the SDK."""
    done = subprocess.run([sys.executable, "-c", WITHOUT_SDK, str(corpus), str(tmp_path / "mdc")], cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == [True, []]
