"""A local server speaking the Kaggle API v1 that ``kagglesdk`` (and so ``kaggle`` and
``kagglehub``) calls for datasets and models.

``kagglesdk`` posts JSON to ``{endpoint}/api/v1/{service}/{method}``, where the endpoint
comes from ``KAGGLE_API_ENVIRONMENT`` and is hard-coded per environment
(``kagglesdk/kaggle_env.py``): ``LOCALHOST`` → ``http://localhost``, ``TEST`` →
``http://localhost:7777``, ``PROD`` → ``https://api.kaggle.com`` (without ``/api``).
No documented switch takes an arbitrary port, so:

* ``KaggleServer(port=7777)`` + ``KAGGLE_API_ENVIRONMENT=TEST`` serves unmodified
  ``kaggle`` / ``kagglehub`` processes;
* in-process callers build ``kagglesdk.KaggleClient(env=KaggleEnv.TEST)`` and point its
  public ``http_client()`` at ``server.endpoint`` (the fetcher's ``AIDP_KAGGLE_ENDPOINT``).

Served (all ``POST`` with a JSON body, auth by ``Authorization: Bearer <api token>`` or
HTTP Basic ``username:key``)::

    datasets.DatasetApiService/GetDataset          {ownerSlug, datasetSlug} -> ApiDataset
    datasets.DatasetApiService/ListDatasetFiles    {..., datasetVersionNumber} -> files
    datasets.DatasetApiService/GetDatasetMetadata  {ownerSlug, datasetSlug} -> {info}
    datasets.DatasetApiService/DownloadDataset     {..., datasetVersionNumber?, fileName?}
                                                   -> 302 to a signed storage URL (zip)
    models.ModelApiService/GetModelInstance        {ownerSlug, modelSlug, framework,
                                                    instanceSlug} -> ApiModelInstance
    models.ModelApiService/DownloadModelInstanceVersion  {..., versionNumber, path?}
                                                   -> 302 to a signed storage URL (tar.gz)

Model frameworks travel as kagglesdk enum names (``MODEL_FRAMEWORK_PY_TORCH``); the server
compares them without prefix, underscores or case (``pytorch``, ``PyTorch`` match).

Errors are JSON ``{"code": N, "message": ...}`` with the same HTTP status: 401 without
credentials, 403 for a dataset the caller may not access, 404 unknown dataset/version.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import tarfile
import threading
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from tests.support.hf_server import _Server

__all__ = ["KaggleServer"]

_PREFIX = "/api/v1/"


@dataclass
class _Dataset:
    owner: str
    slug: str
    versions: list[dict[str, bytes]] = field(default_factory=list)
    allowed: set[str] | None = None  # None = every authenticated user


def _framework_key(name: str) -> str:
    return name.upper().removeprefix("MODEL_FRAMEWORK_").replace("_", "").replace("-", "").lower()


class KaggleServer:
    """An in-memory Kaggle on ``127.0.0.1:<port>``, served from a thread.

    ``endpoint`` is the base URL kagglesdk's environment maps to (``http://127.0.0.1:P``);
    ``requests`` lists ``(method, path)`` seen; ``downloads()`` counts archive downloads.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.requests: list[tuple[str, str]] = []
        self._users: dict[str, tuple[str | None, str | None]] = {}  # name -> (key, token)
        self._datasets: dict[tuple[str, str], _Dataset] = {}
        self._models: dict[tuple[str, str, str, str], _Dataset] = {}
        self._storage: dict[str, bytes] = {}
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    url = endpoint

    def start(self) -> KaggleServer:
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), self, _Handler)
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.drop_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> KaggleServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- content -----------------------------------------------------------------------

    def add_user(self, username: str, *, key: str | None = None, token: str | None = None) -> None:
        """Accept ``username:key`` (legacy API key) and/or ``Bearer token`` (API token)."""
        with self._lock:
            self._users[username] = (key, token)

    def publish(self, ref: str, files: Mapping[str, bytes]) -> int:
        """Add a new version of dataset ``owner/slug`` with ``files``; returns its number."""
        owner, slug = ref.split("/", 1)
        with self._lock:
            dataset = self._datasets.setdefault((owner, slug), _Dataset(owner, slug))
            dataset.versions.append(dict(files))
            return len(dataset.versions)

    def publish_model(self, handle: str, files: Mapping[str, bytes]) -> int:
        """Add a version of model ``owner/slug/framework/variation``; returns its number."""
        owner, slug, framework, variation = handle.split("/")
        key = (owner, slug, _framework_key(framework), variation)
        with self._lock:
            model = self._models.setdefault(key, _Dataset(owner, f"{slug}/{variation}"))
            model.versions.append(dict(files))
            return len(model.versions)

    def restrict(self, ref: str, *, allowed: Iterable[str]) -> None:
        """Only ``allowed`` users may read ``owner/slug`` (others get 403)."""
        owner, slug = ref.split("/", 1)
        with self._lock:
            self._datasets.setdefault((owner, slug), _Dataset(owner, slug)).allowed = set(allowed)

    def downloads(self) -> int:
        return sum(1 for method, path in list(self.requests) if path.startswith("/_storage/"))

    # -- used by the handler -----------------------------------------------------------

    def _user(self, authorization: str | None) -> str | None:
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        with self._lock:
            if scheme == "Bearer":
                for name, (_key, token) in self._users.items():
                    if token is not None and secrets.compare_digest(token, value):
                        return name
            elif scheme == "Basic":
                try:
                    name, _, key = base64.b64decode(value).decode().partition(":")
                except ValueError:
                    return None
                stored = self._users.get(name)
                if stored and stored[0] is not None and secrets.compare_digest(stored[0], key):
                    return name
        return None


class _KaggleError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _zip(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def _tar(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1704067200
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    @property
    def kaggle(self) -> KaggleServer:
        return self.server.hub  # type: ignore[no-any-return]

    def do_GET(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        self.kaggle.requests.append(("GET", path))
        data = self.kaggle._storage.get(path)
        if data is None:
            self._error(_KaggleError(404, "Not found"))
            return
        self.send_response(200)
        self.send_header(
            "Content-Type",
            "application/zip" if path.endswith(".zip") else "application/octet-stream",
        )
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Last-Modified", datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        self.kaggle.requests.append(("POST", path))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
            if not path.startswith(_PREFIX):
                raise _KaggleError(404, "Not found")
            method = path.removeprefix(_PREFIX)
            user = self.kaggle._user(self.headers.get("Authorization"))
            if user is None:
                raise _KaggleError(401, "Unauthenticated: missing or invalid Kaggle credentials")
            handler = {
                "datasets.DatasetApiService/GetDataset": self._get_dataset,
                "datasets.DatasetApiService/ListDatasetFiles": self._list_files,
                "datasets.DatasetApiService/GetDatasetMetadata": self._metadata,
                "datasets.DatasetApiService/DownloadDataset": self._download,
                "models.ModelApiService/GetModelInstance": self._get_model_instance,
                "models.ModelApiService/DownloadModelInstanceVersion": self._download_model,
            }.get(method)
            if handler is None:
                raise _KaggleError(404, f"Unknown method {method}")
            handler(user, body)
        except _KaggleError as err:
            self._error(err)
        except (ValueError, KeyError) as err:
            self._error(_KaggleError(400, f"Bad request: {err}"))

    # methods ---------------------------------------------------------------------------

    def _dataset(self, user: str, body: dict[str, Any]) -> _Dataset:
        owner, slug = body.get("ownerSlug", ""), body.get("datasetSlug", "")
        dataset = self.kaggle._datasets.get((owner, slug))
        if dataset is None or not dataset.versions:
            raise _KaggleError(404, f"Dataset {owner}/{slug} not found")
        if dataset.allowed is not None and user not in dataset.allowed and user != owner:
            raise _KaggleError(403, "Permission 'datasets.get' was denied")
        return dataset

    def _version(self, dataset: _Dataset, body: dict[str, Any]) -> int:
        number = body.get("datasetVersionNumber") or len(dataset.versions)
        if not 1 <= int(number) <= len(dataset.versions):
            raise _KaggleError(404, f"Version {number} of {dataset.owner}/{dataset.slug} not found")
        return int(number)

    def _get_dataset(self, user: str, body: dict[str, Any]) -> None:
        dataset = self._dataset(user, body)
        latest = dataset.versions[-1]
        self._json(
            {
                "id": int(
                    hashlib.sha1(f"{dataset.owner}/{dataset.slug}".encode()).hexdigest()[:8], 16
                ),  # noqa: S324
                "ref": f"{dataset.owner}/{dataset.slug}",
                "title": dataset.slug,
                "ownerRef": dataset.owner,
                "ownerName": dataset.owner,
                "url": f"{self.kaggle.endpoint}/datasets/{dataset.owner}/{dataset.slug}",
                "totalBytes": sum(len(d) for d in latest.values()),
                "currentVersionNumber": len(dataset.versions),
                "isPrivate": dataset.allowed is not None,
                "versions": [{"versionNumber": n} for n in range(len(dataset.versions), 0, -1)],
            }
        )

    def _list_files(self, user: str, body: dict[str, Any]) -> None:
        dataset = self._dataset(user, body)
        files = dataset.versions[self._version(dataset, body) - 1]
        self._json(
            {
                "datasetFiles": [
                    {
                        "ref": name,
                        "name": name,
                        "totalBytes": len(data),
                        "creationDate": "2024-01-01T00:00:00Z",
                    }
                    for name, data in sorted(files.items())
                ]
            }
        )

    def _metadata(self, user: str, body: dict[str, Any]) -> None:
        dataset = self._dataset(user, body)
        self._json(
            {
                "info": {
                    "ownerUser": dataset.owner,
                    "datasetSlug": dataset.slug,
                    "title": dataset.slug,
                }
            }
        )

    def _download(self, user: str, body: dict[str, Any]) -> None:
        dataset = self._dataset(user, body)
        version = self._version(dataset, body)
        files = dataset.versions[version - 1]
        file_name = body.get("fileName")
        signature = secrets.token_hex(8)
        base = f"/_storage/{dataset.owner}/{dataset.slug}/{version}/{signature}"
        if file_name:
            if file_name not in files:
                raise _KaggleError(404, f"File {file_name} not found")
            location, data = f"{base}/{quote(file_name)}", files[file_name]
        else:
            location, data = f"{base}/{dataset.slug}.zip", _zip(files)
        self.kaggle._storage[unquote(location)] = data
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _model(self, body: dict[str, Any]) -> tuple[_Dataset, str]:
        owner, slug = body.get("ownerSlug", ""), body.get("modelSlug", "")
        framework, variation = body.get("framework", ""), body.get("instanceSlug", "")
        model = self.kaggle._models.get((owner, slug, _framework_key(framework), variation))
        handle = f"{owner}/{slug}/{framework}/{variation}"
        if model is None or not model.versions:
            raise _KaggleError(404, f"Model instance {handle} not found")
        return model, handle

    def _get_model_instance(self, _user: str, body: dict[str, Any]) -> None:
        model, handle = self._model(body)
        self._json(
            {
                "id": int(hashlib.sha1(handle.encode()).hexdigest()[:8], 16),  # noqa: S324
                "slug": body.get("instanceSlug", ""),
                "framework": body.get("framework", ""),
                "versionNumber": len(model.versions),
                "url": f"{self.kaggle.endpoint}/models/{handle}",
                "totalUncompressedBytes": sum(len(d) for d in model.versions[-1].values()),
            }
        )

    def _download_model(self, _user: str, body: dict[str, Any]) -> None:
        model, _handle = self._model(body)
        number = int(body.get("versionNumber") or 0)
        if not 1 <= number <= len(model.versions):
            raise _KaggleError(404, f"Version {number} of model {_handle} not found")
        location = f"/_storage/models/{secrets.token_hex(8)}/model.tar.gz"
        self.kaggle._storage[location] = _tar(model.versions[number - 1])
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    # responses -------------------------------------------------------------------------

    def _json(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, err: _KaggleError) -> None:
        self._json({"code": err.status, "message": err.message}, status=err.status)
