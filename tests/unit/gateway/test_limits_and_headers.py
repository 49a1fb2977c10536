"""Request-size limits and browser hardening on the real gateway server (issue 13): a body
over its limit answers 413 before it is read (declared length) or as soon as it crosses the
limit (chunked); every answer carries the security headers; Swagger UI comes from the
package, never a CDN."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from services.gateway.main import create_app
from shared.secrets import InMemoryVault
from tests.unit.fetcher.tls_server import self_signed
from tests.unit.gateway.authstub import AuthStub
from tests.unit.gateway.conftest import SPEC, Served, gateway_settings, serve

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


async def _raw_request(url: str, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send ``head`` (and ``body``) on a plain socket; return the status and the answer."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head.encode() + b"\r\n\r\n" + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer


async def test_declared_json_body_over_limit_is_refused_unread(served: Served) -> None:
    _, headers = served.login()
    # 50 MB announced, not one byte sent: the answer comes at once, so nothing was read
    head = (
        "POST /api/projects HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        f"Authorization: {headers['Authorization']}\r\nContent-Length: {50 * 1024**2}"
    )
    status, answer = await _raw_request(served.url, head)
    assert status == 413
    assert b"AIDP_MAX_JSON_BYTES" in answer and b"too_large" in answer
    assert b"content-security-policy" in answer.lower()


async def _chunked_request(
    url: str, head: str, pieces: int, piece: bytes
) -> tuple[int, bytes, int]:
    """Stream ``pieces`` chunks of ``piece`` without a length while reading the answer;
    return the status, the answer and how many chunks went out before it came."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    sent = 0

    async def send() -> None:
        nonlocal sent
        writer.write(head.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(pieces):
                writer.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                await writer.drain()
                sent += 1
                await asyncio.sleep(0.02)  # let the answer be read before the server closes
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            return  # the server closed after answering: the body was not taken

    sender = asyncio.create_task(send())
    try:
        answer = await asyncio.wait_for(reader.read(65536), 10)
    finally:
        sender.cancel()
        writer.close()
    return int(answer.split(b" ", 2)[1]), answer, sent


async def test_chunked_json_body_is_cut_off_at_the_limit(served: Served) -> None:
    _, headers = served.login()
    head = (
        "POST /api/projects HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        f"Authorization: {headers['Authorization']}"
    )
    # 64 MiB if it were all read; the answer comes once about 1 MiB went in
    status, answer, sent = await _chunked_request(served.url, head, 64, b"x" * (1 << 20))
    assert status == 413, answer
    assert b"AIDP_MAX_JSON_BYTES" in answer and b"too_large" in answer
    assert sent < 16  # the server stopped reading near the limit
    listing = await served.client.get("/api/projects", headers=headers)
    assert listing.status_code == 200 and "big" not in listing.text


async def test_json_body_under_the_limit_still_works(served: Served) -> None:
    _, headers = served.login()
    body = {"name": "ok", "spec": {**SPEC, "name": "ok"}}
    r = await served.client.post("/api/projects", json=body, headers=headers)
    assert r.status_code == 201, r.text


async def test_declared_upload_over_limit_is_refused_unread(tmp_path: Path, auth: AuthStub) -> None:
    vault = InMemoryVault()
    settings = gateway_settings(tmp_path, auth.url, max_upload_bytes=1000)  # type: ignore[attr-defined]
    app = create_app(settings, vault=(vault, vault))
    async with serve(app) as url:
        user_id, email = auth.user(None)
        token = auth.token(user_id, email)
        head = (
            "POST /api/uploads?filename=d.csv HTTP/1.1\r\nHost: gw\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: 1001"
        )
        status, answer = await _raw_request(url, head)
        assert status == 413
        assert b"AIDP_MAX_UPLOAD_BYTES" in answer


@pytest.mark.parametrize(
    "path", ["/api/projects", "/healthz", "/api/does-not-exist", "/api/openapi.json"]
)
async def test_every_answer_carries_the_security_headers(served: Served, path: str) -> None:
    r = await served.client.get(path)
    for name, value in SECURITY_HEADERS.items():
        assert r.headers[name] == value, (path, name)
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "strict-transport-security" not in r.headers  # plain HTTP: no HSTS


async def test_hsts_only_under_tls(tmp_path: Path, auth: AuthStub) -> None:
    cert, key = self_signed(tmp_path / "tls", ["127.0.0.1"])
    vault = InMemoryVault()
    settings = gateway_settings(tmp_path, auth.url, tls_cert=cert, tls_key=key)  # type: ignore[attr-defined]
    app = create_app(settings, vault=(vault, vault))
    async with serve(app, ssl_certfile=cert, ssl_keyfile=key) as url:
        https = url.replace("http://", "https://")
        async with httpx.AsyncClient(verify=str(cert)) as client:
            r = await client.get(f"{https}/healthz")
    assert r.status_code == 200
    assert r.headers["strict-transport-security"].startswith("max-age=")


async def test_api_docs_come_from_the_gateway_not_a_cdn(served: Served) -> None:
    page = await served.client.get("/api/docs")
    assert page.status_code == 200
    assert "<script>" not in page.text  # no inline script: the policy would block it
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and all(ref.startswith("/api/docs/") for ref in refs), refs
    for ref in refs:
        asset = await served.client.get(ref)
        assert asset.status_code == 200, ref
        assert asset.headers["x-content-type-options"] == "nosniff"
    init = await served.client.get("/api/docs/init.js")
    assert "/api/openapi.json" in init.text
    assert init.headers["content-type"].startswith("text/javascript")
