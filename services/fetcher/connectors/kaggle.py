"""Kaggle datasets and models through the official SDK (``kagglesdk``, which ``kaggle``
and ``kagglehub`` are built on).

``owner/slug`` (a dataset) resolves to its current version number (one ``GetDataset``
call); ``models/owner/slug/framework/variation`` (a model instance, as kagglehub names
it) to its current version (one ``GetModelInstance`` call); ``@N`` is already pinned.
The version's archive (zip for datasets, tar.gz for models) is streamed to scratch and its
members extracted and stored one at a time. Credentials (an API token, or a username and
key) are passed to the client per call. The environment is the client's own switch
(``KAGGLE_API_ENVIRONMENT``); ``endpoint`` overrides the URL it maps to.
"""

from __future__ import annotations

import gzip
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from services.fetcher.connectors.base import Connector, Credentials, Progress, RemoteFile
from services.fetcher.connectors.common import write_chunks
from services.fetcher.errors import FetchFailed
from shared.spec import Source

__all__ = ["KaggleConnector"]

_NEEDS_CREDENTIALS = (
    "store your Kaggle API token with `aidp secrets set KAGGLE_API_TOKEN` (or KAGGLE_USERNAME "
    "and KAGGLE_KEY) and add its name to the spec's `secrets:` list"
)


@dataclass(frozen=True)
class _ModelHandle:
    owner: str
    model: str
    framework: Any  # kagglesdk ModelFramework
    variation: str

    def fill(self, request: Any) -> Any:
        request.owner_slug, request.model_slug = self.owner, self.model
        request.framework, request.instance_slug = self.framework, self.variation
        return request


def _framework(name: str, source: Source) -> Any:
    """kagglesdk's ModelFramework for ``pytorch`` / ``PyTorch`` / ``tensorflow2`` / ..."""
    from kagglesdk.models.types.model_enums import ModelFramework

    def key(text: str) -> str:
        return text.upper().removeprefix("MODEL_FRAMEWORK_").replace("_", "").replace("-", "")

    for member in ModelFramework:
        if member is not ModelFramework.MODEL_FRAMEWORK_UNSPECIFIED and key(member.name) == key(
            name
        ):
            return member
    known = ", ".join(
        member.name.removeprefix("MODEL_FRAMEWORK_").lower().replace("_", "")
        for member in ModelFramework
        if member is not ModelFramework.MODEL_FRAMEWORK_UNSPECIFIED
    )
    raise FetchFailed(f"{source.uri}: unknown Kaggle model framework {name!r} (one of {known}).")


class KaggleConnector(Connector):
    def __init__(
        self, *, environment: str = "PROD", endpoint: str | None = None, timeout: float = 60.0
    ) -> None:
        self.environment = environment
        self.endpoint = endpoint
        self.timeout = timeout

    def _client(self, creds: Credentials) -> Any:
        from kagglesdk import KaggleClient
        from kagglesdk.kaggle_env import KaggleEnv

        names = {
            "PROD": KaggleEnv.PROD,
            "LOCALHOST": KaggleEnv.LOCAL,
            "TEST": KaggleEnv.TEST,
            "STAGING": KaggleEnv.STAGING,
            "ADMIN": KaggleEnv.ADMIN,
            "QA": KaggleEnv.QA,
        }
        if self.environment not in names:
            raise FetchFailed(f"Unknown KAGGLE_API_ENVIRONMENT {self.environment!r}")
        if not (creds.kaggle_token or (creds.kaggle_username and creds.kaggle_key)):
            raise FetchFailed(f"Kaggle needs credentials: {_NEEDS_CREDENTIALS}.")
        client = KaggleClient(
            env=names[self.environment],
            username=None if creds.kaggle_token else creds.kaggle_username,
            password=None if creds.kaggle_token else creds.kaggle_key,
            api_token=creds.kaggle_token,
            user_agent="aidp-fetcher",
        )
        if self.endpoint:
            # kagglesdk maps each environment to one hard-coded URL; this is the override.
            client.http_client()._endpoint = self.endpoint.rstrip("/")
        return client

    @staticmethod
    def _slugs(source: Source) -> tuple[str, str]:
        if source.id.count("/") != 1:
            raise FetchFailed(f"{source.uri}: a Kaggle dataset is named owner/slug.")
        owner, slug = source.id.split("/")
        return owner, slug

    @staticmethod
    def _model(source: Source) -> _ModelHandle | None:
        """The model instance a ``models/owner/slug/framework/variation`` id names."""
        parts = source.id.split("/")
        if parts[0] != "models":
            if source.kind == "model":
                raise FetchFailed(
                    f"{source.uri}: a Kaggle model is named "
                    "kaggle://models/owner/slug/framework/variation[@version]."
                )
            return None
        if len(parts) != 5 or not all(parts[1:]):
            raise FetchFailed(
                f"{source.uri}: a Kaggle model is named models/owner/slug/framework/variation."
            )
        return _ModelHandle(parts[1], parts[2], _framework(parts[3], source), parts[4])

    def pinned_revision(self, source: Source) -> str | None:
        return source.revision if source.revision and source.revision.isdigit() else None

    def resolve(self, source: Source, creds: Credentials) -> str:
        model = self._model(source)
        if model is not None:
            from kagglesdk.models.types.model_api_service import ApiGetModelInstanceRequest

            with self._client(creds) as client, _KaggleErrors(source):
                instance = client.models.model_api_client.get_model_instance(
                    model.fill(ApiGetModelInstanceRequest())
                )
            if not instance.version_number:
                raise FetchFailed(f"Kaggle model '{source.id}' has no version yet.")
            return str(instance.version_number)
        from kagglesdk.datasets.types.dataset_api_service import ApiGetDatasetRequest

        owner, slug = self._slugs(source)
        request = ApiGetDatasetRequest()
        request.owner_slug, request.dataset_slug = owner, slug
        with self._client(creds) as client, _KaggleErrors(source):
            dataset = client.datasets.dataset_api_client.get_dataset(request)
        if not dataset.current_version_number:
            raise FetchFailed(f"Kaggle dataset '{source.id}' has no version yet.")
        return str(dataset.current_version_number)

    def credentialed(self, creds: Credentials) -> bool:
        return True  # Kaggle's API answers only with credentials

    def authorize(self, source: Source, revision: str, creds: Credentials) -> bool:
        """The dataset / model instance lookup with the requester's credentials (none given:
        refused, by ``_client``). Never public: Kaggle answers only with credentials."""
        self.resolve(source, creds)
        return False

    def list_files(self, source: Source, revision: str, creds: Credentials) -> list[RemoteFile]:
        return []  # the archive is the unit of download; files are known once extracted

    def download(
        self,
        source: Source,
        revision: str,
        creds: Credentials,
        files: list[RemoteFile],
        workdir: Path,
        progress: Progress,
    ) -> Iterator[tuple[str, Path]]:
        archive = workdir / "archive"
        with self._client(creds) as client, _KaggleErrors(source):
            response = self._request_archive(client, source, int(revision))
            with archive.open("wb") as out:
                write_chunks(response.iter_content(1 << 20), out, progress)
        try:
            yield from _extract(archive, workdir / "files", source)
        finally:
            archive.unlink(missing_ok=True)

    def _request_archive(self, client: Any, source: Source, version: int) -> Any:
        model = self._model(source)
        if model is not None:
            from kagglesdk.models.types.model_api_service import (
                ApiDownloadModelInstanceVersionRequest,
            )

            request = model.fill(ApiDownloadModelInstanceVersionRequest())
            request.version_number = version
            return client.models.model_api_client.download_model_instance_version(request)
        from kagglesdk.datasets.types.dataset_api_service import ApiDownloadDatasetRequest

        owner, slug = self._slugs(source)
        request = ApiDownloadDatasetRequest()
        request.owner_slug, request.dataset_slug = owner, slug
        request.dataset_version_number = version
        return client.datasets.dataset_api_client.download_dataset(request)


def _extract(archive: Path, root: Path, source: Source) -> Iterator[tuple[str, Path]]:
    """Yield ``(path, file)`` for each regular member of a zip or tar archive, one at a time
    (each is stored and deleted by the caller before the next is written)."""

    def target(name: str) -> Path:
        path = root / name
        if not path.resolve().is_relative_to(root.resolve()):
            raise FetchFailed(f"Kaggle archive of '{source.id}' has an unsafe path: {name!r}.")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                for info in zipped.infolist():
                    if info.is_dir():
                        continue
                    local = target(info.filename)
                    with zipped.open(info) as member, local.open("wb") as out:
                        while chunk := member.read(1 << 20):
                            out.write(chunk)
                    yield info.filename, local
            return
        with tarfile.open(archive) as tarred:
            for entry in tarred:
                if not entry.isfile():
                    continue  # directories; links and devices are never materialised
                local = target(entry.name)
                stream = tarred.extractfile(entry)
                if stream is None:
                    continue
                with stream, local.open("wb") as out:
                    while chunk := stream.read(1 << 20):
                        out.write(chunk)
                yield entry.name.removeprefix("./"), local
    except (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError):
        raise FetchFailed(
            f"Kaggle sent a damaged archive for '{source.id}'.", retryable=True
        ) from None


class _KaggleErrors:
    def __init__(self, source: Source) -> None:
        self.source = source

    def __enter__(self) -> None:
        return None

    def __exit__(self, _t: Any, exc: BaseException | None, _tb: Any) -> Literal[False]:
        if exc is None or isinstance(exc, FetchFailed):
            return False
        import requests

        ref = self.source.id.removeprefix("models/")
        what = "model" if self.source.id.startswith("models/") else "dataset"
        if isinstance(exc, requests.HTTPError):
            status = exc.response.status_code if exc.response is not None else 0
            if status == 401:
                raise FetchFailed(
                    f"Kaggle refused the credentials for '{ref}': {_NEEDS_CREDENTIALS}."
                ) from None
            if status == 403:
                raise FetchFailed(
                    f"Kaggle denied access to {what} '{ref}' (403): it is private or you have not "
                    "accepted its rules on kaggle.com with the account of your KAGGLE token."
                ) from None
            if status == 404:
                version = f" version {self.source.revision}" if self.source.revision else ""
                raise FetchFailed(f"Kaggle {what} '{ref}'{version} was not found.") from None
            raise FetchFailed(
                f"Kaggle answered HTTP {status} for '{ref}'.",
                retryable=status >= 500 or status == 429,
            ) from None
        if isinstance(exc, requests.RequestException):
            raise FetchFailed(
                f"Could not reach Kaggle for '{ref}' ({type(exc).__name__}); it will be retried.",
                retryable=True,
            ) from None
        return False
