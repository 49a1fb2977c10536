"""``aidp login --sso``: single sign-on through the browser with a loopback redirect.

The CLI listens on ``127.0.0.1:<free port>``, opens (or prints) the platform's
``/api/auth/oidc/login?cli_port=…&cli_challenge=…&cli_state=…`` URL and waits. The person
signs in at the identity provider; the platform checks the sign-in and sends the browser
to ``http://127.0.0.1:<port>/callback?code=…&state=…`` with a one-time hand-off code, which
the CLI trades, with the PKCE verifier only it knows (S256 of it went out as
``cli_challenge``), for the platform's own tokens at ``POST /api/auth/oidc/token``.
Another process on this machine that sees the URL or the code cannot use it without the
verifier; the ``state`` check refuses a callback this CLI did not start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import queue
import re
import secrets
import threading
import webbrowser
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cli.sdk import AidpError, Client

__all__ = ["MESSAGES", "SsoFailed", "sso_sign_in"]

#: What the platform's ``sso_…`` error codes mean, for a person at a terminal.
MESSAGES = {
    "sso_state_invalid": "the sign-in expired or was started elsewhere; run the command again",
    "sso_denied": "the sign-in was cancelled or refused at the identity provider",
    "sso_email_missing": "the identity provider did not share your email address",
    "sso_email_invalid": "the identity provider's email address is not usable here",
    "sso_email_unverified": "your identity provider has not verified your email address; "
    "verify it there and try again",
    "sso_registration_closed": "there is no account for your email and registration is closed; "
    "ask an administrator",
    "sso_invitation_required": "this platform is invite-only: ask an administrator for an "
    "invitation and pass it with --invitation",
    "sso_invitation_invalid": "the invitation code is invalid, expired, used or for another email",
    "sso_account_disabled": "your account is disabled; ask an administrator",
    "sso_identity_conflict": "your account is linked to another identity at the provider; "
    "ask an administrator",
    "sso_token_invalid": "the identity provider's answer failed verification",
    "sso_unavailable": "the identity provider is not reachable; try again later",
    "sso_misconfigured": "single sign-on is misconfigured on the platform; tell an administrator",
    "sso_retry": "the sign-in raced with another one; try again",
}

_PAGE = """<!doctype html><meta charset="utf-8"><title>aidp</title>
<body style="font-family:sans-serif;margin:3em"><h1>{title}</h1><p>{text}</p></body>"""


class SsoFailed(Exception):
    pass


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _listener(results: queue.Queue[dict[str, str]]) -> HTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 -- http.server's name
            parts = urlsplit(self.path)
            if parts.path != "/callback":
                self.send_error(404)
                return
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            ok = "code" in query and "error" not in query
            title = "Signed in" if ok else "Sign-in failed"
            text = (
                "You can close this tab and go back to the terminal."
                if ok
                else html.escape(MESSAGES.get(query.get("error", ""), "see the terminal"))
            )
            body = _PAGE.format(title=title, text=text).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
            results.put(query)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    return HTTPServer(("127.0.0.1", 0), Handler)


def sso_sign_in(
    client: Client,
    *,
    invitation: str | None = None,
    open_browser: bool = True,
    timeout: float = 300.0,
    show_url: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Sign ``client`` in through the platform's identity provider; returns ``/me``."""
    config = client.request("GET", "/api/auth/oidc/config", auth=False)
    if not isinstance(config, dict) or not config.get("enabled"):
        raise SsoFailed(f"single sign-on is not configured on {client.server}")
    verifier = secrets.token_urlsafe(48)
    state = secrets.token_urlsafe(24)
    results: queue.Queue[dict[str, str]] = queue.Queue()
    server = _listener(results)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="aidp-sso")
    thread.start()
    try:
        params = {
            "cli_port": str(server.server_address[1]),
            "cli_challenge": _s256(verifier),
            "cli_state": state,
        }
        if invitation:
            params["invitation"] = invitation
        url = f"{client.server}/api/auth/oidc/login?{urlencode(params)}"
        show_url(url)
        if open_browser:
            try:
                webbrowser.open(url)
            except Exception:  # no browser here: the printed URL is the way
                pass
        while True:
            try:
                answer = results.get(timeout=timeout)
            except queue.Empty:
                raise SsoFailed(
                    f"no sign-in within {int(timeout)} s; run the command again"
                ) from None
            if hmac.compare_digest(answer.get("state", ""), state):
                break  # anything else is not our sign-in: keep waiting
    finally:
        server.shutdown()
        server.server_close()
    if "error" in answer or "code" not in answer:
        code = answer.get("error", "")
        shown = code if re.fullmatch(r"[a-z_]{1,40}", code) else "unexpected answer"
        raise SsoFailed(MESSAGES.get(code, f"single sign-on failed ({shown})"))
    try:
        body = client.request(
            "POST",
            "/api/auth/oidc/token",
            auth=False,
            json={"code": answer["code"], "code_verifier": verifier},
        )
    except AidpError as exc:
        raise SsoFailed(f"the platform refused the sign-in: {exc}") from None
    client.api_token = None
    client._take_tokens(body)
    me = client.request("GET", "/api/auth/me")
    return me if isinstance(me, dict) else {}
