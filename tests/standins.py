"""Local stand-ins for the services the course talks to, at the network edge: the course's MDC client
(``helpers.services.mdc_http``, over ``requests``) and the real ``huggingface_hub`` talk HTTP to them on
127.0.0.1, and Colab's ``google.colab`` is a module shaped like Colab's own. Nothing of ``helpers`` is replaced.

* :class:`MdcStandIn` answers as the Mozilla Data Collective's API (``https://mozilladatacollective.com/api``)
  does, the API its SDK ``datacollective`` 0.7 speaks: the public catalogue ``GET /api/datasets`` (400 for a
  query parameter or value it does not take: ``q``, ``limit`` 1-100, ``page``, ``locale``, ``sort``, ...),
  details ``GET /api/datasets/<id>``, ``POST /api/datasets/<id>/download`` (Bearer key; 401 for a wrong
  key, 403 with the API's own words when the terms were not accepted) returning a pre-signed URL, size
  and checksum, and the archive itself, with ``Range`` for a resumed download.
* :class:`HubStandIn` answers the endpoints ``HfApi.whoami``, ``create_repo``, ``upload_folder`` and
  ``create_commit`` use (``/api/whoami-v2``, ``/api/repos/create``, ``/api/validate-yaml``,
  ``/api/{models,datasets}/<repo>/preupload/<rev>``, ``/api/{models,datasets}/<repo>/commit/<rev>``); it answers
  "regular" upload mode for every file, so the files arrive base64-encoded inside the commit instead of through
  LFS or Xet storage, which it does not speak. For reading back what was committed it answers
  ``list_repo_files`` (``/api/<type>s/<repo>/tree/<rev>``) and ``hf_hub_download`` (``HEAD`` and ``GET``
  ``/[<type>s/]<repo>/resolve/<rev>/<path>``, with the commit and ETag headers the client requires).
* :func:`install_colab` puts a ``google.colab`` in ``sys.modules`` with Colab's ``userdata`` API:
  ``get(key)`` returns the secret or raises ``SecretNotFoundError`` (a ``google.colab.errors.Error``) or
  ``NotebookAccessError`` (the notebook was not given access), as Colab's ``userdata.py`` does.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import sys
import tarfile
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse


class _Server:
    """A ``ThreadingHTTPServer`` on a free port of 127.0.0.1, in a daemon thread, routing to ``handle``."""

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:
                owner._dispatch(self, "GET")

            def do_POST(self) -> None:
                owner._dispatch(self, "POST")

            def do_HEAD(self) -> None:
                owner._dispatch(self, "HEAD")

        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _dispatch(self, request: BaseHTTPRequestHandler, method: str) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        self.requests.append((method, request.path, dict(request.headers)))
        self.handle(request, method, urlparse(request.path), body)

    def handle(self, request, method, url, body) -> None:
        raise NotImplementedError

    @staticmethod
    def send_json(request: BaseHTTPRequestHandler, status: int, payload) -> None:
        data = json.dumps(payload).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)


def common_voice_archive(corpus: Path, release: str = "cv-corpus-23.0-2025-09-05", locale: str = "dv") -> bytes:
    """A ``.tar.gz`` laid out as an MDC Common Voice download: ``<release>/<locale>/clips/*.mp3`` and the tsv files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(corpus.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=f"{release}/{locale}/{path.relative_to(corpus).as_posix()}")
    return buffer.getvalue()


class MdcStandIn(_Server):
    """The Mozilla Data Collective's API, for one downloadable Common Voice release and a few listed ones.

    ``terms_accepted = False`` makes downloads answer 403 as the API does before the terms were accepted;
    ``cut_next`` cuts the next archive download halfway: ``"length"`` after announcing the full
    ``Content-Length`` (the client can tell), ``"no-length"`` with no length at all (it cannot).
    """

    KEY = "mdc-key-for-tests"
    # The catalogue's query parameters (the SDK's list_datasets sends these names) and the sorts it takes.
    CATALOGUE_PARAMS = ("q", "limit", "page", "task", "locale", "license", "format", "sort", "sortDirection",
                        "uploadDate", "sample", "pricing")
    SORTS = ("relevance", "newest", "size")
    RELEASE_ID = "cmf-cv23-dv"
    FILENAME = "mcv-scripted-dv-v23.0.tar.gz"

    def __init__(self, archive: bytes) -> None:
        super().__init__()
        self.archive = archive
        self.terms_accepted = True
        self.cut_next: str | None = None
        release = {"id": self.RELEASE_ID, "name": "Common Voice Scripted Speech 23.0 - Dhivehi", "locale": "dv",
                   "slug": "common-voice-scripted-speech-23-0-dhivehi", "licenseAbbreviation": "CC0-1.0",
                   "filename": self.FILENAME, "sizeBytes": len(archive),
                   "checksum": hashlib.sha256(archive).hexdigest()}
        self.catalogue = [
            {"id": "cmf-sps-dv", "name": "Common Voice Spontaneous Speech 25.0 - Dhivehi", "locale": "dv"},
            {"id": "cmf-cv22-dv", "name": "Common Voice Scripted Speech 22.0 - Dhivehi", "locale": "dv",
             "sizeBytes": 9e8},
            release,
            {"id": "cmf-cv9-dv", "name": "Common Voice Scripted Speech 9.0 - Dhivehi", "locale": "dv"},
            {"id": "cmf-cv24-si", "name": "Common Voice Scripted Speech 24.0 - Sinhala", "locale": "si"},
            {"id": "cmf-news-dv", "name": "Dhivehi news readings 30.0", "locale": "dv"},
        ]

    def handle(self, request, method, url, body) -> None:
        path, query = url.path, parse_qs(url.query)
        if method == "GET" and path == "/api/datasets":
            return self._catalogue(request, query)
        found = re.fullmatch(r"/api/datasets/([^/]+)(/download)?", path)
        if found:
            item = next((i for i in self.catalogue if found.group(1) in (i["id"], i.get("slug"))), None)
            if item is None:
                return self.send_json(request, 404, {"error": "Dataset not found"})
            if method == "GET" and not found.group(2):
                return self.send_json(request, 200, item)
            if method == "POST" and found.group(2):
                return self._download_session(request, item)
        if method == "GET" and path == f"/files/{self.FILENAME}":
            return self._archive(request)
        self.send_json(request, 404, {"error": f"no route {method} {path}"})

    def _catalogue(self, request, query: dict[str, list[str]]) -> None:
        unknown = sorted(set(query) - set(self.CATALOGUE_PARAMS))
        limit = query.get("limit", ["24"])[-1]
        if unknown or not limit.isdigit() or not 1 <= int(limit) <= 100 or query.get("sort", ["relevance"])[-1] \
                not in self.SORTS:
            return self.send_json(request, 400, {"error": "Invalid query parameters", "message":
                                                 f"unknown {unknown}" if unknown else "limit or sort out of range"})
        locales = set(query.get("locale", []))
        items = [item for item in self.catalogue if not locales or item["locale"] in locales]
        return self.send_json(request, 200, {"items": items[: int(limit)], "total": len(items)})

    def _download_session(self, request, item) -> None:
        if request.headers.get("Authorization") != f"Bearer {self.KEY}":
            return self.send_json(request, 401, {"error": "Invalid API key"})
        if not self.terms_accepted:  # what the API says today (datacollective-python issue #64)
            return self.send_json(request, 403, {"error": "Access denied. Private dataset requires organization membership"})
        self.send_json(request, 200, {"downloadUrl": f"{self.url}/files/{self.FILENAME}?signature=x",
                                      "sizeBytes": item["sizeBytes"], "checksum": item["checksum"]})

    def _archive(self, request) -> None:
        start = 0
        ranged = re.fullmatch(r"bytes=(\d+)-", request.headers.get("Range", ""))
        if ranged:
            start = int(ranged.group(1))
        body = self.archive[start:]
        cut, self.cut_next = self.cut_next, None
        request.send_response(206 if ranged else 200)
        if ranged:
            request.send_header("Content-Range", f"bytes {start}-{len(self.archive) - 1}/{len(self.archive)}")
        if cut != "no-length":
            request.send_header("Content-Length", str(len(body)))
        else:
            request.send_header("Connection", "close")
        request.end_headers()
        request.wfile.write(body[: len(body) // 2] if cut else body)
        if cut:
            request.wfile.flush()
            request.close_connection = True
            request.connection.shutdown(1)  # the network drops: the client sees the body end here


class HubStandIn(_Server):
    """The Hugging Face Hub's API for one account: whoami, create a repo, and commit files to it.

    ``commits`` holds, per repo, the files of each commit as ``{path: bytes}``; ``refuse_commits`` answers
    commits with 403 as the Hub does for a read-only token.
    """

    USER = "learner"

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.repos: dict[str, dict] = {}
        self.commits: dict[str, list[dict[str, bytes]]] = {}
        self.refuse_commits = False
        self.accepted: dict[str, list[dict[str, bytes]]] = {}  # the commits not refused: what the repo holds

    def handle(self, request, method, url, body) -> None:
        path = url.path
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self.send_json(request, 401, {"error": "Invalid credentials in Authorization header"})
        if method == "GET" and path == "/api/whoami-v2":
            return self.send_json(request, 200, {"type": "user", "name": self.USER, "orgs": [],
                                                 "auth": {"accessToken": {"role": "write"}}})
        if method == "POST" and path == "/api/repos/create":
            payload = json.loads(body)
            repo_id = f"{payload.get('organization') or self.USER}/{payload['name']}"
            self.repos.setdefault(repo_id, payload)
            kind = payload.get("type") or "model"
            return self.send_json(request, 200, {"url": f"{self.url}/{'' if kind == 'model' else kind + 's/'}{repo_id}",
                                                 "name": repo_id})
        if method == "POST" and path == "/api/validate-yaml":
            return self.send_json(request, 200, {"errors": [], "warnings": []})
        found = re.fullmatch(r"/api/(?:models|datasets)/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path)
        if method == "GET" and found and found.group(1) in self.repos:
            return self.send_json(request, 200, [{"type": "file", "path": name, "size": len(data),
                                                  "oid": hashlib.sha1(data).hexdigest()}
                                                 for name, data in sorted(self.files(found.group(1)).items())])
        found = re.fullmatch(r"/(?:datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if method in ("GET", "HEAD") and found and found.group(1) in self.repos:
            return self._file(request, method, found.group(1), unquote(found.group(3)))
        found = re.fullmatch(r"/api/(?:models|datasets)/([^/]+/[^/]+)/(preupload|commit)/([^/]+)", path)
        if method == "POST" and found and found.group(1) in self.repos:
            repo_id, action = found.group(1), found.group(2)
            if action == "preupload":
                files = json.loads(body)["files"]
                return self.send_json(request, 200, {"files": [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
            return self._commit(request, repo_id, body)
        self.send_json(request, 404, {"error": f"no route {method} {path}"})

    def files(self, repo_id: str) -> dict[str, bytes]:
        """The repo's files at its last accepted commit."""
        merged: dict[str, bytes] = {}
        for commit in self.accepted.get(repo_id, []):
            merged.update(commit)
        return merged

    def _file(self, request, method: str, repo_id: str, name: str) -> None:
        data = self.files(repo_id).get(name)
        if data is None:
            request.send_response(404)
            request.send_header("X-Error-Code", "EntryNotFound")
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        request.send_response(200)
        request.send_header("X-Repo-Commit", hashlib.sha1(repo_id.encode()).hexdigest())
        request.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if method == "GET":
            request.wfile.write(data)

    def _commit(self, request, repo_id: str, body: bytes) -> None:
        files = {}
        for line in body.splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                value = item["value"]
                files[value["path"]] = base64.b64decode(value["content"]) if value.get("encoding") == "base64" \
                    else value["content"].encode()
        self.commits.setdefault(repo_id, []).append(files)
        if self.refuse_commits:
            return self.send_json(request, 403, {"error": "You don't have the rights to create a commit here"})
        self.accepted.setdefault(repo_id, []).append(files)
        oid = hashlib.sha1(body).hexdigest()
        self.send_json(request, 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid,
                                      "pullRequestUrl": None})


def install_colab(monkeypatch, secrets: dict[str, str], not_granted: tuple[str, ...] = ()) -> None:
    """A ``google.colab`` with Colab's ``userdata`` (and ``errors``) API: ``secrets`` are readable, the names
    in ``not_granted`` exist but this notebook was not given access, any other name does not exist."""
    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    colab.__path__ = []  # a package, so that "from google.colab import userdata" finds its submodules
    errors = types.ModuleType("google.colab.errors")
    userdata = types.ModuleType("google.colab.userdata")

    class Error(Exception):
        """Base class for Colab's errors."""

    class NotebookAccessError(Exception):
        def __init__(self, key):
            super().__init__(f"Notebook does not have access to secret {key}")

    class SecretNotFoundError(Error):
        def __init__(self, key):
            super().__init__(f"Secret {key} does not exist.")

    def get(key):
        if key in not_granted:
            raise NotebookAccessError(key)
        if key not in secrets:
            raise SecretNotFoundError(key)
        return secrets[key]

    errors.Error = Error
    userdata.NotebookAccessError, userdata.SecretNotFoundError, userdata.get = NotebookAccessError, SecretNotFoundError, get
    colab.errors, colab.userdata = errors, userdata
    if "google" in sys.modules:  # google.protobuf's namespace package: keep it, add colab beside protobuf
        monkeypatch.setattr(sys.modules["google"], "colab", colab, raising=False)
    else:
        google.colab = colab
        monkeypatch.setitem(sys.modules, "google", google)
    for name, module in (("google.colab", colab), ("google.colab.errors", errors), ("google.colab.userdata", userdata)):
        monkeypatch.setitem(sys.modules, name, module)
