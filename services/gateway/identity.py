"""Who is calling: bearer tokens verified against the auth service.

- Access tokens (JWT) are verified locally against the auth service's JWKS, cached and
  refreshed when an unknown ``kid`` shows up (at most once per ``jwks_refresh_seconds``).
  The algorithm is pinned to EdDSA; ``iss``, ``aud``, ``exp`` and ``sub`` are required.
  A logout revokes refresh tokens; an access token stays valid until it expires (15 min).
- API tokens (``aidp_…``) are opaque: the auth service introspects them; answers are
  cached for ``api_token_cache_seconds`` (the revocation lag) keyed by a token hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from services.gateway.downstream import Downstream
from shared.errors import TransientError, Unauthenticated

__all__ = ["Identity", "TokenVerifier"]

log = logging.getLogger(__name__)

API_TOKEN_PREFIX = "aidp_"
_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Identity:
    """The authenticated caller."""

    user_id: uuid.UUID
    email: str
    is_admin: bool = False


class TokenVerifier:
    """Turns a bearer token into an :class:`Identity` or raises ``Unauthenticated``."""

    def __init__(
        self,
        auth: Downstream,
        *,
        issuer: str,
        audience: str,
        jwks_refresh_seconds: float,
        api_token_cache_seconds: float,
    ) -> None:
        self.auth = auth
        self.issuer = issuer
        self.audience = audience
        self.jwks_refresh_seconds = jwks_refresh_seconds
        self.api_token_cache_seconds = api_token_cache_seconds
        self._keys: dict[str, jwt.PyJWK] = {}
        self._jwks_fetched_at = float("-inf")
        self._jwks_lock = asyncio.Lock()
        # token digest -> (identity, trusted until monotonic / exp)
        self._cache: OrderedDict[bytes, tuple[Identity, float]] = OrderedDict()

    async def verify(self, token: str) -> Identity:
        if not token:
            raise Unauthenticated("missing bearer token")
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._cache.get(digest)
        if cached is not None:
            identity, until = cached
            if time.time() < until:
                return identity
            self._cache.pop(digest, None)
        if token.startswith(API_TOKEN_PREFIX):
            identity = await self._introspect(token)
            until = time.time() + self.api_token_cache_seconds
        else:
            identity, until = await self._verify_jwt(token)
        if until > time.time():
            self._cache[digest] = (identity, until)
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return identity

    # -- JWT -------------------------------------------------------------------------------

    async def _verify_jwt(self, token: str) -> tuple[Identity, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated("malformed token") from exc
        kid = header.get("kid")
        if header.get("alg") != "EdDSA" or not isinstance(kid, str):
            raise Unauthenticated("token algorithm or key id not accepted")
        key = await self._key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=["EdDSA"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated("invalid token") from exc
        try:
            user_id = uuid.UUID(str(claims["sub"]))
        except ValueError as exc:
            raise Unauthenticated("invalid token subject") from exc
        identity = Identity(
            user_id=user_id,
            email=str(claims.get("email") or ""),
            is_admin=claims.get("adm") is True,
        )
        return identity, float(claims["exp"])

    async def _key(self, kid: str) -> jwt.PyJWK:
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._jwks_lock:
            key = self._keys.get(kid)
            if (
                key is None
                and time.monotonic() - self._jwks_fetched_at >= self.jwks_refresh_seconds
            ):
                await self._refresh_jwks()
                key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated("token signed by an unknown key")
        return key

    async def _refresh_jwks(self) -> None:
        try:
            body = await self.auth.json("GET", "/api/auth/jwks")
        except TransientError:
            raise
        except Exception as exc:
            raise TransientError("auth service JWKS unavailable") from exc
        keys: dict[str, jwt.PyJWK] = {}
        for jwk in body.get("keys", []) if isinstance(body, dict) else []:
            if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
                continue  # only Ed25519 keys can verify EdDSA tokens: no alg confusion
            try:
                keys[str(jwk["kid"])] = jwt.PyJWK(jwk, algorithm="EdDSA")
            except (KeyError, jwt.PyJWTError) as exc:
                log.warning("ignoring unusable JWK: %r", exc)
        self._keys = keys
        self._jwks_fetched_at = time.monotonic()

    # -- API tokens ------------------------------------------------------------------------

    async def _introspect(self, token: str) -> Identity:
        try:
            response = await self.auth.client().post("/internal/introspect", json={"token": token})
        except httpx.TransportError as exc:
            raise TransientError("auth service is unavailable") from exc
        if response.status_code in (401, 403, 404):
            raise Unauthenticated("invalid or revoked API token")
        if response.status_code != 200:
            raise TransientError(f"auth introspection failed ({response.status_code})")
        body = response.json()
        try:
            return Identity(
                user_id=uuid.UUID(str(body["user_id"])),
                email=str(body.get("email") or ""),
                is_admin=body.get("is_admin") is True,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise TransientError("auth introspection answered an unexpected body") from exc
