"""Single sign-on: a started sign-in (flow), its end at the callback, and the account it
opens. The protocol itself (discovery, PKCE, ID-token checks) is :mod:`services.auth.oidc`.

A flow is a row of ``auth_oidc_flows``, found by the SHA-256 of its ``state`` and bound to
the browser that started it by its ``aidp_oidc_<id>`` cookie (SHA-256 stored): a callback with
a forged or replayed ``state``, or one that arrives in another browser (login CSRF: an
attacker's own code pushed to a victim), is refused. Each flow is spent once.

Accounts (issuer + subject are remembered in ``auth_identities``):

- a known identity signs in as its user;
- otherwise the provider must say the email is verified (``email_verified``); an existing
  account with that email is linked (once per issuer: another subject for the same account
  is refused), else a new account is made as the registration mode allows: ``open``
  anyone; ``invite`` only with an invitation code passed to ``/oidc/login``, unless the
  email is in ``ADMIN_EMAILS``, the person is in ``OIDC_ADMIN_GROUP`` or the email's
  domain is in ``OIDC_ALLOWED_DOMAINS``; ``closed`` nobody new. An SSO account has no
  password (password login fails for it like a wrong password).
- with ``OIDC_ADMIN_GROUP`` set, every SSO sign-in sets the admin flag from the group
  (``ADMIN_EMAILS`` stay admins); losing it revokes the user's older access tokens.

The platform then issues its own tokens, as a password login would.

This module is the flow (start, callback); the account rules are
:mod:`services.auth.sso_accounts`, the CLI's hand-off :mod:`services.auth.sso_cli`, the
refusal :mod:`services.auth.sso_refused`. Their public names are importable from here.

A CLI sign-in (``aidp login --sso``) starts the same way with ``cli_port``,
``cli_challenge`` (S256 of a verifier only the CLI holds) and ``cli_state``; the callback
sends the browser to ``http://127.0.0.1:<cli_port>/callback`` with a one-time hand-off
code, which ``POST /oidc/token`` trades, with the verifier, for a token pair.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from services.auth.context import AuthContext
from services.auth.models import OidcFlow, aware, utcnow
from services.auth.oidc import OidcError, OidcProvider
from services.auth.opaque import sha256_hex
from services.auth.service import TokenPair, issue_session
from services.auth.sso_accounts import NO_PASSWORD, checked_email, resolve_user
from services.auth.sso_cli import (
    HANDOFF_SECONDS,
    cli_redirect,
    redeem_handoff,
    s256,
    valid_cli_params,
)
from services.auth.sso_cli import STATE as _STATE
from services.auth.sso_refused import SsoRefused
from shared.errors import NotFound, RateLimited

__all__ = [
    "HANDOFF_SECONDS",
    "NO_PASSWORD",
    "Finished",
    "SsoRefused",
    "StartedFlow",
    "cli_redirect",
    "finish",
    "flow_cookie_name",
    "redeem_handoff",
    "s256",
    "start",
    "valid_cli_params",
]

log = logging.getLogger("aidp.auth.sso")

_PROVIDER_ERROR = re.compile(r"^[a-z_]{1,40}$")


@dataclass(frozen=True)
class StartedFlow:
    authorization_url: str
    binding: str  # the flow cookie's value
    cookie_name: str  # aidp_oidc_<12 hex of the state's SHA-256>: one per sign-in


def flow_cookie_name(state: str) -> str:
    """The browser-binding cookie of the sign-in with ``state``: one cookie per sign-in, so
    two sign-ins started in two tabs do not overwrite each other's binding."""
    return f"aidp_oidc_{sha256_hex(state)[:12]}"


@dataclass(frozen=True)
class Finished:
    pair: TokenPair | None = None  # browser: the session (refresh cookie)
    cli_redirect: str | None = None  # CLI: where the browser goes with the hand-off code
    email: str = ""


def _provider(ctx: AuthContext) -> OidcProvider:
    if ctx.oidc is None:
        raise NotFound("single sign-on is not configured on this platform")
    return ctx.oidc


def start(
    ctx: AuthContext,
    *,
    redirect_uri: str,
    address: str,
    invitation: str | None = None,
    cli_port: int | None = None,
    cli_challenge: str | None = None,
    cli_state: str | None = None,
) -> StartedFlow:
    """Remember a new sign-in and return where to send the browser. Raises
    :class:`OidcError` when the provider cannot be used, 429 past the per-address limit of
    unfinished sign-ins."""
    provider = _provider(ctx)
    s = ctx.settings
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    verifier, binding = secrets.token_urlsafe(64), secrets.token_urlsafe(32)
    url = provider.authorization_url(
        redirect_uri=redirect_uri, state=state, nonce=nonce, code_verifier=verifier
    )
    now = utcnow()
    with ctx.db.session() as session:
        # Forget flows long gone (spent or not) so the table stays small.
        session.execute(delete(OidcFlow).where(col(OidcFlow.expires_at) < now - timedelta(hours=1)))
        if s.oidc_pending_limit_per_address:
            pending = session.exec(
                select(func.count())
                .select_from(OidcFlow)
                .where(
                    OidcFlow.address == address,
                    col(OidcFlow.used_at).is_(None),
                    col(OidcFlow.expires_at) > now,
                )
            ).one()
            if pending >= s.oidc_pending_limit_per_address:
                session.commit()
                raise RateLimited(
                    "too many unfinished sign-ins from this address; finish one or wait",
                    retry_after=s.oidc_flow_ttl_seconds,
                )
        session.add(
            OidcFlow(
                id=sha256_hex(state),
                binding_hash=sha256_hex(binding),
                nonce=nonce,
                code_verifier=verifier,
                redirect_uri=redirect_uri,
                address=address[:64],
                kind="cli" if cli_port is not None else "browser",
                invitation=invitation,
                cli_port=cli_port,
                cli_challenge=cli_challenge,
                cli_state=cli_state,
                created_at=now,
                expires_at=now + timedelta(seconds=s.oidc_flow_ttl_seconds),
            )
        )
        session.commit()
    return StartedFlow(authorization_url=url, binding=binding, cookie_name=flow_cookie_name(state))


def _spend_flow(ctx: AuthContext, *, state: str | None, binding: str | None) -> OidcFlow:
    if not state or not _STATE.fullmatch(state):
        raise SsoRefused("sso_state_invalid")
    now = utcnow()
    with ctx.db.session() as session:
        flow = session.get(OidcFlow, sha256_hex(state))
        if flow is None or flow.used_at is not None or aware(flow.expires_at) <= now:
            raise SsoRefused("sso_state_invalid")
        if not binding or not hmac.compare_digest(
            flow.binding_hash.encode(), sha256_hex(binding[:200]).encode()
        ):
            log.warning("oidc: callback without the browser binding of its flow (login CSRF?)")
            raise SsoRefused("sso_state_invalid")
        spent = session.execute(
            update(OidcFlow)
            .where(col(OidcFlow.id) == flow.id, col(OidcFlow.used_at).is_(None))
            .values(used_at=now)
        )
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            raise SsoRefused("sso_state_invalid")
        session.commit()
        session.refresh(flow)
        session.expunge(flow)
    return flow


def finish(
    ctx: AuthContext,
    *,
    state: str | None,
    code: str | None,
    error: str | None,
    binding: str | None,
) -> Finished:
    """The callback: check the flow, verify the sign-in with the provider, find or make
    the account, and open a session (browser) or a hand-off (CLI). Raises
    :class:`SsoRefused` (with ``cli`` set for a CLI flow)."""
    provider = _provider(ctx)
    flow = _spend_flow(ctx, state=state, binding=binding)
    cli = flow if flow.kind == "cli" else None
    try:
        if error:
            reason = error if _PROVIDER_ERROR.fullmatch(error) else "error"
            raise SsoRefused("sso_denied", f"the identity provider said no ({reason})")
        if not code or len(code) > 2048:
            raise SsoRefused("sso_state_invalid")
        claims = provider.sign_in(
            code=code,
            code_verifier=flow.code_verifier,
            redirect_uri=flow.redirect_uri,
            nonce=flow.nonce,
        )
        email = checked_email(claims, trust=ctx.settings.oidc_trust_email)
        with ctx.db.session() as session:
            user = resolve_user(ctx, session, claims, email, invitation=flow.invitation)
            if cli is None:
                pair = issue_session(ctx, session, user)
                _commit(ctx, session)
                return Finished(pair=pair, email=user.email)
            handoff = secrets.token_urlsafe(32)
            session.execute(
                update(OidcFlow)
                .where(col(OidcFlow.id) == flow.id)
                .values(
                    handoff_hash=sha256_hex(handoff),
                    user_id=user.id,
                    expires_at=utcnow() + timedelta(seconds=HANDOFF_SECONDS),
                    code_verifier="",
                    invitation=None,
                )
            )
            _commit(ctx, session)
            return Finished(cli_redirect=cli_redirect(flow, code=handoff), email=user.email)
    except OidcError as exc:
        raise SsoRefused(exc.code, exc.message, cli=cli) from None
    except SsoRefused as exc:
        exc.cli = cli
        raise


def _commit(ctx: AuthContext, session: Session) -> None:
    try:
        session.commit()
    except IntegrityError:  # the same new email or identity, signed in twice at once
        session.rollback()
        raise SsoRefused("sso_retry") from None
    ctx.published()
