"""HuggingFace Hub models and datasets through ``huggingface_hub`` (``HF_ENDPOINT``).

A branch or tag is resolved to its commit sha with one ``repo_info`` call; files are
listed at that sha and fetched one at a time with ``hf_hub_download(revision=sha,
local_dir=<scratch>)``. The user's token is passed per call (``token=``), never through
the environment; ``token=False`` stops the client from reading a machine-wide token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from services.fetcher.connectors.base import Connector, Credentials, Progress, RemoteFile
from services.fetcher.errors import FetchFailed
from shared.spec import Source

__all__ = ["HuggingFaceConnector"]

_SHA = re.compile(r"^[0-9a-f]{40}$")


def _progress_class(progress: Progress) -> type:
    """A tqdm class whose updates report received bytes (and stay silent)."""
    from tqdm.auto import tqdm

    class _Bar(tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            kwargs.pop("name", None)
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            if n:
                progress(int(n))
            return super().update(n)  # type: ignore[no-any-return]

    return _Bar


class HuggingFaceConnector(Connector):
    def __init__(self, *, endpoint: str, timeout: float = 10.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout

    def _api(self) -> Any:
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, library_name="aidp")

    @staticmethod
    def _repo_type(source: Source) -> str:
        return "dataset" if source.kind == "dataset" else "model"

    def pinned_revision(self, source: Source) -> str | None:
        return source.revision if source.revision and _SHA.match(source.revision) else None

    def resolve(self, source: Source, creds: Credentials) -> str:
        revision = source.revision or "main"
        with self._errors(source, creds, revision):
            info = self._api().repo_info(
                source.id,
                repo_type=self._repo_type(source),
                revision=revision,
                token=creds.hf_token or False,
                timeout=self.timeout,
            )
        if not info.sha:
            raise FetchFailed(
                f"HuggingFace did not report a commit for {source.uri}", retryable=True
            )
        return str(info.sha)

    def credentialed(self, creds: Credentials) -> bool:
        return bool(creds.hf_token)

    def authorize(self, source: Source, revision: str, creds: Credentials) -> bool:
        """``repo_info`` at the exact commit with the requester's token (or none). The Hub
        answers a gated repo's info to anyone, so for a gated repo the first file's
        metadata is fetched too (that is what the gate guards)."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        token = creds.hf_token or False
        with self._errors(source, creds, revision):
            info = self._api().repo_info(
                source.id,
                repo_type=self._repo_type(source),
                revision=revision,
                token=token,
                timeout=self.timeout,
            )
        gated = bool(getattr(info, "gated", False))
        if gated:
            siblings = list(getattr(info, "siblings", None) or [])
            if not siblings:
                raise FetchFailed(
                    f"HuggingFace {self._repo_type(source)} '{source.id}' is gated and lists no "
                    "files, so access to it cannot be checked.",
                    retryable=False,
                )
            url = hf_hub_url(
                source.id,
                siblings[0].rfilename,
                repo_type=self._repo_type(source),
                revision=revision,
                endpoint=self.endpoint,
            )
            with self._errors(source, creds, revision):
                get_hf_file_metadata(url, token=token, timeout=self.timeout)
        return not creds.hf_token and not gated and not getattr(info, "private", False)

    def list_files(self, source: Source, revision: str, creds: Credentials) -> list[RemoteFile]:
        from huggingface_hub.hf_api import RepoFile

        with self._errors(source, creds, revision):
            entries = list(
                self._api().list_repo_tree(
                    source.id,
                    recursive=True,
                    revision=revision,
                    repo_type=self._repo_type(source),
                    token=creds.hf_token or False,
                )
            )
        files = []
        for entry in entries:
            if not isinstance(entry, RepoFile):
                continue
            aliases = [f"git:{entry.blob_id}"]
            if entry.lfs is not None:
                aliases.insert(0, f"sha256:{entry.lfs.sha256}")
            files.append(RemoteFile(path=entry.path, size=entry.size, aliases=tuple(aliases)))
        return files

    def download(
        self,
        source: Source,
        revision: str,
        creds: Credentials,
        files: list[RemoteFile],
        workdir: Path,
        progress: Progress,
    ) -> Iterator[tuple[str, Path]]:
        from huggingface_hub import hf_hub_download

        bar = _progress_class(progress)
        for remote in files:
            with self._errors(source, creds, revision):
                local = hf_hub_download(
                    source.id,
                    remote.path,
                    repo_type=self._repo_type(source),
                    revision=revision,
                    local_dir=workdir,
                    endpoint=self.endpoint,
                    token=creds.hf_token or False,
                    etag_timeout=self.timeout,
                    tqdm_class=bar,
                )
            yield remote.path, Path(local)

    # -- errors ------------------------------------------------------------------------

    def _errors(self, source: Source, creds: Credentials, revision: str) -> _HfErrors:
        return _HfErrors(self.endpoint, source, creds, revision)


class _HfErrors:
    """Turn ``huggingface_hub`` exceptions into :class:`FetchFailed` with plain words."""

    def __init__(self, endpoint: str, source: Source, creds: Credentials, revision: str) -> None:
        self.endpoint, self.source, self.creds, self.revision = endpoint, source, creds, revision

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, _tb: Any) -> Literal[False]:
        if exc is None or isinstance(exc, FetchFailed):
            return False
        import httpx2
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        what = "dataset" if self.source.kind == "dataset" else "model"
        repo = self.source.id
        if isinstance(exc, GatedRepoError):
            if self.creds.hf_token:
                msg = (
                    f"HuggingFace {what} '{repo}' is gated and your HF_TOKEN has no access to "
                    f"it: accept its conditions on its HuggingFace page with that account."
                )
            else:
                msg = (
                    f"HuggingFace {what} '{repo}' is gated: accept its conditions on its "
                    "HuggingFace page, store your token with `aidp secrets set HF_TOKEN` and "
                    "add HF_TOKEN to the spec's `secrets:` list."
                )
            raise FetchFailed(msg, retryable=False) from None
        if isinstance(exc, RevisionNotFoundError):
            raise FetchFailed(
                f"HuggingFace {what} '{repo}' has no revision '{self.revision}': use an existing "
                "branch, tag or 40-character commit sha after '@'.",
                retryable=False,
            ) from None
        if isinstance(exc, RepositoryNotFoundError):
            hint = (
                "check the name"
                if self.creds.hf_token
                else "check the name; if it is private, store your token with `aidp secrets set "
                "HF_TOKEN` and add HF_TOKEN to the spec's `secrets:` list"
            )
            raise FetchFailed(
                f"HuggingFace {what} '{repo}' was not found at {self.endpoint} ({hint}).",
                retryable=False,
            ) from None
        if isinstance(exc, httpx2.TransportError | LocalEntryNotFoundError | TimeoutError):
            raise FetchFailed(
                f"Could not reach HuggingFace at {self.endpoint} to fetch '{repo}' "
                f"({type(exc).__name__}); it will be retried.",
                retryable=True,
            ) from None
        if isinstance(exc, HfHubHTTPError):
            status = exc.response.status_code if exc.response is not None else 0
            raise FetchFailed(
                f"HuggingFace answered HTTP {status} for '{repo}'.",
                retryable=status >= 500 or status == 429,
            ) from None
        return False
