"""A real OpenID Connect provider for tests: ``oidc-provider-mock`` (Authlib's server on
Flask) served by werkzeug in a thread on 127.0.0.1, with two test hooks around it:

- PKCE is enforced: the mock itself ignores ``code_challenge``, so a WSGI middleware
  records the challenge of each issued code and refuses the token request (400
  ``invalid_grant``) unless ``code_verifier`` matches it by S256; ``pkce_checked`` counts
  the exchanges that passed;
- ``discovery_overrides``: fields replaced in the discovery document (another issuer, an
  http endpoint...);
- ``tamper(**claims)`` makes the next token response carry an ID token with those claims
  changed (``None`` removes one), re-signed with the provider's own key (or, with
  ``foreign_key=True``, with a key the provider never published): an ID token for another
  audience, from another issuer, expired, with another nonce...

Users are set with :meth:`OidcServer.set_user` (PUT /users/<sub>); :meth:`approve` plays
the user's part at the authorization endpoint (the mock's consent form: POST ``sub``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import flask
import httpx
import werkzeug.serving
from joserfc import jwt
from joserfc.jwk import RSAKey

__all__ = ["OidcServer", "oidc_server"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class OidcServer:
    def __init__(self, *, require_client_registration: bool = False) -> None:
        from oidc_provider_mock import app as mock_app

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        logging.getLogger("oidc_provider_mock").setLevel(logging.ERROR)
        self.app = mock_app(
            require_nonce=True, require_client_registration=require_client_registration
        )
        self._storage: Any = None

        @self.app.before_request
        def _capture() -> None:  # runs after the mock's own hook: its storage is set
            self._storage = flask.g.oidc_provider_mock_storage

        self._inner = self.app.wsgi_app
        self.app.wsgi_app = self._middleware  # type: ignore[method-assign]
        self._challenges: dict[str, tuple[str | None, str | None]] = {}
        self._tamper: dict[str, Any] | None = None
        self.discovery_overrides: dict[str, Any] = {}
        self._foreign = False
        self._lock = threading.Lock()
        self.pkce_checked = 0
        self.pkce_refused = 0
        self.authorize_params: list[dict[str, str]] = []
        self._server: werkzeug.serving.BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> OidcServer:
        self._server = werkzeug.serving.make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        httpx.get(f"{self.url}/.well-known/openid-configuration", timeout=10).raise_for_status()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    # -- test API ---------------------------------------------------------------------------

    def set_user(self, sub: str, **claims: Any) -> None:
        r = httpx.put(f"{self.url}/users/{sub}", json=claims, timeout=10)
        assert r.status_code == 204, r.text

    def register_client(self, redirect_uris: Iterable[str]) -> tuple[str, str]:
        """Dynamic client registration: (client_id, client_secret)."""
        r = httpx.post(
            f"{self.url}/oauth2/clients",
            json={"redirect_uris": list(redirect_uris)},
            timeout=10,
        )
        assert r.status_code == 201, r.text
        body = r.json()
        return str(body["client_id"]), str(body["client_secret"])

    def approve(self, authorize_url: str, sub: str) -> str:
        """The user consents as ``sub`` at ``authorize_url``: returns the redirect (to the
        relying party's callback, with ``code`` and ``state``)."""
        assert authorize_url.startswith(self.url), authorize_url
        r = httpx.post(authorize_url, data={"sub": sub}, timeout=10)
        assert r.status_code == 302, r.text[:500]
        return str(r.headers["location"])

    def tamper(self, *, foreign_key: bool = False, **claims: Any) -> None:
        """Change the next ID token (see the module docstring)."""
        with self._lock:
            self._tamper, self._foreign = dict(claims), foreign_key

    # -- middleware -------------------------------------------------------------------------

    def _middleware(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/oauth2/authorize" and method == "POST":
            return self._authorize(environ, start_response)
        if path == "/oauth2/token" and method == "POST":
            return self._token(environ, start_response)
        if path == "/.well-known/openid-configuration" and self.discovery_overrides:
            status, headers, body = self._call(environ)
            doc = {**json.loads(body), **self.discovery_overrides}
            payload = json.dumps(doc).encode()
            start_response(
                status,
                [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
            )
            return [payload]
        return self._inner(environ, start_response)  # type: ignore[no-any-return]

    def _call(self, environ: Environ) -> tuple[str, list[tuple[str, str]], bytes]:
        captured: dict[str, Any] = {}

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        body = b"".join(self._inner(environ, start))
        return captured["status"], captured["headers"], body

    def _authorize(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        status, headers, body = self._call(environ)
        location = dict((k.lower(), v) for k, v in headers).get("location", "")
        code = parse_qs(urlsplit(location).query).get("code", [None])[0]
        with self._lock:
            self.authorize_params.append(query)
            if code:
                self._challenges[code] = (
                    query.get("code_challenge"),
                    query.get("code_challenge_method"),
                )
        start_response(status, headers)
        return [body]

    def _token(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(raw)
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        if form.get("grant_type") == "authorization_code":
            with self._lock:
                challenge, method = self._challenges.pop(form.get("code", ""), (None, None))
            verifier = form.get("code_verifier")
            if method != "S256" or not challenge or not verifier or _s256(verifier) != challenge:
                with self._lock:
                    self.pkce_refused += 1
                payload = json.dumps(
                    {"error": "invalid_grant", "error_description": "PKCE verification failed"}
                ).encode()
                start_response(
                    "400 BAD REQUEST",
                    [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
                )
                return [payload]
            with self._lock:
                self.pkce_checked += 1
        status, headers, body = self._call(environ)
        with self._lock:
            tamper, foreign = self._tamper, self._foreign
            self._tamper, self._foreign = None, False
        if tamper is not None and status.startswith("200"):
            token = json.loads(body)
            token["id_token"] = self._resign(token["id_token"], tamper, foreign)
            body = json.dumps(token).encode()
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]

    def _resign(self, id_token: str, changes: dict[str, Any], foreign: bool) -> str:
        header_b64, claims_b64, _ = id_token.split(".")
        header = json.loads(base64.urlsafe_b64decode(header_b64 + "=="))
        claims = json.loads(base64.urlsafe_b64decode(claims_b64 + "=="))
        for name, value in changes.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        if foreign:
            key = RSAKey.generate_key(2048)
        else:
            key = RSAKey.import_key(self._storage.jwk.as_dict(is_private=True))
        new_header = {"alg": "RS256"}
        if header.get("kid"):
            new_header["kid"] = header["kid"]
        return jwt.encode(new_header, claims, key)


@contextmanager
def oidc_server(**kwargs: Any) -> Iterator[OidcServer]:
    server = OidcServer(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()
