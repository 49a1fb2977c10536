"""A local HTTPS file server with a throwaway self-signed certificate (made with
``cryptography`` per test), for the https:// connector's tests.

Routes: ``/files/<name>`` serves ``files[name]`` (with Content-Length), ``/stream/<name>``
the same without Content-Length (read until close), ``/redirect?to=<url>`` answers 302.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["TlsFileServer", "self_signed"]


def self_signed(directory: Path, names: list[str]) -> tuple[Path, Path]:
    """Write ``cert.pem`` / ``key.pem`` for ``names`` (DNS names or IPs) under ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TlsFileServer:
    """HTTPS on ``127.0.0.1:<port>``; ``requests`` lists the paths asked for."""

    def __init__(self, cert: Path, key: Path, files: dict[str, bytes] | None = None) -> None:
        self.files = dict(files or {})
        self.requests: list[str] = []
        self.hosts: list[str] = []  # Host headers received
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.owner = self  # type: ignore[attr-defined]
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> TlsFileServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def do_GET(self) -> None:  # noqa: N802
        owner: TlsFileServer = self.server.owner  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        owner.requests.append(parts.path)
        owner.hosts.append(self.headers.get("Host", ""))
        if parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", parse_qs(parts.query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        kind, _, name = parts.path.strip("/").partition("/")
        data = owner.files.get(name)
        if kind not in ("files", "stream") or data is None:
            self.send_error(404)
            return
        self.send_response(200)
        if kind == "files":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
