"""Common Voice from the Mozilla Data Collective (MDC), through its ``datacollective`` SDK.

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
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import datacollective  # noqa: F401 - importing the SDK loads a .env file into the environment (its key, say)
import requests
from datacollective import download_dataset, get_dataset_details, list_datasets
from datacollective.errors import AuthenticationError, DownloadError, RateLimitError

from helpers.runtime.errors import DataSourceError, can_connect, error_chain, first_line
from helpers.runtime.secrets import colab_secret, in_colab


def mdc_api_key() -> str | None:
    """The MDC API key from the environment, a ``.env`` file (the SDK reads it) or a Colab secret.

    Raises ``SecretNotGranted`` when the Colab secret exists but this notebook may not read it.
    """
    if not os.environ.get("MDC_API_KEY"):
        key = colab_secret("MDC_API_KEY")
        if key:
            os.environ["MDC_API_KEY"] = key  # where the SDK looks for it; never printed
    return os.environ.get("MDC_API_KEY") or None


def _mdc_download_dir() -> str | None:
    """``MDC_DOWNLOAD_PATH`` if set (the SDK reads it); in Colab the runtime's own disk, ``/content/mdc``.

    The archive and its tens of thousands of MP3s are read once, by 01, which copies the clips into the
    workspace; unpacking them on Drive would be slow and fill the learner's quota. After a disconnect, 01
    downloads them again (a few minutes) while every later stage reads the workspace.
    """
    if os.environ.get("MDC_DOWNLOAD_PATH"):
        return None
    return "/content/mdc" if in_colab() else None


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
    """What a failed MDC request means and what to do, as the rest of a sentence; ``None`` for a bug of ours.

    The SDK raises one error per HTTP status (``_send_api_request``) and wraps whatever cut a download in
    its ``DownloadError``, so the chain is searched, the most telling error first.
    """
    chain = error_chain(error)

    def found(kind: type[BaseException] | tuple[type[BaseException], ...]) -> BaseException | None:
        return next((e for e in chain if isinstance(e, kind)), None)

    def answered(kind: type[OSError]) -> OSError | None:
        # The SDK's 403 and 404 are a PermissionError and a FileNotFoundError without an errno, raised before
        # any download starts; the file system's carry one.
        hit = found(kind)
        return hit if hit is not None and hit.errno is None and not found(DownloadError) else None

    if found(AuthenticationError):
        return _KEY_REJECTED
    disk = next((e for e in chain if isinstance(e, OSError) and (e.errno in _DISK_ERRNOS or "not writable" in str(e))),
                None)
    if disk is not None:  # a full disk is the likeliest in Colab, mid-download of a large release
        return (f"the archive could not be written ({first_line(disk)}); free some disk space or set MDC_DOWNLOAD_PATH "
                "to a folder you can write to, then run this again")
    if answered(PermissionError):
        return _terms_not_accepted(first_line(answered(PermissionError)))
    if answered(FileNotFoundError):
        return _no_such_dataset(dataset_id, first_line(answered(FileNotFoundError)))
    if found(RateLimitError):
        return _RATE_LIMITED
    cut = found(DownloadError)
    if cut is not None:
        resumable = "resumes where it stopped" if cut.checksum else "starts it again"
        return (f"the download stopped after {cut.total_downloaded_bytes} of {cut.total_archive_bytes} "
                f"({first_line(error_chain(cut)[-1])}); run this again, which {resumable}")
    if found((requests.ConnectionError, requests.Timeout)):
        return "it could not be reached (no network, or the site is down); check the connection and run this again"
    if found(requests.HTTPError):
        return f"it answered with an error ({first_line(found(requests.HTTPError))}); try again later"
    return None


def download_from_mdc(dataset_id: str, download_dir: str | None = None, extract: bool = True) -> Path:
    """Download (once) a Common Voice release from the Mozilla Data Collective: its unpacked folder, or with
    ``extract=False`` its archive (what the teacher's mirror shares, :mod:`helpers.services.data_mirror`).

    The SDK reads the API key from ``MDC_API_KEY`` itself; we only check it is there, and never print it.
    The SDK downloads to ``<archive>.part`` and renames it when the stream ends; the archive is then checked
    against the size the catalogue lists before it is unpacked, so a download cut short is never used: an
    interrupted download resumes on the next call, a short or damaged archive is removed and downloaded
    again, and an archive already downloaded and unpacked is reused.
    """
    if not dataset_id:
        raise DataSourceError("'mdc:' needs a dataset id after it, e.g. mdc:<id shown on the dataset's MDC page>.")
    if not mdc_api_key():
        raise DataSourceError(
            "Loading from the Mozilla Data Collective needs an API key in the MDC_API_KEY environment variable "
            f"(in Colab: a secret of that name); create one at {MDC_KEYS_PAGE}, then accept the dataset's terms."
        )
    folder = download_dir or _mdc_download_dir()
    archive = None
    try:
        details = get_dataset_details(dataset_id)
        archive = download_dataset(dataset_id, download_directory=folder, extract=False)
        expected = int(details.sizeBytes or 0)
        if expected and archive.stat().st_size != expected:
            raise _IncompleteArchive(f"{archive.name} has {archive.stat().st_size} bytes of {expected}")
        if not extract:
            return Path(archive)
        extracted = download_dataset(dataset_id, download_directory=folder, extract=True)  # reuses the archive
    except (_IncompleteArchive, tarfile.TarError, EOFError, zlib.error) as error:
        if archive is not None:
            archive.unlink(missing_ok=True)  # else every later call would find it and skip the download
        raise DataSourceError(
            f"The archive of {dataset_id!r} downloaded from the Mozilla Data Collective is incomplete or damaged "
            f"({first_line(error)}); it was removed: run this again to download it afresh."
        ) from error
    except (OSError, RuntimeError, ValueError, DownloadError) as error:  # requests' errors are OSErrors
        why = _mdc_problem(error, dataset_id)
        if why is None:
            raise
        raise DataSourceError(f"Could not download {dataset_id!r} from the Mozilla Data Collective: {why}.") from error
    return Path(extracted)


def check_access(dataset_id: str) -> str:
    """Whether this MDC key may download ``dataset_id``, asked with a real request; what the API said, or raises.

    Asks for a download session (``POST /api/datasets/<id>/download``), as a download does first: the API
    answers 401 for a key it rejects and 403 until this account has accepted the dataset's terms, and
    otherwise hands back a pre-signed address of the archive, which is not fetched. Raises
    ``DataSourceError`` with one sentence saying what to do.
    """
    key = mdc_api_key()
    if not key:
        raise DataSourceError(f"No MDC_API_KEY: create a key at {MDC_KEYS_PAGE} (in Colab: a secret of that name).")
    api = (os.environ.get("MDC_API_URL") or _MDC_API).rstrip("/")
    try:
        answer = requests.post(f"{api}/datasets/{dataset_id}/download", timeout=15,
                               headers={"Authorization": f"Bearer {key}"})
    except (requests.ConnectionError, requests.Timeout) as error:
        raise DataSourceError("The Mozilla Data Collective could not be reached (no network, or the site is down); "
                              "check the connection and run this again.") from error
    try:
        detail = str(answer.json().get("error") or answer.json().get("message") or answer.reason)
    except ValueError:
        detail = answer.reason
    why = {401: _KEY_REJECTED, 403: _terms_not_accepted(detail), 404: _no_such_dataset(dataset_id, detail),
           429: _RATE_LIMITED}.get(answer.status_code)
    if why is None and not answer.ok:
        why = f"it answered with an error ({answer.status_code} {detail}); try again later"
    if why:
        raise DataSourceError(f"The Mozilla Data Collective will not let this key download {dataset_id!r}: {why}.")
    size = answer.json().get("sizeBytes")
    return "the key is accepted and this account has accepted the terms" + (
        f": the download ({float(size) / 1e9:.2f} GB) is allowed" if size else ": the download is allowed")


COMMON_VOICE_SOURCE = "common-voice:"  # common-voice:<locale>: the newest release in the MDC's catalogue

_MDC_API = "https://mozilladatacollective.com/api"


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

    The catalogue needs no account or key (``datacollective.list_datasets``); downloading the release does
    (see :func:`download_from_mdc`). Raises ``DataSourceError`` when the catalogue cannot be reached or lists no
    release for ``locale``.
    """
    if not can_connect(os.environ.get("MDC_API_URL") or _MDC_API, timeout=2.0):
        raise DataSourceError(
            "The Mozilla Data Collective's catalogue cannot be reached (no network?), so the newest Common Voice "
            f"release for {locale!r} cannot be looked up; pass mdc:<dataset id> or an unpacked release folder."
        )
    try:
        found = list_datasets(query, locale=locale, sort="newest", results_per_page=50)
    except (OSError, RuntimeError, ValueError) as error:  # requests' errors are OSErrors; 429 a RuntimeError
        raise DataSourceError(f"The MDC's catalogue did not answer ({first_line(error)}); try again later, or pass "
                              "mdc:<dataset id> or an unpacked release folder.") from error
    releases = [item for item in found.items
                if "common voice" in (item.name or "").lower() and "spontaneous" not in (item.name or "").lower()
                and (item.locale or "").lower() == locale.lower()]
    if not releases:
        raise DataSourceError(f"The MDC's catalogue lists no Common Voice release for locale {locale!r}; check the "
                              "locale code on https://mozilladatacollective.com or pass mdc:<dataset id>.")
    # Newest by the version in its name (23.0 after 9.0), the catalogue's own order breaking ties.
    newest = max(enumerate(releases), key=lambda pair: (_version(pair[1].name or ""), -pair[0]))[1]
    version = ".".join(map(str, _version(newest.name or ""))) or None
    return CommonVoiceRelease(id=newest.id, name=newest.name or newest.id, locale=newest.locale or locale,
                              version=version, size_bytes=newest.sizeBytes, licence=newest.licenseAbbreviation,
                              slug=newest.slug)
