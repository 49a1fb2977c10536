"""Access tokens: short-lived EdDSA JWTs.

Claims: ``iss``, ``aud``, ``sub`` (user uuid), ``email``, ``adm`` (platform admin),
``tv`` (the user's token version: logout and password change bump it), ``scope`` (the
space-separated scopes of ``shared.scopes``: every scope the user may hold), ``iat``
(microsecond precision, compared with the user's ``sessions_not_before``), ``exp``
(exactly ``iat`` + the configured TTL), ``jti``; header ``kid``.
Verification pins ``algorithms=["EdDSA"]`` and
requires ``iss``/``aud``/``exp``/``sub``/``iat``, so ``alg: none``, HS256 tokens keyed with the
public key, foreign keys, expired, tampered and mis-addressed tokens all fail.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from services.auth.models import utcnow
from services.auth.signing import SigningKeyring
from shared.errors import Unauthenticated

__all__ = ["AccessClaims", "issue_access_token", "verify_access_token"]

ALGORITHM = "EdDSA"
_REQUIRED = ["iss", "aud", "exp", "sub", "iat", "jti"]


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    email: str
    is_admin: bool
    token_version: int
    jti: str
    issued_at: float


def issue_access_token(
    *,
    keyring: SigningKeyring,
    user_id: str,
    email: str,
    is_admin: bool,
    token_version: int,
    issuer: str,
    audience: str,
    ttl_seconds: int,
    scopes: list[str],
) -> str:
    """Sign an access token with the active key; ``exp − iat`` is exactly ``ttl_seconds``."""
    key = keyring.active()
    # Sub-second iat: a token issued right after a revocation (same second) must not look
    # older than it, nor one issued just before it look newer.
    now = utcnow().timestamp()
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": user_id,
        "email": email,
        "adm": is_admin,
        "tv": token_version,
        "scope": " ".join(scopes),
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})


def verify_access_token(
    token: str, *, keyring: SigningKeyring, issuer: str, audience: str, leeway: int = 0
) -> AccessClaims:
    """The verified claims of ``token``; :class:`Unauthenticated` for anything wrong."""
    try:
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str):
            raise Unauthenticated("invalid access token")
        public_key = keyring.public_key(kid)
        if public_key is None:
            raise Unauthenticated("invalid access token")
        claims = jwt.decode(
            token,
            public_key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": _REQUIRED, "verify_signature": True},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("access token expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated("invalid access token") from exc
    sub, email = claims.get("sub"), claims.get("email")
    adm, tv = claims.get("adm"), claims.get("tv")
    if not isinstance(sub, str) or not _is_uuid(sub) or not isinstance(email, str):
        raise Unauthenticated("invalid access token")
    if not isinstance(adm, bool) or not isinstance(tv, int):
        raise Unauthenticated("invalid access token")
    iat = claims.get("iat")
    if not isinstance(iat, int | float) or isinstance(iat, bool):
        raise Unauthenticated("invalid access token")
    return AccessClaims(
        user_id=sub,
        email=email,
        is_admin=adm,
        token_version=tv,
        jti=str(claims["jti"]),
        issued_at=float(iat),
    )


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
