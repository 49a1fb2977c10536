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

A CLI sign-in (``aidp login --sso``) starts the same way with ``cli_port``,
``cli_challenge`` (S256 of a verifier only the CLI holds) and ``cli_state``; the callback
sends the browser to ``http://127.0.0.1:<cli_port>/callback`` with a one-time hand-off
code, which ``POST /oidc/token`` trades, with the verifier, for a token pair.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from sqlalchemy import delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from services.auth import invitations
from services.auth.context import AuthContext
from services.auth.emails import normalise_email
from services.auth.models import AuthLock, Identity, OidcFlow, User, aware, utcnow
from services.auth.oidc import OidcClaims, OidcError, OidcProvider
from services.auth.opaque import sha256_hex
from services.auth.revocation import revoke_sessions
from services.auth.service import TokenPair, issue_session
from shared.errors import AidpError, NotFound, RateLimited, Unauthenticated

__all__ = [
    "NO_PASSWORD",
    "SsoRefused",
    "StartedFlow",
    "finish",
    "flow_cookie_name",
    "redeem_handoff",
    "s256",
    "start",
]

log = logging.getLogger("aidp.auth.sso")

#: ``password_hash`` of an account made by SSO: not an argon2 hash, so no password matches.
NO_PASSWORD = "!sso"
HANDOFF_SECONDS = 120
_STATE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_PKCE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_PROVIDER_ERROR = re.compile(r"^[a-z_]{1,40}$")

_MESSAGES = {
    "sso_state_invalid": "this sign-in link is invalid, expired or was opened in another "
    "browser; start again",
    "sso_email_missing": "the identity provider did not share an email address",
    "sso_registration_closed": "there is no account for this email and registration is "
    "closed; ask an administrator",
    "sso_invitation_required": "this platform is invite-only: ask an administrator for an "
    "invitation and sign in with it",
    "sso_account_disabled": "this account is disabled; ask an administrator",
    "sso_identity_conflict": "this account is already linked to another identity at the "
    "provider; ask an administrator",
    "sso_retry": "signing in raced with another sign-in; try again",
}


class SsoRefused(AidpError):
    """A sign-in that ends here; ``code`` (``sso_…``) is what the UI or CLI is told."""

    status = 403

    def __init__(self, code: str, message: str | None = None, *, cli: OidcFlow | None = None):
        super().__init__(message or _MESSAGES.get(code, "single sign-on failed"), code=code)
        self.cli = cli  # a CLI flow: the error goes back to its loopback listener


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


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of ``verifier`` (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


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


def cli_redirect(flow: OidcFlow, **params: str) -> str:
    """The CLI's loopback listener (always 127.0.0.1: never an address from the request)."""
    query = urlencode({**params, "state": flow.cli_state or ""})
    return f"http://127.0.0.1:{flow.cli_port}/callback?{query}"


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
        email = _checked_email(claims, trust=ctx.settings.oidc_trust_email)
        with ctx.db.session() as session:
            user = _resolve_user(ctx, session, claims, email, invitation=flow.invitation)
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


def _checked_email(claims: OidcClaims, *, trust: bool = False) -> str:
    if not claims.email:
        raise SsoRefused("sso_email_missing")
    try:
        email = normalise_email(claims.email)
    except (ValueError, AidpError):
        raise SsoRefused(
            "sso_email_invalid", "the identity provider's email address is not usable here"
        ) from None
    if not claims.email_verified and not trust:
        raise SsoRefused(
            "sso_email_unverified",
            f"your identity provider has not verified the email address {email}; verify it "
            "there, then sign in again",
        )
    return email


def _is_admin_group(ctx: AuthContext, claims: OidcClaims) -> bool:
    group = ctx.settings.oidc_admin_group
    return group is not None and group in claims.groups


def _resolve_user(
    ctx: AuthContext, session: Session, claims: OidcClaims, email: str, *, invitation: str | None
) -> User:
    s = ctx.settings
    now = utcnow()
    identity = session.exec(
        select(Identity).where(Identity.issuer == claims.issuer, Identity.subject == claims.subject)
    ).first()
    if identity is not None:
        user = session.get(User, identity.user_id)
        if user is None:
            raise SsoRefused("sso_account_disabled")
        identity.email, identity.last_login_at = email, now
        session.add(identity)
    else:
        user = session.exec(select(User).where(User.email == email)).first()
        if user is not None:
            linked = session.exec(
                select(Identity.id).where(
                    Identity.user_id == user.id, Identity.issuer == claims.issuer
                )
            ).first()
            if linked is not None:
                raise SsoRefused("sso_identity_conflict")
        else:
            user = _new_user(ctx, session, claims, email, invitation=invitation)
        session.add(
            Identity(
                id=str(uuid.uuid4()),
                user_id=user.id,
                issuer=claims.issuer,
                subject=claims.subject,
                email=email,
                created_at=now,
                last_login_at=now,
            )
        )
    if user.disabled_at is not None:
        raise SsoRefused("sso_account_disabled")
    if s.oidc_admin_group is not None:
        admin = _is_admin_group(ctx, claims) or user.email in s.admin_emails
        if admin != user.is_admin:
            user.is_admin = admin
            session.add(user)
            if not admin:  # tokens that still say "admin" must die now
                revoke_sessions(ctx, session, user, reason="admin_revoked")
            log.info("oidc: admin flag of user %s set to %s by group", user.id, admin)
    return user


def _new_user(
    ctx: AuthContext, session: Session, claims: OidcClaims, email: str, *, invitation: str | None
) -> User:
    s = ctx.settings
    mode = s.registration_mode()
    if mode == "closed":
        raise SsoRefused("sso_registration_closed")
    in_group = _is_admin_group(ctx, claims)
    domain = email.rsplit("@", 1)[-1]
    user_id = str(uuid.uuid4())
    if mode == "invite" and not (
        email in s.admin_emails or in_group or domain in s.oidc_allowed_domains
    ):
        if not invitation:
            raise SsoRefused("sso_invitation_required")
        try:
            invitations.redeem_invitation(session, code=invitation, email=email, user_id=user_id)
        except AidpError as exc:
            raise SsoRefused("sso_invitation_invalid", exc.message) from None
    if s.oidc_admin_group is not None:
        is_admin = in_group or email in s.admin_emails
    elif s.admin_emails:
        is_admin = email in s.admin_emails
    elif s.bound_to_loopback():  # as register(): the first account on loopback is the admin
        lock = select(AuthLock).where(AuthLock.name == "first-admin").with_for_update()
        session.exec(lock).first()
        is_admin = session.exec(select(User.id).limit(1)).first() is None
    else:
        is_admin = False
    now = utcnow()
    user = User(
        id=user_id,
        email=email,
        password_hash=NO_PASSWORD,
        is_admin=is_admin,
        created_at=now,
        password_changed_at=now,
    )
    session.add(user)
    session.flush()
    log.info("oidc: account %s created by single sign-on", user_id)
    return user


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
    if not _STATE.fullmatch(cli_state):
        return "cli_state: 16-128 URL-safe characters"
    return None
