"""The CLI's single sign-on (``aidp login --sso``): its parameters, the loopback redirect
and the hand-off code it trades for a token pair.

The CLI starts a sign-in with ``cli_port``, ``cli_challenge`` (S256 of a verifier only the
CLI holds) and ``cli_state``; the callback sends the browser to
``http://127.0.0.1:<cli_port>/callback`` with a one-time hand-off code, which
``POST /oidc/token`` trades, with the verifier, for a token pair (:func:`redeem_handoff`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from urllib.parse import urlencode

from sqlalchemy import update
from sqlmodel import col, select

from services.auth.context import AuthContext
from services.auth.models import OidcFlow, User, aware, utcnow
from services.auth.opaque import sha256_hex
from services.auth.service import TokenPair, issue_session
from shared.errors import Unauthenticated

__all__ = [
    "HANDOFF_SECONDS",
    "STATE",
    "cli_redirect",
    "redeem_handoff",
    "s256",
    "valid_cli_params",
]

#: how long the hand-off code of a finished CLI sign-in can be traded
HANDOFF_SECONDS = 120
#: a ``state`` (the flow's, the CLI's): URL-safe, 16-128 characters
STATE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_PKCE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of ``verifier`` (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def cli_redirect(flow: OidcFlow, **params: str) -> str:
    """The CLI's loopback listener (always 127.0.0.1: never an address from the request)."""
    query = urlencode({**params, "state": flow.cli_state or ""})
    return f"http://127.0.0.1:{flow.cli_port}/callback?{query}"


def redeem_handoff(ctx: AuthContext, *, code: str, code_verifier: str) -> TokenPair:
    """The CLI's last step: the hand-off code and the verifier of the flow's
    ``cli_challenge`` → a token pair. Single use, two minutes."""
    invalid = Unauthenticated("invalid or expired sign-in code")
    if not code or len(code) > 200 or not code_verifier or len(code_verifier) > 200:
        raise invalid
    now = utcnow()
    with ctx.db.session() as session:
        flow = session.exec(
            select(OidcFlow).where(OidcFlow.handoff_hash == sha256_hex(code))
        ).first()
        if (
            flow is None
            or flow.handoff_used_at is not None
            or aware(flow.expires_at) <= now
            or flow.cli_challenge is None
            or flow.user_id is None
        ):
            raise invalid
        if not hmac.compare_digest(flow.cli_challenge.encode(), s256(code_verifier).encode()):
            raise invalid
        spent = session.execute(
            update(OidcFlow)
            .where(col(OidcFlow.id) == flow.id, col(OidcFlow.handoff_used_at).is_(None))
            .values(handoff_used_at=now)
        )
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            raise invalid
        user = session.get(User, flow.user_id)
        if user is None or user.disabled_at is not None:
            raise invalid
        pair = issue_session(ctx, session, user)
        session.commit()
    return pair


def valid_cli_params(
    cli_port: int | None, cli_challenge: str | None, cli_state: str | None
) -> str | None:
    """None when the CLI parameters are all absent or all well-formed, else what is wrong."""
    given = [v is not None for v in (cli_port, cli_challenge, cli_state)]
    if not any(given):
        return None
    if not all(given):
        return "cli_port, cli_challenge and cli_state go together"
    assert cli_port is not None and cli_challenge is not None and cli_state is not None
    if not 1024 <= cli_port <= 65535:
        return "cli_port: must be 1024-65535"
    if not _PKCE.fullmatch(cli_challenge):
        return "cli_challenge: must be the S256 challenge (43 URL-safe characters)"
    if not STATE.fullmatch(cli_state):
        return "cli_state: 16-128 URL-safe characters"
    return None
