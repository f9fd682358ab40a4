"""The teacher's mirror: ``python -m helpers share-data`` puts the release the teacher downloaded into a private Hub
dataset or a shared folder, and a learner's ``DATA`` reads it as the release itself.

The services stand in at their edges: the MDC stand-in serves the catalogue and the archive to the course's
MDC client, the Hub stand-in takes the commit and serves the files back to the real
``huggingface_hub`` client (in processes whose ``HF_ENDPOINT`` is the stand-in, as a learner's would be the Hub),
and a plain folder plays the shared Google Drive folder.
"""

from __future__ import annotations

import json
import os
import random
import string
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from helpers.cli import main
from helpers.config import REPO_ROOT
from helpers.data import DataSourceError, load_common_voice
from helpers.services import data_mirror
from tests.standins import HubStandIn, MdcStandIn, common_voice_archive

TOKEN = "hf_" + "".join(random.Random().choices(string.ascii_letters, k=34))  # made at run time, as elsewhere
REPO_ID = f"{HubStandIn.USER}/cv-dv-class"
# What a learner's stage 1 sees: the clips and sentences of each split.
READ = ("import json, sys; from pathlib import Path; from helpers.data import load_common_voice; "
        "splits = load_common_voice(sys.argv[1]); "
        "print(json.dumps({name: [[Path(a['path']).name for a in split['audio']], list(split['sentence'])] "
        "for name, split in splits.items()}))")


def splits_seen(splits) -> dict:
    return {name: [[Path(a["path"]).name for a in split["audio"]], list(split["sentence"])] for name, split in splits.items()}


@pytest.fixture
def teacher(tmp_path, monkeypatch, corpus):
    """The MDC stand-in with the release, the teacher's key, and downloads and unpacking in their own folders."""
    with MdcStandIn(common_voice_archive(corpus)) as mdc:
        monkeypatch.setenv("MDC_API_URL", f"{mdc.url}/api")
        monkeypatch.setenv("MDC_API_KEY", MdcStandIn.KEY)
        monkeypatch.setenv("MDC_DOWNLOAD_PATH", str(tmp_path / "teacher-disk"))
        monkeypatch.chdir(tmp_path)  # no project .env for mdc_api_key to read
        yield mdc


def test_a_shared_drive_folder_gives_each_learner_the_release(teacher, tmp_path, monkeypatch, corpus, capsys):
    drive = tmp_path / "drive" / "MyDrive" / "cv-dv-class"
    assert main(["share-data", "--data", "common-voice:dv", "--to-folder", str(drive)]) == 0
    said = capsys.readouterr().out
    assert "share that folder with the class" in said and MdcStandIn.KEY not in said
    archive = drive / MdcStandIn.FILENAME
    assert archive.read_bytes() == teacher.archive  # the release as the MDC serves it, byte for byte
    card = (drive / "README.md").read_text(encoding="utf-8")
    assert "license: cc0-1.0" in card and f"DATA = {str(drive)!r}" in card
    downloads = [path for method, path, _ in teacher.requests if path.startswith("/files/")]
    assert len(downloads) == 1
    # A learner: no MDC key, no network to the MDC, their own runtime disk; DATA is the shared folder.
    monkeypatch.delenv("MDC_API_KEY")
    monkeypatch.setenv("MDC_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("MDC_DOWNLOAD_PATH", str(tmp_path / "learner-disk"))
    splits = load_common_voice(str(drive))
    assert splits_seen(splits) == splits_seen(load_common_voice(str(corpus)))
    unpacked = tmp_path / "learner-disk" / MdcStandIn.FILENAME.removesuffix(".tar.gz")
    assert unpacked.is_dir() and not list(drive.glob("*/"))  # unpacked on the runtime's disk, never on Drive
    clip = splits["test"][0]["audio"]["path"]
    assert clip.startswith(str(unpacked))
    assert Path(clip).read_bytes() == (corpus / "clips" / Path(clip).name).read_bytes()
    assert splits_seen(load_common_voice(str(archive))) == splits_seen(splits)  # the archive itself, reused


def test_a_private_hub_dataset_gives_each_learner_the_release(teacher, tmp_path, corpus):
    with HubStandIn(TOKEN) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "0",
               "HF_HOME": str(tmp_path / "teacher-hf")}
        done = subprocess.run([sys.executable, "-m", "helpers", "share-data", "--data", "common-voice:dv",
                               "--to-hub", REPO_ID], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"DATA = 'mirror:{REPO_ID}'" in done.stdout and TOKEN not in done.stdout + done.stderr
        made = hub.repos[REPO_ID]  # huggingface_hub 1.x asks {"private": true}, 2.x {"visibility": "private"}
        assert (made.get("private") is True or made.get("visibility") == "private") and made["type"] == "dataset"
        [files] = hub.accepted[REPO_ID]
        assert files[MdcStandIn.FILENAME] == teacher.archive and "license: cc0-1.0" in files["README.md"].decode()
        assert not any(TOKEN.encode() in data for data in files.values())
        # A learner's runtime: their own token, Hub cache and disk; no MDC key, and the MDC out of reach.
        learner = {**env, "HF_HOME": str(tmp_path / "learner-hf"), "MDC_DOWNLOAD_PATH": str(tmp_path / "learner-disk"),
                   "MDC_API_URL": "http://127.0.0.1:9/api"}
        learner.pop("MDC_API_KEY", None)
        read = subprocess.run([sys.executable, "-c", READ, f"mirror:{REPO_ID}"], env=learner, capture_output=True,
                              text=True, timeout=300, cwd=tmp_path)
        assert read.returncode == 0, read.stderr[-3000:]
        assert json.loads(read.stdout.splitlines()[-1]) == splits_seen(load_common_voice(str(corpus)))
        downloaded = [path for method, path, _ in hub.requests if method == "GET" and "/resolve/" in path]
        assert downloaded == [f"/datasets/{REPO_ID}/resolve/main/{MdcStandIn.FILENAME}"]
        # With a token the private mirror does not accept, the learner is told why in one sentence.
        learner["HF_TOKEN"] = "hf_" + "x" * 34
        refused = subprocess.run([sys.executable, "-m", "helpers", "prepare", "--profile", "smoke", "--data",
                                  f"mirror:{REPO_ID}", "--output-dir", str(tmp_path / "out")], env=learner,
                                 capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert "Could not fetch the class's mirror" in refused.stderr and "401" in refused.stderr
        assert "Traceback" not in refused.stderr


def test_an_unpacked_release_folder_is_packed_as_the_mdc_lays_it_out(tmp_path, monkeypatch, corpus, capsys):
    monkeypatch.setenv("MDC_DOWNLOAD_PATH", str(tmp_path / "disk"))
    folder = tmp_path / "cv-corpus-23.0-2025-09-05" / "dv"
    import shutil

    shutil.copytree(corpus, folder)
    assert main(["share-data", "--data", str(tmp_path), "--to-folder", str(tmp_path / "shared")]) == 0  # a folder above
    assert "Copied cv-corpus-23.0-2025-09-05-dv.tar.gz" in capsys.readouterr().out
    archive = tmp_path / "shared" / "cv-corpus-23.0-2025-09-05-dv.tar.gz"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "cv-corpus-23.0-2025-09-05/dv/train.tsv" in names and any(n.startswith("cv-corpus-23.0-2025-09-05/dv/clips/")
                                                                   for n in names)
    assert splits_seen(load_common_voice(str(tmp_path / "shared"))) == splits_seen(load_common_voice(str(corpus)))


def test_a_damaged_archive_or_a_folder_of_two_is_refused_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("MDC_DOWNLOAD_PATH", str(tmp_path / "disk"))
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "release.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(DataSourceError, match="could not be unpacked"):
        load_common_voice(str(shared))
    assert not list((tmp_path / "disk").iterdir())  # nothing half-unpacked is left to be read later
    (shared / "other.tar.gz").write_bytes(b"")
    with pytest.raises(DataSourceError, match="holds 2 archives"):
        load_common_voice(str(shared))
    with pytest.raises(Exception, match="--to-hub ORG/NAME"):
        data_mirror.share_data(str(shared))


def test_the_preflight_checks_that_the_learners_token_reads_the_mirror(tmp_path, monkeypatch, corpus):
    from huggingface_hub import constants

    from helpers.config import get_config
    from helpers.notebook.workshop import check_mdc

    archive = tmp_path / "cv-dv.tar.gz"
    archive.write_bytes(common_voice_archive(corpus))
    with HubStandIn(TOKEN) as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.delenv("MDC_API_KEY", raising=False)
        data_mirror.share_to_hub(archive, REPO_ID)
        config = get_config("t4", data=f"mirror:{REPO_ID}")
        readable = check_mdc(config)
        assert readable.ok and "holds cv-dv.tar.gz" in readable.says and "not needed" in readable.says
        monkeypatch.setenv("HF_TOKEN", "hf_" + "y" * 34)
        refused = check_mdc(config)
        assert not refused.ok and "401" in refused.says and "y" * 34 not in refused.line()
        assert not any("/resolve/" in path for _, path, _ in hub.requests)  # checked, not downloaded
