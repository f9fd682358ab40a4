"""Errors keep their cause: what the learner can fix reads as one sentence that quotes the underlying
error's first line, and a bug of ours stays a traceback instead of turning into "undecodable audio".

Hub failures are simulated where our code meets the Hub: ``transformers.utils.hub.hf_hub_download`` (the
call ``from_pretrained`` makes), ``HfApi.hf_hub_download`` (what ``datasets.load_dataset`` calls),
``HfApi.whoami`` and ``HfApi.create_repo``, raising the errors huggingface_hub itself builds from a Hub
response (``hf_raise_for_status``) or a refused connection. Everything else on the way is the real code.
"""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import LocalEntryNotFoundError
from huggingface_hub.utils import hf_raise_for_status

from helpers import audio
from helpers.audio import AudioDecodeError, load_audio
from helpers.config import SMOKE_MODEL_DIR
from helpers.data import DataSourceError, load_common_voice
from helpers.model import ModelLoadError, load_processor
from helpers.runtime.errors import first_line

TOKEN = "hf_" + "x" * 34


# Decoding


def _flac_with_damage() -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.sin(np.linspace(0, 2000, 48_000)).astype(np.float32) * 0.3, 48_000, format="FLAC")
    data = bytearray(buffer.getvalue())
    data[len(data) // 3: len(data) // 3 + 2000] = np.random.default_rng(0).integers(0, 256, 2000, np.uint8).tobytes()
    return bytes(data)


@pytest.mark.parametrize("content", [b"This is a text file somebody renamed to .mp3.\n" * 30, _flac_with_damage()],
                         ids=["not-audio", "damaged-flac"])
def test_corrupt_audio_is_undecodable_and_says_what_the_decoder_said(tmp_path, content):
    path = tmp_path / "clip.mp3"
    path.write_bytes(content)
    with pytest.raises(AudioDecodeError) as caught:
        load_audio(str(path))
    assert caught.value.reason == "undecodable_audio"
    try:
        with sf.SoundFile(str(path)) as handle:
            handle.read()
    except sf.SoundFileError as error:
        said = first_line(error)
    assert said in str(caught.value) and str(path) in str(caught.value)


def test_corrupt_audio_is_counted_in_preprocessing(tmp_path, corpus, processor):
    from helpers.data import read_cv_tsv
    from helpers.preparation import prepare_split

    (tmp_path / "clips").mkdir()
    rows = read_cv_tsv(corpus / "train.tsv")[:2]
    shutil.copy(corpus / "clips" / rows[0]["path"], tmp_path / "clips" / "good.mp3")
    (tmp_path / "clips" / "bad.mp3").write_bytes(_flac_with_damage())
    (tmp_path / "train.tsv").write_text(f"path\tsentence\ngood.mp3\t{rows[0]['sentence']}\nbad.mp3\t{rows[1]['sentence']}\n")
    (tmp_path / "dev.tsv").write_text(f"path\tsentence\ngood.mp3\t{rows[0]['sentence']}\n")  # the validation slice
    (tmp_path / "test.tsv").write_text("path\tsentence\n")
    split = load_common_voice(str(tmp_path))["train"]
    _, report = prepare_split(split, processor)
    assert (report["kept"], report["dropped_by_reason"]) == (1, {"undecodable_audio": 1})


@pytest.mark.parametrize("error", [TypeError("'NoneType' object is not subscriptable"),
                                   AttributeError("'SoundFile' object has no attribute 'frmat'")])
def test_a_bug_in_decoding_is_a_traceback_not_a_dropped_clip(corpus, processor, monkeypatch, error):
    from helpers.preparation import prepare_split

    clip = next((corpus / "clips").iterdir())

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(audio, "_announced_frames", broken)  # our code, inside the decoding block
    with pytest.raises(type(error)):
        load_audio(str(clip))
    with pytest.raises(type(error)):
        prepare_split(load_common_voice(str(corpus))["test"].select(range(2)), processor)
    monkeypatch.undo()
    monkeypatch.setattr(audio.sf, "SoundFile", broken)  # the decoder itself misused
    with pytest.raises(type(error)):
        load_audio(str(clip))


# Model loading


def test_broken_config_reports_the_json_error(tmp_path):
    folder = shutil.copytree(SMOKE_MODEL_DIR, tmp_path / "model")
    text = (folder / "config.json").read_text()
    broken = text.replace('"model_type"', "model_type", 1)
    (folder / "config.json").write_text(broken)
    with pytest.raises(json.JSONDecodeError) as parsed:
        json.loads(broken)
    with pytest.raises(ModelLoadError) as caught:
        load_processor(str(folder))
    message = str(caught.value)
    assert message.startswith(f"Could not load the Whisper model '{folder}': the folder's files could not be read")
    assert first_line(parsed.value) in message  # "Expecting property name enclosed in double quotes: line ..."
    assert "Hub" not in message


def test_missing_folder_and_unreachable_hub_id_read_differently(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = tmp_path / "runs" / "model"
    with pytest.raises(ModelLoadError) as folder_error:
        load_processor(str(missing))
    with pytest.raises(ModelLoadError) as hub_error:
        load_processor("openai/whisper-tiny-not-cached")
    assert str(folder_error.value) == (f"Could not load the Whisper model '{missing}': there is no folder {missing} "
                                       "(a Hub model id looks like 'openai/whisper-small').")
    message = str(hub_error.value)
    assert "the Hub could not be reached (no network, or offline mode)" in message
    assert "openai/whisper-tiny-not-cached is not in the local cache" in message
    assert "outgoing traffic has been disabled" in message  # huggingface_hub's own first line
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="holds no saved model \\(no config.json\\)"):
        load_processor(str(empty))


def test_a_bug_in_model_loading_is_a_traceback(monkeypatch):
    from transformers import WhisperConfig

    def broken(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'get'")

    monkeypatch.setattr(WhisperConfig, "from_pretrained", broken)
    with pytest.raises(AttributeError):
        load_processor(str(SMOKE_MODEL_DIR))


# The Hub: a wrong token, no access, no such repo and no network read differently.


def hub_response_error(status: int, url: str, **headers: str) -> Exception:
    """The error huggingface_hub raises for this Hub response (its own hf_raise_for_status)."""
    import httpx2 as httpx  # huggingface_hub 2.x's client; 1.x uses httpx

    response = httpx.Response(status, request=httpx.Request("GET", url), headers=headers)
    try:
        hf_raise_for_status(response)
    except Exception as error:  # noqa: BLE001 - whichever typed error the Hub's answer maps to
        return error
    raise AssertionError(f"{status} did not raise")


def connection_refused(downloading: bool = True) -> Exception:
    """What the HTTP client raises for a refused connection; wrapped as hf_hub_download does when
    ``downloading`` (a file neither reachable nor cached)."""
    from helpers.services.hub_errors import transport_errors

    refused = next(kind for kind in transport_errors() if kind.__module__.startswith("httpx"))("connection refused")
    if not downloading:
        return refused
    try:
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub and we cannot "
                                      "find the requested files in the local cache.") from refused
    except LocalEntryNotFoundError as error:
        return error


def simulated(kind: str, url: str, downloading: bool = True) -> Exception:
    return {
        "wrong token": lambda: hub_response_error(401, url, **{"X-Error-Message": "Invalid credentials in Authorization header"}),
        "no permission": lambda: hub_response_error(403, url),
        "gated": lambda: hub_response_error(403, url, **{"X-Error-Code": "GatedRepo"}),
        "not found": lambda: hub_response_error(404, url, **{"X-Error-Code": "RepoNotFound"}),
        "network down": lambda: connection_refused(downloading),
    }[kind]()


KINDS = ["wrong token", "no permission", "gated", "not found", "network down"]
# What each sentence must say, and what no other kind's may.
SAYS = {
    "wrong token": "rejected the token (401 Unauthorized)",
    "no permission": "not allowed to do this (403 Forbidden)",
    "gated": "is gated: open https://huggingface.co/",
    "not found": "was not found on the Hub",
    "network down": "the Hub could not be reached",
}


@pytest.fixture
def online(monkeypatch):
    """Online mode against an endpoint that refuses connections: only the simulated call answers."""
    import datasets.config

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return monkeypatch


def check_sentences(messages: dict[str, str]) -> None:
    assert len(set(messages.values())) == len(KINDS)
    for kind, message in messages.items():
        assert SAYS[kind] in message, (kind, message)
        assert not [other for other in KINDS if other != kind and SAYS[other] in message], (kind, message)
        assert TOKEN not in message and TOKEN[3:] not in message


def test_model_download_failures_read_differently(online):
    import transformers.utils.hub

    messages, errors = {}, {}
    for kind in KINDS:
        errors[kind] = simulated(kind, "https://huggingface.co/learner/whisper-gone/resolve/main/config.json")

        def fail(*args, _error=errors[kind], **kwargs):
            raise _error

        online.setattr(transformers.utils.hub, "hf_hub_download", fail)
        online.setattr(transformers.utils.hub, "snapshot_download", fail)
        with pytest.raises(ModelLoadError) as caught:
            load_processor("learner/whisper-gone")
        messages[kind] = str(caught.value)
        assert messages[kind].startswith("Could not load the Whisper model 'learner/whisper-gone': ")
        assert first_line(errors[kind]) in messages[kind]  # for the network: huggingface_hub's sentence
    check_sentences(messages)
    assert "https://huggingface.co/learner/whisper-gone," in messages["gated"]


def test_dataset_download_failures_read_differently(online):
    messages, errors = {}, {}
    for kind in KINDS:
        errors[kind] = simulated(kind, "https://huggingface.co/datasets/learner/cv-gone/resolve/main/README.md")

        def fail(self, *args, _error=errors[kind], **kwargs):
            raise _error

        online.setattr(HfApi, "hf_hub_download", fail)
        with pytest.raises(DataSourceError) as caught:
            load_common_voice("learner/cv-gone")
        messages[kind] = str(caught.value)
        assert messages[kind].startswith("'learner/cv-gone' is not a local folder and could not be loaded")
    check_sentences(messages)
    assert "https://huggingface.co/datasets/learner/cv-gone" in messages["gated"]
    # datasets rewords the Hub's error; its own first line is kept.
    assert "Dataset 'learner/cv-gone' is a gated dataset on the Hub." in messages["gated"]


def test_login_status_tells_a_wrong_token_from_no_network(online):
    from helpers.services.hub import login_status

    said = {}
    for kind in ("wrong token", "network down"):
        error = simulated(kind, "https://huggingface.co/api/whoami-v2", downloading=False)

        def fail(self, *args, _error=error, **kwargs):
            raise _error

        online.setattr(HfApi, "whoami", fail)
        said[kind] = login_status()
        assert said[kind].startswith("A token was found but") and TOKEN not in said[kind]
    assert "rejected it (401 Unauthorized)" in said["wrong token"] and "reached" not in said["wrong token"]
    assert "could not be reached" in said["network down"] and "rejected" not in said["network down"]


def test_push_failures_read_differently_and_never_show_the_token(online, tmp_path):
    from helpers.extras.sharing import push_model

    (tmp_path / "config.json").write_text("{}")
    messages, errors = {}, {}
    for kind in KINDS:
        errors[kind] = simulated(kind, "https://huggingface.co/api/repos/create", downloading=False)
        # As if the error quoted the request's headers in its first line: shown, but with the token masked.
        errors[kind].args = (f"Authorization: Bearer {TOKEN} {errors[kind].args[0]}",) + errors[kind].args[1:]

        def fail(self, *args, _error=errors[kind], **kwargs):
            raise _error

        online.setattr(HfApi, "create_repo", fail)
        messages[kind] = push_model(tmp_path, "learner/whisper-si", token=TOKEN)
        assert messages[kind].startswith(f"Push failed ({type(errors[kind]).__name__}): ")
        assert f"the model is safe in {tmp_path}" in messages[kind]
        assert "Authorization: Bearer ***" in messages[kind]
    check_sentences(messages)


def test_a_bug_while_pushing_is_a_traceback(online, tmp_path):
    from helpers.extras.sharing import push_model

    (tmp_path / "config.json").write_text("{}")

    def broken(self, *args, **kwargs):
        raise TypeError("create_repo() got an unexpected keyword argument 'exists_ok'")

    online.setattr(HfApi, "create_repo", broken)
    with pytest.raises(TypeError):
        push_model(tmp_path, "learner/whisper-si", token=TOKEN)


def test_a_bug_while_loading_a_hub_dataset_is_a_traceback(monkeypatch):
    import datasets

    def broken(*args, **kwargs):
        raise KeyError("splits")

    monkeypatch.setattr(datasets, "load_dataset", broken)
    with pytest.raises(KeyError):
        load_common_voice("learner/cv-gone")
