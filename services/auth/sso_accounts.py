"""Which account a single sign-on opens (the rules of :mod:`services.auth.sso`'s docstring).

- a known identity (issuer + subject, ``auth_identities``) signs in as its user;
- otherwise the provider must say the email is verified; an existing account with that
  email is linked (once per issuer), else a new account is made as the registration mode
  allows (invitation, ``ADMIN_EMAILS``, ``OIDC_ADMIN_GROUP``, ``OIDC_ALLOWED_DOMAINS``);
- with ``OIDC_ADMIN_GROUP`` set, every sign-in sets the admin flag from the group.
"""

from __future__ import annotations

import logging
import uuid

from sqlmodel import Session, select

from services.auth import invitations
from services.auth.context import AuthContext
from services.auth.emails import normalise_email
from services.auth.first_admin import new_account_is_admin
from services.auth.models import Identity, User, utcnow
from services.auth.oidc import OidcClaims
from services.auth.revocation import revoke_sessions
from services.auth.sso_refused import SsoRefused
from shared.errors import AidpError

__all__ = ["NO_PASSWORD", "checked_email", "resolve_user"]

log = logging.getLogger("aidp.auth.sso")

#: ``password_hash`` of an account made by SSO: not an argon2 hash, so no password matches.
NO_PASSWORD = "!sso"


def checked_email(claims: OidcClaims, *, trust: bool = False) -> str:
    """The provider's email, normalised; refused when missing, unusable or unverified
    (unless ``trust``: ``OIDC_TRUST_EMAIL``)."""
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


def resolve_user(
    ctx: AuthContext, session: Session, claims: OidcClaims, email: str, *, invitation: str | None
) -> User:
    """The user this sign-in is (found, linked or made), within ``session`` (uncommitted)."""
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
    else:  # as register(): ADMIN_EMAILS, else the first account on loopback
        is_admin = new_account_is_admin(session, s, email)
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
