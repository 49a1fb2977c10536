"""https:// sources: streamed with httpx, a size limit, timeouts and the SSRF guard.

A URL names no revision: the content's sha256 is its revision (known once downloaded),
so every request downloads again and identical content is stored once.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from services.fetcher.connectors.base import Connector, Credentials, Progress, RemoteFile
from services.fetcher.errors import FetchFailed
from services.fetcher.ssrf import check_url
from shared.spec import Source

__all__ = ["UrlConnector"]

_MAX_REDIRECTS = 5


class UrlConnector(Connector):
    def __init__(
        self,
        *,
        max_bytes: int,
        allow_hosts: list[str],
        connect_timeout: float,
        read_timeout: float,
        verify: str | bool = True,
    ) -> None:
        self.max_bytes = max_bytes
        self.allow_hosts = allow_hosts
        self.timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self.verify = verify

    def pinned_revision(self, source: Source) -> str | None:
        return None

    def resolve(self, source: Source, creds: Credentials) -> str:
        return ""  # the content digest, known after download

    def list_files(self, source: Source, revision: str, creds: Credentials) -> list[RemoteFile]:
        name = posixpath.basename(urlsplit(source.id).path) or "download"
        return [RemoteFile(path=name, size=None)]

    def download(
        self,
        source: Source,
        revision: str,
        creds: Credentials,
        files: list[RemoteFile],
        workdir: Path,
        progress: Progress,
    ) -> Iterator[tuple[str, Path]]:
        target = workdir / "download"
        url = source.id
        with httpx.Client(timeout=self.timeout, verify=self.verify, trust_env=False) as client:
            for _hop in range(_MAX_REDIRECTS + 1):
                check_url(url, allow=self.allow_hosts)
                try:
                    with client.stream("GET", url, follow_redirects=False) as response:
                        if response.is_redirect:
                            url = urljoin(url, response.headers.get("Location", ""))
                            continue
                        self._save(source, response, target, progress)
                        break
                except httpx.TransportError as exc:
                    raise FetchFailed(
                        f"Could not download {source.id} ({type(exc).__name__}); "
                        "it will be retried.",
                        retryable=True,
                    ) from None
            else:
                raise FetchFailed(f"{source.id} redirected more than {_MAX_REDIRECTS} times.")
        yield files[0].path if files else "download", target

    def _save(
        self, source: Source, response: httpx.Response, target: Path, progress: Progress
    ) -> None:
        if response.status_code != 200:
            raise FetchFailed(
                f"{source.id} answered HTTP {response.status_code}.",
                retryable=response.status_code >= 500,
            )
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchFailed(self._too_big(source))
        received = 0
        with target.open("wb") as out:
            for chunk in response.iter_bytes(1 << 20):
                received += len(chunk)
                if received > self.max_bytes:
                    raise FetchFailed(self._too_big(source))
                out.write(chunk)
                progress(len(chunk))

    def _too_big(self, source: Source) -> str:
        return (
            f"{source.id} is larger than the {self.max_bytes} bytes allowed for URL "
            "downloads (AIDP_URL_MAX_BYTES)."
        )
