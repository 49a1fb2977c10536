"""``aidp login --sso``'s loopback listener (cli/sso.py): it answers only its own sign-in
(the state), shows a failure's reason, trades the hand-off code with its PKCE verifier."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from cli.sdk import Client
from cli.sso import SsoFailed, sso_sign_in


def _server(enabled: bool = True, seen: list[dict[str, Any]] | None = None) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/auth/oidc/config":
            return httpx.Response(200, json={"enabled": enabled, "label": "IdP"})
        if request.url.path == "/api/auth/oidc/token":
            body = json.loads(request.content)
            (seen if seen is not None else []).append(body)
            return httpx.Response(200, json={"access_token": "acc", "refresh_token": "ref"})
        if request.url.path == "/api/auth/me":
            assert request.headers["authorization"] == "Bearer acc"
            return httpx.Response(200, json={"email": "a@example.com"})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})

    return httpx.MockTransport(handle)


def _drive(client: Client, answers: list[dict[str, str]]) -> Any:
    """Run sso_sign_in; when it shows the URL, play the browser: GET its loopback
    callback with each answer (``state`` filled in when ``"STATE"``)."""
    result: dict[str, Any] = {}
    pages: list[str] = []
    browsers: list[threading.Thread] = []

    def show(url: str) -> None:
        query = parse_qs(urlsplit(url).query)
        port, state = query["cli_port"][0], query["cli_state"][0]
        result["challenge"] = query["cli_challenge"][0]

        def browser() -> None:
            for answer in answers:
                params = {k: (state if v == "STATE" else v) for k, v in answer.items()}
                r = httpx.get(f"http://127.0.0.1:{port}/callback", params=params, timeout=10)
                pages.append(r.text)

        thread = threading.Thread(target=browser, daemon=True)
        browsers.append(thread)
        thread.start()

    try:
        result["me"] = sso_sign_in(client, open_browser=False, timeout=10, show_url=show)
    except SsoFailed as exc:
        result["error"] = str(exc)
    # sign-in returns once the callback arrived, which can be before the browser has read
    # the page the listener answered with: wait for the browser before looking at pages.
    for thread in browsers:
        thread.join(timeout=10)
    result["pages"] = pages
    return result


def test_not_configured_is_a_clear_error() -> None:
    client = Client("http://aidp.test", transport=_server(enabled=False))
    with pytest.raises(SsoFailed, match="not configured on http://aidp.test"):
        sso_sign_in(client, open_browser=False, timeout=1, show_url=lambda _u: None)


def test_a_foreign_state_is_ignored_and_the_code_is_traded_with_the_verifier() -> None:
    seen: list[dict[str, Any]] = []
    client = Client("http://aidp.test", transport=_server(seen=seen))
    result = _drive(
        client, [{"code": "evil", "state": "not-ours"}, {"code": "h1", "state": "STATE"}]
    )
    assert result["me"] == {"email": "a@example.com"}
    assert [b["code"] for b in seen] == ["h1"]
    digest = hashlib.sha256(seen[0]["code_verifier"].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == result["challenge"]
    assert (client.access_token, client.refresh_token) == ("acc", "ref")


def test_a_refusal_shows_its_reason_escaped() -> None:
    client = Client("http://aidp.test", transport=_server())
    result = _drive(client, [{"error": "sso_email_unverified", "state": "STATE"}])
    assert "not verified your email" in result["error"]
    client = Client("http://aidp.test", transport=_server())
    result = _drive(client, [{"error": "\x1b]0;pwned\x07<script>", "state": "STATE"}])
    assert result["error"] == "single sign-on failed (unexpected answer)"
    assert "<script>" not in "".join(result["pages"]) and "Sign-in failed" in result["pages"][0]
