"""Kaggle datasets through the official SDK (``kagglesdk``, which ``kaggle`` and
``kagglehub`` are built on).

``owner/slug`` resolves to the dataset's current version number (one ``GetDataset``
call); ``owner/slug@N`` is already pinned. The version's archive is streamed to scratch
and its members extracted and stored one at a time. Credentials (an API token, or a
username and key) are passed to the client per call. The environment is the client's own
switch (``KAGGLE_API_ENVIRONMENT``); ``endpoint`` overrides the URL it maps to.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from services.fetcher.connectors.base import Connector, Credentials, Progress, RemoteFile
from services.fetcher.errors import FetchFailed
from shared.spec import Source

__all__ = ["KaggleConnector"]

_NEEDS_CREDENTIALS = (
    "store your Kaggle API token with `aidp secrets set KAGGLE_API_TOKEN` (or KAGGLE_USERNAME "
    "and KAGGLE_KEY) and add its name to the spec's `secrets:` list"
)


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
        if source.kind != "dataset" or source.id.count("/") != 1:
            raise FetchFailed(f"{source.uri}: only Kaggle datasets (owner/slug) are supported yet.")
        owner, slug = source.id.split("/")
        return owner, slug

    def pinned_revision(self, source: Source) -> str | None:
        return source.revision if source.revision and source.revision.isdigit() else None

    def resolve(self, source: Source, creds: Credentials) -> str:
        from kagglesdk.datasets.types.dataset_api_service import ApiGetDatasetRequest

        owner, slug = self._slugs(source)
        request = ApiGetDatasetRequest()
        request.owner_slug, request.dataset_slug = owner, slug
        with self._client(creds) as client, _KaggleErrors(source):
            dataset = client.datasets.dataset_api_client.get_dataset(request)
        if not dataset.current_version_number:
            raise FetchFailed(f"Kaggle dataset '{source.id}' has no version yet.")
        return str(dataset.current_version_number)

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
        from kagglesdk.datasets.types.dataset_api_service import ApiDownloadDatasetRequest

        owner, slug = self._slugs(source)
        request = ApiDownloadDatasetRequest()
        request.owner_slug, request.dataset_slug = owner, slug
        request.dataset_version_number = int(revision)
        archive = workdir / f"{slug}.zip"
        with self._client(creds) as client, _KaggleErrors(source):
            response = client.datasets.dataset_api_client.download_dataset(request)
            with archive.open("wb") as out:
                for chunk in response.iter_content(1 << 20):
                    out.write(chunk)
                    progress(len(chunk))
        try:
            with zipfile.ZipFile(archive) as zipped:
                for info in zipped.infolist():
                    if info.is_dir():
                        continue
                    target = workdir / "files" / info.filename
                    if not target.resolve().is_relative_to((workdir / "files").resolve()):
                        raise FetchFailed(f"Kaggle archive of '{source.id}' has an unsafe path.")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zipped.open(info) as member, target.open("wb") as out:
                        while chunk := member.read(1 << 20):
                            out.write(chunk)
                    yield info.filename, target
        except zipfile.BadZipFile:
            raise FetchFailed(
                f"Kaggle sent a damaged archive for '{source.id}'.", retryable=True
            ) from None
        finally:
            archive.unlink(missing_ok=True)


class _KaggleErrors:
    def __init__(self, source: Source) -> None:
        self.source = source

    def __enter__(self) -> None:
        return None

    def __exit__(self, _t: Any, exc: BaseException | None, _tb: Any) -> Literal[False]:
        if exc is None or isinstance(exc, FetchFailed):
            return False
        import requests

        ref = self.source.id
        if isinstance(exc, requests.HTTPError):
            status = exc.response.status_code if exc.response is not None else 0
            if status == 401:
                raise FetchFailed(
                    f"Kaggle refused the credentials for '{ref}': {_NEEDS_CREDENTIALS}."
                ) from None
            if status == 403:
                raise FetchFailed(
                    f"Kaggle denied access to dataset '{ref}' (403): it is private or you have not "
                    "accepted its rules on kaggle.com with the account of your KAGGLE token."
                ) from None
            if status == 404:
                version = f" version {self.source.revision}" if self.source.revision else ""
                raise FetchFailed(f"Kaggle dataset '{ref}'{version} was not found.") from None
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
