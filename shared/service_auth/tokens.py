"""The service token: a compact JWS (EdDSA) naming the caller and the callee.

``header.claims.signature``, each part base64url without padding:

- header ``{"alg": "EdDSA", "typ": "aidp-service+jwt", "kid": "aidp-svc-<caller>:<version>"}``
- claims ``{"iss": "aidp", "sub": <caller>, "aud": <callee>, "iat", "exp", "jti"}``
- signature: Ed25519 over ``header.claims`` by version ``<version>`` of the caller's key.

The key named in ``kid`` must be the key of ``sub``: a token proves who signed it only
because each service's key signs for that service alone (Vault policy, or an in-process key).
Every failure here is :class:`~shared.errors.Unauthenticated` (401).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from shared.errors import Unauthenticated

__all__ = [
    "CLOCK_SKEW_SECONDS",
    "LIFETIME_SECONDS",
    "MAX_LIFETIME_SECONDS",
    "ParsedToken",
    "ServiceClaims",
    "assemble",
    "check_claims",
    "key_name",
    "parse",
    "signing_input",
]

#: How long a minted token is valid.
LIFETIME_SECONDS = 300
#: A token claiming a longer life than this is refused (a stolen one stays short-lived).
MAX_LIFETIME_SECONDS = 600
#: Clock difference tolerated between services.
CLOCK_SKEW_SECONDS = 30

_ISSUER = "aidp"
_TYPE = "aidp-service+jwt"
_MAX_TOKEN_CHARS = 2048
_SERVICE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_KID = re.compile(r"^aidp-svc-([a-z][a-z0-9-]{0,31}):([1-9][0-9]{0,8})$")


def key_name(service: str) -> str:
    """The signing key of ``service`` (a transit key name in Vault): ``aidp-svc-<service>``."""
    if not _SERVICE.match(service):
        raise ValueError(f"invalid service name {service!r}")
    return f"aidp-svc-{service}"


@dataclass(frozen=True)
class ServiceClaims:
    """What a verified token says: who called, for whom, until when."""

    caller: str
    audience: str
    issued_at: int
    expires_at: int
    token_id: str


@dataclass(frozen=True)
class ParsedToken:
    """A structurally valid token whose signature is not checked yet."""

    signer: str
    key_version: int
    claims: dict[str, Any]
    signed: bytes
    signature: bytes


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise Unauthenticated("malformed service credential")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise Unauthenticated("malformed service credential") from exc


def signing_input(*, caller: str, version: int, audience: str, now: int, lifetime: int) -> bytes:
    """``header.claims`` of a new token (what the caller's key signs)."""
    header = {"alg": "EdDSA", "typ": _TYPE, "kid": f"{key_name(caller)}:{version}"}
    claims = {
        "iss": _ISSUER,
        "sub": caller,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
    }
    parts = (json.dumps(p, separators=(",", ":")).encode() for p in (header, claims))
    return b".".join(_b64(p).encode() for p in parts)


def assemble(signed: bytes, signature: bytes) -> str:
    """The token from its signing input and signature."""
    return f"{signed.decode()}.{_b64(signature)}"


def _json_object(part: str) -> dict[str, Any]:
    try:
        value = json.loads(_unb64(part))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unauthenticated("malformed service credential") from exc
    if not isinstance(value, dict):
        raise Unauthenticated("malformed service credential")
    return value


def parse(token: str) -> ParsedToken:
    """Split and decode a token; its header must name a service key (signature unchecked)."""
    if len(token) > _MAX_TOKEN_CHARS or token.count(".") != 2:
        raise Unauthenticated("malformed service credential")
    head, body, sig = token.split(".")
    header = _json_object(head)
    if header.get("alg") != "EdDSA" or header.get("typ") != _TYPE:
        raise Unauthenticated("unsupported service credential")
    kid = header.get("kid")
    match = _KID.match(kid) if isinstance(kid, str) else None
    if match is None:
        raise Unauthenticated("service credential names no service key")
    claims = _json_object(body)
    signer = match.group(1)
    if claims.get("sub") != signer:
        # a key signs for its own service only: a token naming another caller is forged
        raise Unauthenticated("service credential signed by another service's key")
    return ParsedToken(
        signer=signer,
        key_version=int(match.group(2)),
        claims=claims,
        signed=f"{head}.{body}".encode(),
        signature=_unb64(sig),
    )


def check_claims(parsed: ParsedToken, *, audience: str, now: float) -> ServiceClaims:
    """The claims of a token whose signature is valid, if they are for ``audience`` now."""
    c = parsed.claims
    iat, exp, jti = c.get("iat"), c.get("exp"), c.get("jti")
    if c.get("iss") != _ISSUER or not isinstance(jti, str):
        raise Unauthenticated("service credential from an unknown issuer")
    if c.get("aud") != audience:
        raise Unauthenticated("service credential is for another service")
    if type(iat) is not int or type(exp) is not int:
        raise Unauthenticated("service credential has no validity period")
    if exp - iat > MAX_LIFETIME_SECONDS or exp <= iat:
        raise Unauthenticated("service credential lives too long")
    if iat > now + CLOCK_SKEW_SECONDS:
        raise Unauthenticated("service credential is not valid yet")
    if exp <= now - CLOCK_SKEW_SECONDS:
        raise Unauthenticated("service credential has expired")
    return ServiceClaims(
        caller=parsed.signer, audience=audience, issued_at=iat, expires_at=exp, token_id=jti
    )
