"""Common Voice from the Mozilla Data Collective (MDC), over its HTTP API (:mod:`.mdc_http`).

Common Voice left the Hugging Face Hub in October 2025. ``mdc:<dataset id>`` downloads one dataset
(:func:`download_from_mdc`, the API key from ``MDC_API_KEY``, a ``.env`` file or a Colab secret);
``common-voice:<locale>`` first finds the newest release for a locale in the MDC's public catalogue
(:func:`find_common_voice`). Every way a download can fail (no key, a wrong key, terms not accepted, a secret
not granted to this notebook, a cut download, a full disk) ends in one sentence saying what to do, and a
half-downloaded archive is never used. :func:`helpers.data.load_common_voice` then reads the unpacked release
as a Common Voice folder.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import requests
from dotenv import find_dotenv, load_dotenv

from helpers.runtime.errors import DataSourceError, can_connect, first_line
from helpers.runtime.secrets import colab_secret, in_colab
from helpers.services.mdc_http import (
    CutDownload,
    MdcError,
    api_request,
    api_url,
    fetch_archive,
)


def _read_env_file() -> None:
    """Load a ``.env`` file (the first one from the working folder up) into the environment, never over what is
    set there: where a learner outside Colab may keep ``MDC_API_KEY``, as the MDC's own SDK reads it."""
    load_dotenv(find_dotenv(usecwd=True))


def mdc_api_key() -> str | None:
    """The MDC API key from the environment, a ``.env`` file or a Colab secret.

    Raises ``SecretNotGranted`` when the Colab secret exists but this notebook may not read it.
    """
    _read_env_file()
    if not os.environ.get("MDC_API_KEY"):
        key = colab_secret("MDC_API_KEY")
        if key:
            os.environ["MDC_API_KEY"] = key  # read once, and seen by the run's processes; never printed
    return os.environ.get("MDC_API_KEY") or None


def _download_folder(folder: str | None) -> Path:
    """Where archives go, made if missing: ``folder``, else ``MDC_DOWNLOAD_PATH``, else in Colab the runtime's own
    disk, ``/content/mdc``, else ``~/.mozdata/datasets`` (the SDK's, so an archive it downloaded is found).

    The archive and its tens of thousands of MP3s are read once, by 01, which copies the clips into the
    workspace; unpacking them on Drive would be slow and fill the learner's quota. After a disconnect, 01
    downloads them again (a few minutes) while every later stage reads the workspace.
    """
    base = Path(folder or os.environ.get("MDC_DOWNLOAD_PATH")
                or ("/content/mdc" if in_colab() else "~/.mozdata/datasets")).expanduser()
    base.mkdir(parents=True, exist_ok=True)
    if not os.access(base, os.W_OK):
        raise PermissionError(errno.EACCES, "the download folder is not writable", str(base))
    return base


def _unpack_beside(archive: Path) -> Path:
    """``<name>.tar.gz`` unpacked into ``<name>/`` beside it, where the SDK unpacks it, or that folder if it is
    there. It is unpacked into ``<name>.partial/`` and renamed when done, so a cut unpacking is never used."""
    suffix = next((s for s in (".tar.gz", ".tgz") if archive.name.endswith(s) and archive.name != s), None)
    if suffix is None:
        raise DataSourceError(f"The MDC's archive {archive.name} is not a .tar.gz: unpack it yourself and pass the "
                              "folder it unpacks into.")
    target = archive.with_name(archive.name.removesuffix(suffix))
    if target.is_dir():
        return target
    partial = target.with_name(f"{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by an unpacking that was cut
    partial.mkdir()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(partial, filter="data")
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


MDC_KEYS_PAGE = "https://mozilladatacollective.com/api-reference"

# What the file system answers for a download folder that is full, read-only or not a folder.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST,
                errno.EISDIR}


# What the API's answers mean, in the words every failed MDC request ends with (a download, the pre-flight).
_KEY_REJECTED = (f"it rejected the API key in MDC_API_KEY (401 Unauthorized: mistyped, expired or revoked); create a "
                 f"new key at {MDC_KEYS_PAGE} and put it in MDC_API_KEY (in Colab: the secret of that name)")
_RATE_LIMITED = "it is limiting requests (429 Too Many Requests); wait a few minutes and run this again"


def _terms_not_accepted(detail: str) -> str:
    # The API says "Private dataset requires organization membership" when the terms were not accepted.
    return (f"it refused the download ({detail}), which means the dataset's terms have not been accepted with this "
            "account: open the dataset's page on https://mozilladatacollective.com, tick its terms, press Download "
            "or Connect API once, then run this again")


def _no_such_dataset(dataset_id: str, detail: str) -> str:
    return (f"it has no dataset {dataset_id!r} ({detail}); check the id, the last part of the dataset page's "
            "address, or use common-voice:<locale> to find the newest release")


class _IncompleteArchive(Exception):
    """The downloaded archive is shorter or longer than the catalogue says."""


def _mdc_problem(error: BaseException, dataset_id: str) -> str | None:
    """What a failed MDC request means and what to do, as the rest of a sentence; ``None`` for a bug of ours."""
    if isinstance(error, MdcError):
        gone = _no_such_dataset(dataset_id, error.detail)  # 410: removed from the MDC
        return {401: _KEY_REJECTED, 403: _terms_not_accepted(error.detail), 404: gone, 410: gone,
                429: _RATE_LIMITED}.get(error.status or 0, f"it answered with an error ({error}); try again later")
    if isinstance(error, CutDownload):
        return (f"the download stopped after {error.kept / 1e6:.1f} of {error.total / 1e6:.1f} MB ({error.why}); run "
                f"this again, which {'resumes where it stopped' if error.resumable else 'starts it again'}")
    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return "it could not be reached (no network, or the site is down); check the connection and run this again"
    if isinstance(error, requests.RequestException):  # an answer that is not the API's JSON
        return f"it answered with an error ({first_line(error)}); try again later"
    if isinstance(error, OSError) and error.errno in _DISK_ERRNOS:  # likeliest in Colab, mid-download
        return (f"the archive could not be written ({first_line(error)}); free some disk space or set "
                "MDC_DOWNLOAD_PATH to a folder you can write to, then run this again")
    return None


def _explain(error: Exception, dataset_id: str, failed: str) -> NoReturn:
    """Raise ``DataSourceError`` with ``failed`` and what ``error`` means, or ``error`` itself for a bug of ours."""
    why = _mdc_problem(error, dataset_id)
    if why is None:
        raise error
    raise DataSourceError(f"{failed}: {why}.") from error


def download_from_mdc(dataset_id: str, download_dir: str | None = None, extract: bool = True) -> Path:
    """Download (once) a Common Voice release from the Mozilla Data Collective: its unpacked folder, or with
    ``extract=False`` its archive (what the teacher's mirror shares, :mod:`helpers.services.data_mirror`).

    The key (:func:`mdc_api_key`) is sent with the request for a download session only, and never printed.
    The archive is streamed to ``<archive>.part`` and renamed when the stream ends (:func:`.mdc_http.fetch_archive`);
    it is then checked against the size the catalogue lists before it is unpacked, so a download cut short is
    never used: an interrupted download resumes on the next call, a short or damaged archive is removed and
    downloaded again, and an archive already downloaded and unpacked is reused.
    """
    if not dataset_id:
        raise DataSourceError("'mdc:' needs a dataset id after it, e.g. mdc:<id shown on the dataset's MDC page>.")
    key = mdc_api_key()
    if not key:
        raise DataSourceError(
            "Loading from the Mozilla Data Collective needs an API key in the MDC_API_KEY environment variable "
            f"(in Colab: a secret of that name); create one at {MDC_KEYS_PAGE}, then accept the dataset's terms."
        )
    archive = None
    try:
        details = api_request("GET", f"/datasets/{dataset_id}")  # public: the SDK sends no key with it either
        name = str(details.get("filename") or "")
        if not name or Path(name).name != name:
            raise MdcError(None, f"(the details of {dataset_id!r} name no archive file: {name!r})")
        archive = _download_folder(download_dir) / name
        if not archive.exists():
            session = api_request("POST", f"/datasets/{details.get('id') or dataset_id}/download", key=key)
            fetch_archive(session, archive)
        expected = int(details.get("sizeBytes") or 0)
        if expected and archive.stat().st_size != expected:
            raise _IncompleteArchive(f"{archive.name} has {archive.stat().st_size} bytes of {expected}")
        return _unpack_beside(archive) if extract else archive
    except (_IncompleteArchive, tarfile.TarError, EOFError, zlib.error) as error:
        if archive is not None:
            archive.unlink(missing_ok=True)  # else every later call would find it and skip the download
        raise DataSourceError(
            f"The archive of {dataset_id!r} downloaded from the Mozilla Data Collective is incomplete or damaged "
            f"({first_line(error)}); it was removed: run this again to download it afresh."
        ) from error
    except (OSError, MdcError, CutDownload) as error:  # requests' errors are OSErrors
        _explain(error, dataset_id, f"Could not download {dataset_id!r} from the Mozilla Data Collective")


def check_access(dataset_id: str) -> str:
    """Whether this MDC key may download ``dataset_id``, asked with a real request; what the API said, or raises.

    Asks for a download session (``POST /api/datasets/<id>/download``), as a download does: the API answers 401
    for a key it rejects and 403 until this account has accepted the dataset's terms, and otherwise hands back a
    pre-signed address of the archive, which is not fetched. Raises ``DataSourceError`` with one sentence saying
    what to do.
    """
    key = mdc_api_key()
    if not key:
        raise DataSourceError(f"No MDC_API_KEY: create a key at {MDC_KEYS_PAGE} (in Colab: a secret of that name).")
    try:
        session = api_request("POST", f"/datasets/{dataset_id}/download", key=key)
    except (OSError, MdcError) as error:
        _explain(error, dataset_id, f"Could not check this key on {dataset_id!r} with the Mozilla Data Collective")
    size = session.get("sizeBytes")
    return "the key is accepted and this account has accepted the terms" + (
        f": the download ({float(size) / 1e9:.2f} GB) is allowed" if size else ": the download is allowed")


COMMON_VOICE_SOURCE = "common-voice:"  # common-voice:<locale>: the newest release in the MDC's catalogue


@dataclass
class CommonVoiceRelease:
    """One Common Voice release as the MDC's public catalogue lists it."""

    id: str
    name: str
    locale: str
    version: str | None = None
    size_bytes: float | None = None
    licence: str | None = None
    slug: str | None = None

    def describe(self) -> str:
        """Name, version, size, licence and id, for the learner to check before downloading."""
        size = f"{self.size_bytes / 1e9:.2f} GB" if self.size_bytes else "size not listed"
        return (f"{self.name} (version {self.version or '?'}, locale {self.locale}): {size}, licence "
                f"{self.licence or 'not listed'}; MDC id {self.id}"
                + (f" (slug {self.slug})" if self.slug else ""))


def _version(name: str) -> tuple[int, ...]:
    found = re.search(r"(\d+(?:\.\d+)*)", name)
    return tuple(int(part) for part in found.group(1).split(".")) if found else ()


def find_common_voice(locale: str, query: str = "Common Voice Scripted Speech") -> CommonVoiceRelease:
    """The newest Common Voice (scripted speech) release for ``locale`` in the MDC's public catalogue.

    The catalogue needs no account or key (``GET /api/datasets``); downloading the release does (see
    :func:`download_from_mdc`). Raises ``DataSourceError`` when the catalogue cannot be reached or lists no
    release for ``locale``.
    """
    _read_env_file()  # MDC_API_URL may be there
    if not can_connect(api_url(), timeout=2.0):
        raise DataSourceError(
            "The Mozilla Data Collective's catalogue cannot be reached (no network?), so the newest Common Voice "
            f"release for {locale!r} cannot be looked up; pass mdc:<dataset id> or an unpacked release folder."
        )
    try:  # what the SDK's list_datasets(query, locale=locale, sort="newest", results_per_page=50) sends
        found = api_request("GET", "/datasets", params={"q": query, "limit": 50, "locale": locale, "sort": "newest"})
    except (OSError, MdcError) as error:  # requests' errors are OSErrors
        raise DataSourceError(f"The MDC's catalogue did not answer ({first_line(error)}); try again later, or pass "
                              "mdc:<dataset id> or an unpacked release folder.") from error
    items = [item for item in found.get("items") or [] if isinstance(item, dict)]
    releases = [item for item in items
                if "common voice" in str(item.get("name") or "").lower()
                and "spontaneous" not in str(item.get("name") or "").lower()
                and str(item.get("locale") or "").lower() == locale.lower()]
    if not releases:
        raise DataSourceError(f"The MDC's catalogue lists no Common Voice release for locale {locale!r}; check the "
                              "locale code on https://mozilladatacollective.com or pass mdc:<dataset id>.")
    # Newest by the version in its name (23.0 after 9.0), the catalogue's own order breaking ties.
    newest = max(enumerate(releases), key=lambda pair: (_version(str(pair[1]["name"])), -pair[0]))[1]
    version = ".".join(map(str, _version(str(newest["name"])))) or None
    return CommonVoiceRelease(id=str(newest["id"]), name=str(newest["name"]), locale=newest.get("locale") or locale,
                              version=version, size_bytes=newest.get("sizeBytes"),
                              licence=newest.get("licenseAbbreviation"), slug=newest.get("slug"))
