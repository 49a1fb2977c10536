"""The connector contract: resolve a source to an immutable revision, list its files,
download them one by one into a scratch directory.

Connectors are synchronous (the provider clients are) and run in a worker thread. They
raise :class:`~services.fetcher.errors.FetchFailed` with a readable message; anything
else is treated as a transient failure. Credentials are passed per call and never stored,
logged or put in the process environment.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shared.spec import Source
from shared.store import ManifestFile

__all__ = ["Connector", "Credentials", "Progress", "RemoteFile"]

#: Called with the number of new bytes received; may raise FetchCancelled.
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Credentials:
    """Per-run provider credentials read from Vault (values masked in repr)."""

    hf_token: str | None = field(default=None, repr=False)
    kaggle_token: str | None = field(default=None, repr=False)
    kaggle_username: str | None = None
    kaggle_key: str | None = field(default=None, repr=False)
    s3_access_key_id: str | None = field(default=None, repr=False)
    s3_secret_access_key: str | None = field(default=None, repr=False)
    s3_session_token: str | None = field(default=None, repr=False)
    s3_endpoint_url: str | None = field(default=None, repr=False)
    db_user: str | None = field(default=None, repr=False)
    db_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a source at a revision. ``aliases`` name its content if known
    beforehand (``git:<oid>``, ``sha256:<hex>``) so a stored copy can be reused."""

    path: str
    size: int | None
    aliases: tuple[str, ...] = ()


class Connector(ABC):
    """A provider of artifacts (HuggingFace, Kaggle, https, uploads)."""

    @abstractmethod
    def pinned_revision(self, source: Source) -> str | None:
        """The revision if the URI already names an immutable one (no lookup needed)."""

    @abstractmethod
    def resolve(self, source: Source, creds: Credentials) -> str:
        """Resolve the requested revision (branch, tag, latest) to an immutable one."""

    def credentialed(self, creds: Credentials) -> bool:
        """Whether a fetch with ``creds`` uses credentials (its cache entry is then served
        to others only after their own credentials were checked)."""
        return False

    def authorize(self, source: Source, revision: str, creds: Credentials) -> bool:
        """Check that ``creds`` can read ``source`` at ``revision`` (a cache hit of a
        credentialed entry); raise FetchFailed if not. True when the check showed the
        source public (neither private nor gated, read without credentials): its entry
        may then be shared without further checks."""
        return False

    def content_revision(self, source: Source, files: list[ManifestFile]) -> str | None:
        """The revision of a source that names none before its download (``resolve``
        returned ""): computed from the stored files; None keeps the resolved one."""
        return None

    @abstractmethod
    def list_files(self, source: Source, revision: str, creds: Credentials) -> list[RemoteFile]:
        """The files of ``source`` at ``revision`` (sizes may be unknown)."""

    @abstractmethod
    def download(
        self,
        source: Source,
        revision: str,
        creds: Credentials,
        files: list[RemoteFile],
        workdir: Path,
        progress: Progress,
    ) -> Iterator[tuple[str, Path]]:
        """Download ``files`` under ``workdir``, yielding ``(path, local file)`` as each
        completes; the caller stores and deletes each file before the next is fetched."""
