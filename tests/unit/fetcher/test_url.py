"""https:// sources against a local HTTPS server (self-signed certificate made per test):
redirects into internal addresses refused, allow-listed hosts with AIDP_URL_CA_BUNDLE,
the size limit, and DNS pinning (the connection goes to the address the guard checked)."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.fetcher.connectors import Credentials
from services.fetcher.connectors.url import UrlConnector
from services.fetcher.errors import FetchFailed
from shared.events import parse_payload
from shared.spec import parse_source
from shared.telemetry import ScrubbingFilter
from tests.support.hf_server import HubServer
from tests.unit.fetcher.harness import running_fetcher, spec
from tests.unit.fetcher.tls_server import TlsFileServer, self_signed

DATA = b"id,text\n1,hello over tls\n" * 100


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path / "tls", ["localhost", "files.example", "127.0.0.1"])


@pytest.fixture
def tls(cert: tuple[Path, Path]) -> Iterator[TlsFileServer]:
    with TlsFileServer(*cert, files={"data.csv": DATA}) as server:
        yield server


def _download(connector: UrlConnector, url: str, workdir: Path) -> bytes:
    source = parse_source(url, kind="dataset")
    files = connector.list_files(source, "", Credentials())
    [(_, local)] = list(
        connector.download(source, "", Credentials(), files, workdir, lambda n: None)
    )
    return local.read_bytes()


def _connector(cert: Path | None, allow: list[str], **kw: Any) -> UrlConnector:
    values: dict[str, Any] = {"max_bytes": 1 << 20, "connect_timeout": 2, "read_timeout": 5}
    values.update(kw)
    return UrlConnector(allow_hosts=allow, ca_bundle=cert, **values)


def test_redirect_to_loopback_is_refused(
    tmp_path: Path, cert: tuple[Path, Path], tls: TlsFileServer
) -> None:
    with TlsFileServer(*cert, files={"secret": b"internal"}) as internal:
        connector = _connector(cert[0], ["localhost"])
        for target, why in (
            (f"https://127.0.0.1:{internal.port}/files/secret", "internal address 127.0.0.1"),
            (f"http://127.0.0.1:{internal.port}/files/secret", "only https URLs are allowed"),
        ):
            url = f"https://localhost:{tls.port}/redirect?to={target}"
            with pytest.raises(FetchFailed) as caught:
                _download(connector, url, tmp_path)
            message = caught.value.message
            assert f"Refused to fetch {target}" in message
            assert why in message and "redirected there" in message
            assert not caught.value.retryable
        assert tls.requests == ["/redirect", "/redirect"]
        assert internal.requests == []  # the loopback target was never contacted


def test_untrusted_certificate_and_unlisted_host_are_clear_failures(
    tmp_path: Path, cert: tuple[Path, Path], tls: TlsFileServer
) -> None:
    url = f"https://localhost:{tls.port}/files/data.csv"
    with pytest.raises(FetchFailed, match="AIDP_FETCH_ALLOW_HOSTS"):
        _download(_connector(cert[0], []), url, tmp_path)
    with pytest.raises(FetchFailed, match="is not trusted.*AIDP_URL_CA_BUNDLE"):
        _download(_connector(None, ["localhost"]), url, tmp_path)
    assert _download(_connector(cert[0], ["localhost"]), url, tmp_path) == DATA


def test_size_limit_declared_and_streamed(
    tmp_path: Path, cert: tuple[Path, Path], tls: TlsFileServer
) -> None:
    tls.files["big.bin"] = os.urandom(300_000)
    small = _connector(cert[0], ["localhost"], max_bytes=100_000)
    for route in ("files", "stream"):  # with Content-Length, and read until close
        with pytest.raises(FetchFailed, match="larger than the 100000 bytes.*AIDP_URL_MAX_BYTES"):
            _download(small, f"https://localhost:{tls.port}/{route}/big.bin", tmp_path)


def test_dns_is_pinned_to_the_checked_address(
    tmp_path: Path, cert: tuple[Path, Path], tls: TlsFileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name resolves to loopback (allow-listed) once, then to an address nobody
    answers on: a client that resolved again would time out instead of succeeding."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "files.example":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) == 1 else "10.255.255.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    connector = _connector(cert[0], ["127.0.0.0/8"], connect_timeout=1)
    url = f"https://files.example:{tls.port}/files/data.csv"
    assert _download(connector, url, tmp_path) == DATA
    assert lookups == ["files.example"]  # resolved once, by the guard
    assert tls.hosts == [f"files.example:{tls.port}"]  # the server saw the real host name


async def test_allow_listed_https_dataset_through_the_service(
    tmp_path: Path, hub: HubServer, cert: tuple[Path, Path], tls: TlsFileServer
) -> None:
    hub.commit("org/tiny", {"config.json": b"{}"})
    async with running_fetcher(
        tmp_path,
        hf_endpoint=hub.url,
        url_ca_bundle=cert[0],
        fetch_allow_hosts=["localhost"],
    ) as f:
        url = f"https://localhost:{tls.port}/files/data.csv"
        done = parse_payload(await f.fetch(spec("hf://org/tiny", url)))
        ref = done.artifacts[1]  # type: ignore[attr-defined]
        assert ref.resolved_revision == f.cache.store.name_of_bytes(DATA) == ref.digest
        assert ref.digest != hashlib.sha256(DATA).hexdigest()  # a keyed name, no oracle
        assert b"".join(f.cache.store.read(ref.digest)) == DATA


async def test_a_signed_url_token_reaches_no_event_and_no_log(
    tmp_path: Path,
    hub: HubServer,
    cert: tuple[Path, Path],
    tls: TlsFileServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub.commit("org/tiny", {"config.json": b"{}"})
    caplog.set_level(logging.DEBUG)
    async with running_fetcher(
        tmp_path,
        hf_endpoint=hub.url,
        url_ca_bundle=cert[0],
        fetch_allow_hosts=["localhost"],
    ) as f:
        url = f"https://localhost:{tls.port}/files/data.csv?token=secret-signature-42"
        run_id = await f.start_run(spec("hf://org/tiny", url))
        done = await f.outcome(run_id)
        ref = parse_payload(done).artifacts[1]  # type: ignore[attr-defined]
        assert ref.source == f"https://localhost:{tls.port}/files/data.csv"
        assert b"".join(f.cache.store.read(ref.digest)) == DATA  # the real URL was fetched
        events = [e for e in f.events if e.run_id == run_id]
        assert {e.type for e in events} >= {"FetchProgress", "ArtifactsCached"}
        assert not [e for e in events if "secret-signature-42" in e.model_dump_json()]
        missing = url.replace("data.csv", "missing.csv")
        failed = await f.fetch(spec("hf://org/tiny", missing))
        assert failed.type == "ArtifactsFailed"
        assert "secret-signature-42" not in failed.model_dump_json()
    # the records as the services' log handler writes them (shared.telemetry's filter)
    logged = []
    for record in caplog.records:
        ScrubbingFilter().filter(record)
        logged.append(logging.Formatter().format(record))
    # httpx logs each request's full URL: the query string (here the Hub's) is gone
    assert [line for line in logged if "/tree/" in line]
    assert not [line for line in logged if "recursive=" in line]
    assert not [line for line in logged if "secret-signature-42" in line]
