"""https:// sources: streamed with httpx, a size limit, timeouts and the SSRF guard.

A URL names no revision: the content's blob name is its revision (known once downloaded),
so every request downloads again and identical content is stored once.

DNS pinning: each hop is resolved once, by the SSRF guard, and the connection goes to an
address the guard checked: the request URL names that IP, while the ``Host`` header and
the TLS SNI / certificate check keep the original host name. Redirects are not followed
by httpx but hop by hop here, each one checked and pinned the same way.
"""

from __future__ import annotations

import posixpath
import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from services.fetcher.connectors.base import Connector, Credentials, Progress, RemoteFile
from services.fetcher.connectors.common import host_literal, write_chunks
from services.fetcher.errors import FetchFailed
from services.fetcher.ssrf import Address, check_url
from shared.spec import Source
from shared.store import ManifestFile

__all__ = ["UrlConnector"]

_MAX_REDIRECTS = 5


def _tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """The public CAs (certifi, as httpx uses) plus ``ca_bundle`` if given."""
    import certifi

    context = ssl.create_default_context(cafile=certifi.where())
    if ca_bundle is not None:
        context.load_verify_locations(cafile=str(ca_bundle))
    return context


class UrlConnector(Connector):
    def __init__(
        self,
        *,
        max_bytes: int,
        allow_hosts: list[str],
        connect_timeout: float,
        read_timeout: float,
        ca_bundle: Path | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.allow_hosts = allow_hosts
        self.timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self.verify = _tls_context(ca_bundle)

    def pinned_revision(self, source: Source) -> str | None:
        return None

    def resolve(self, source: Source, creds: Credentials) -> str:
        return ""  # the content digest, known after download

    def content_revision(self, source: Source, files: list[ManifestFile]) -> str | None:
        return files[0].digest  # the content's blob name

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
        for hop in range(_MAX_REDIRECTS + 1):
            try:
                addresses = check_url(url, allow=self.allow_hosts)
            except FetchFailed as exc:
                if not hop:
                    raise
                raise FetchFailed(
                    f"{exc.message} ({source.id} redirected there.)", retryable=exc.retryable
                ) from None
            location = self._get(source, url, addresses, target, progress)
            if location is None:
                break
            url = urljoin(url, location)
        else:
            raise FetchFailed(f"{source.id} redirected more than {_MAX_REDIRECTS} times.")
        yield files[0].path if files else "download", target

    def _get(
        self, source: Source, url: str, addresses: list[Address], target: Path, progress: Progress
    ) -> str | None:
        """GET ``url`` from one of its checked ``addresses``; the redirect target, or None
        once the body is saved. A fresh client per hop: no connection is reused for
        another host name."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        error: httpx.TransportError | None = None
        for address in addresses:
            literal = host_literal(address)
            netloc = f"{literal}:{parts.port}" if parts.port else literal
            pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
            with httpx.Client(timeout=self.timeout, verify=self.verify, trust_env=False) as client:
                try:
                    with client.stream(
                        "GET",
                        pinned,
                        headers={"Host": parts.netloc.rpartition("@")[2]},
                        extensions={"sni_hostname": host},
                        follow_redirects=False,
                    ) as response:
                        if response.is_redirect:
                            return response.headers.get("Location", "")
                        self._save(source, response, target, progress)
                        return None
                except httpx.ConnectError as exc:
                    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                        raise FetchFailed(
                            f"Could not download {source.id}: the TLS certificate of {host} "
                            "is not trusted. For an internal mirror an administrator can "
                            "add its CA to AIDP_URL_CA_BUNDLE."
                        ) from None
                    error = exc  # try the next checked address
                except httpx.TransportError as exc:
                    error = exc
                    break
        raise FetchFailed(
            f"Could not download {source.id} ({type(error).__name__}: {error}); "
            "it will be retried.",
            retryable=True,
        )

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
        with target.open("wb") as out:
            write_chunks(
                response.iter_bytes(1 << 20),
                out,
                progress,
                max_bytes=self.max_bytes,
                too_big=self._too_big(source),
            )

    def _too_big(self, source: Source) -> str:
        return (
            f"{source.id} is larger than the {self.max_bytes} bytes allowed for URL "
            "downloads (AIDP_URL_MAX_BYTES)."
        )
