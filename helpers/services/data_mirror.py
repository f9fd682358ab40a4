"""The teacher's mirror: one Common Voice release, downloaded once, shared with a class.

Thirty learners each making a Mozilla Data Collective account, accepting the terms and downloading the same
release in the same hour is a workshop's weakest hour. Common Voice is CC0, so the teacher downloads it once
and shares it:

    python -m helpers share-data --data common-voice:dv --to-hub ORG/NAME        # a private Hub dataset
    python -m helpers share-data --data common-voice:dv --to-folder /content/drive/MyDrive/NAME   # Drive

(:func:`share_data`; ``--data`` also takes an unpacked release locale folder or its archive). The mirror holds the
release's archive, one file, and a card saying what it is. Learners read it with ``DATA = "mirror:ORG/NAME"``
or ``DATA = "/content/drive/MyDrive/NAME"`` (:func:`helpers.data.load_common_voice`): the archive is fetched
once, unpacked on the runtime's own disk (:func:`unpack`), never on Drive, and read as any release folder.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi

from helpers.runtime.errors import CourseError, DataSourceError, first_line
from helpers.runtime.secrets import in_colab
from helpers.services.hub import find_token
from helpers.services.hub_errors import explain_hub_error, transport_errors
from helpers.services.mdc import COMMON_VOICE_SOURCE, download_from_mdc, find_common_voice

MIRROR_SOURCE = "mirror:"  # mirror:<owner>/<name>: a teacher's mirror on the Hub
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
CARD = "README.md"


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES)


def find_archive(folder: Path) -> Path | None:
    """The one release archive in ``folder`` (a mirror folder on Drive), or ``None``."""
    archives = sorted(p for p in folder.iterdir() if is_archive(p)) if folder.is_dir() else []
    if len(archives) > 1:
        raise DataSourceError(f"{folder} holds {len(archives)} archives ({', '.join(p.name for p in archives)}); "
                              "a mirror holds one release: point DATA at a folder with only one.")
    return archives[0] if archives else None


def _stem(archive: Path) -> str:
    name = archive.name
    return next(name[: -len(suffix)] for suffix in ARCHIVE_SUFFIXES if name.endswith(suffix))


def unpack_dir(elsewhere: Path) -> Path:
    """Where archives are unpacked: ``MDC_DOWNLOAD_PATH`` when set, else the runtime's own disk in Colab
    (``/content/mdc``, where MDC downloads go too), else ``elsewhere``."""
    if os.environ.get("MDC_DOWNLOAD_PATH"):
        return Path(os.environ["MDC_DOWNLOAD_PATH"])
    return Path("/content/mdc") if in_colab() else elsewhere


def unpack(archive: Path, into: Path) -> Path:
    """Unpack ``archive`` once into the folder ``into``; return the unpacked folder.

    It is unpacked beside its final name and renamed when complete, so an interrupted unpack is never read;
    a later call reuses the folder. Members that would land outside it (absolute paths, ``..``, links out)
    are refused by tarfile's ``data`` filter.
    """
    target = into / _stem(archive)
    if target.is_dir():
        return target
    partial = target.with_name(target.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(partial, filter="data")
    except (tarfile.TarError, EOFError, OSError) as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataSourceError(f"{archive} could not be unpacked ({first_line(error)}): ask for the mirror again, or "
                              "free disk space if the runtime's disk is full.") from error
    partial.rename(target)
    return target


def pack_release(found: Path, into: Path) -> Path:
    """A release's locale folder (``cv-corpus-*/<locale>``) as ``<release>-<locale>.tar.gz`` in ``into``, laid out
    as the MDC's archives are: ``<release>/<locale>/clips/...`` and the tsv files."""
    if not (found / "train.tsv").is_file():
        raise DataSourceError(f"{found} is not a Common Voice locale folder (clips/ and train.tsv): nothing to share.")
    release = found.parent.name or "common-voice"
    archive = into / f"{release}-{found.name}.tar.gz"
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(found, arcname=f"{release}/{found.name}")
    return archive


def release_archive(source: str, work_dir: Path) -> Path:
    """The archive to share for ``source``: downloaded from the MDC (``common-voice:<locale>``, ``mdc:<id>``;
    reused when already downloaded), an archive file as it is, or an unpacked locale folder packed."""
    text = source.strip()
    if text.startswith(COMMON_VOICE_SOURCE):
        release = find_common_voice(text[len(COMMON_VOICE_SOURCE):].strip())
        print(f"Newest Common Voice release in the MDC catalogue: {release.describe()}")
        return download_from_mdc(release.id, extract=False)
    if text.startswith("mdc:"):
        return download_from_mdc(text[4:].strip(), extract=False)
    path = Path(text).expanduser()
    if is_archive(path):
        return path
    if path.is_dir():
        return pack_release(path, work_dir)
    raise DataSourceError(f"{source!r} is neither common-voice:<locale>, mdc:<id>, a release folder nor its archive.")


def mirror_card(archive: Path, data_setting: str) -> str:
    """The mirror's card: what it holds, its licence, and the one line a learner sets to read it."""
    return (f"---\nlicense: cc0-1.0\npretty_name: Common Voice for a class ({archive.name})\n"
            f"task_categories:\n- automatic-speech-recognition\n---\n\n"
            f"# {archive.name}\n\nA Common Voice release from the Mozilla Data Collective, as downloaded, shared with "
            "a class so that each learner need not download it (Common Voice is CC0-1.0). Its speakers' "
            "identities are not to be sought, as the Mozilla Data Collective's terms ask.\n\n"
            "In the workshop notebook, above the set-up cell:\n\n"
            f"```python\nDATA = {data_setting!r}\n```\n\n"
            f"or `setup(data={data_setting!r})` in a notebook's set-up cell.\n")


def share_to_hub(archive: Path, repo_id: str, token: str | None = None) -> str:
    """Upload ``archive`` and its card to the private Hub dataset ``repo_id`` (made if needed), in one commit."""
    token = token or find_token()
    if not token:
        raise CourseError("Sharing to the Hub needs a token with write access: set HF_TOKEN (or log in with "
                          "`hf auth login`), then run this again.")
    api = HfApi(token=token)
    setting = f"{MIRROR_SOURCE}{repo_id}"
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=True, exist_ok=True)
        api.create_commit(repo_id, repo_type="dataset", commit_message=f"Mirror {archive.name} for a class",
                          operations=[CommitOperationAdd(archive.name, str(archive)),
                                      CommitOperationAdd(CARD, mirror_card(archive, setting).encode())])
    except (OSError, ValueError, *transport_errors()) as error:
        why = explain_hub_error(error, repo_id, repo_type="dataset", downloading=False) or first_line(error)
        raise CourseError(f"Could not share {archive.name} to the Hub dataset {repo_id}: {why}.") from error
    return f"Shared {archive.name} to the private Hub dataset {url}; learners set DATA = {setting!r}."


def share_to_folder(archive: Path, folder: Path) -> str:
    """Copy ``archive`` and its card into ``folder`` (a Google Drive folder to share with the class)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / archive.name
    partial = target.with_name(target.name + ".part")
    try:
        shutil.copyfile(archive, partial)
        partial.replace(target)  # a copy cut short is never taken for the archive
        (folder / CARD).write_text(mirror_card(archive, str(folder)), encoding="utf-8")
    except OSError as error:
        partial.unlink(missing_ok=True)
        size = archive.stat().st_size / 1e9
        raise CourseError(f"Could not copy {archive.name} into {folder} ({first_line(error)}): free space there "
                          f"(the archive takes {size:.2f} GB), then run this again.") from error
    return (f"Copied {archive.name} into {folder}; share that folder with the class (Viewer), and each learner "
            "adds a shortcut to it in their Drive and sets DATA to its path under /content/drive/MyDrive.")


def share_data(source: str, to_hub: str | None = None, to_folder: str | Path | None = None) -> list[str]:
    """Put the release ``source`` into a private Hub dataset ``to_hub`` and/or the folder ``to_folder``.

    ``source`` is ``common-voice:<locale>``, ``mdc:<id>``, an archive, or a release's locale folder (the command
    line finds it under a folder given above it). Returns one sentence per copy made, each saying what a learner
    sets to read it.
    """
    if not to_hub and not to_folder:
        raise CourseError("Say where to share the release: --to-hub ORG/NAME (a private Hub dataset) and/or "
                          "--to-folder DIR (a folder to share, e.g. on Google Drive).")
    with tempfile.TemporaryDirectory(prefix="share-data-") as work:  # a packed folder's archive, removed after
        archive = release_archive(source, Path(work))
        done = []
        if to_hub:
            done.append(share_to_hub(archive, to_hub))
        if to_folder:
            done.append(share_to_folder(archive, Path(to_folder).expanduser()))
    return done


def fetch_from_hub(repo_id: str, download: bool = True) -> Path | str:
    """The archive of the Hub mirror ``repo_id``, downloaded once into the Hub's cache (the runtime's disk);
    with ``download=False`` only its name, which checks that this token can read the mirror (the pre-flight)."""
    api = HfApi(token=find_token() or None)
    try:
        archives = [name for name in api.list_repo_files(repo_id, repo_type="dataset")
                    if name.endswith(ARCHIVE_SUFFIXES) and "/" not in name]
        if len(archives) != 1:
            raise DataSourceError(f"The Hub dataset {repo_id} holds {len(archives)} release archives, not one: it is "
                                  "not a mirror made by python -m helpers share-data.")
        if not download:
            return archives[0]
        return Path(api.hf_hub_download(repo_id, archives[0], repo_type="dataset"))
    except (OSError, ValueError, *transport_errors()) as error:
        why = explain_hub_error(error, repo_id, repo_type="dataset") or first_line(error)
        raise DataSourceError(f"Could not fetch the class's mirror {repo_id} from the Hub: {why}. A private mirror is "
                              "read with a token of an account the teacher gave access (HF_TOKEN).") from error


def load_mirror_folder(source: str, elsewhere: Path) -> Path:
    """The unpacked release folder of ``mirror:<owner>/<name>`` or of a folder or file holding its archive,
    unpacked where :func:`unpack_dir` says (``elsewhere`` outside Colab without ``MDC_DOWNLOAD_PATH``)."""
    if source.startswith(MIRROR_SOURCE):
        archive = fetch_from_hub(source[len(MIRROR_SOURCE):].strip())
    else:
        path = Path(source).expanduser()
        archive = path if is_archive(path) else find_archive(path)
        if archive is None:
            raise DataSourceError(f"{path} holds no release archive.")
    into = unpack_dir(elsewhere)
    print(f"Unpacking {archive.name} onto this runtime's disk ({into}), once.")
    return unpack(archive, into)
