"""Who is calling: bearer tokens verified against the auth service.

- Access tokens (JWT) are verified locally against the auth service's JWKS. The key set is
  refetched every ``jwks_refresh_interval`` seconds (keys no longer published are dropped,
  with the cached verifications of tokens they signed) and on an unknown ``kid`` (at most
  once per ``jwks_refresh_seconds``). The algorithm is pinned to EdDSA; ``iss``, ``aud``,
  ``exp``, ``iat`` and ``sub`` are required, and ``exp − iat`` may not exceed
  ``access_token_ttl_seconds`` plus ``jwt_leeway_seconds`` (a forged long-lived token
  signed with a valid key is refused). A token whose ``iat`` is older than its user's
  ``not_before`` (:mod:`services.gateway.sessions`) is revoked. A signing key revoked by an
  admin (``SigningKeyRevoked``, pushed to every replica) stops verifying at once and is
  never learnt again, whatever a JWKS fetched from a replica that has not heard yet says.
- API tokens (``aidp_…``) are opaque: the auth service introspects them; answers are
  cached for ``api_token_cache_seconds`` keyed by a token hash and dropped at once when the
  user's sessions are revoked. A token that is not even shaped like one is refused here.
- Scopes (:mod:`shared.scopes`): a JWT's ``scope`` claim (space-separated; absent = every
  scope its user may hold), an API token's ``scopes`` from introspection. ``admin`` only
  ever for platform admins.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from services.gateway.downstream import Downstream
from services.gateway.sessions import SessionRegistry
from shared.contracts.identity import IntrospectIn, IntrospectOut, parse_answer
from shared.errors import TransientError, Unauthenticated
from shared.scopes import ALL_SCOPES, Scope

__all__ = ["Identity", "TokenVerifier", "user_scopes"]

log = logging.getLogger(__name__)

API_TOKEN_PREFIX = "aidp_"
_API_TOKEN_SHAPE = re.compile(r"aidp_[A-Za-z0-9_-]{8,512}")
_CACHE_SIZE = 4096


def user_scopes(is_admin: bool) -> frozenset[Scope]:
    """Every scope a user may hold: all of them, ``admin`` only for platform admins."""
    return ALL_SCOPES if is_admin else ALL_SCOPES - {Scope.ADMIN}


def _scopes(names: object, *, is_admin: bool) -> frozenset[Scope]:
    """The scopes ``names`` grants (None = all the user's); unknown names grant nothing."""
    allowed = user_scopes(is_admin)
    if names is None:
        return allowed
    if isinstance(names, str):
        names = names.split()
    if not isinstance(names, list | tuple):
        raise Unauthenticated("token scopes are malformed")
    valid = {s.value for s in Scope}
    return frozenset(Scope(n) for n in names if n in valid) & allowed


@dataclass(frozen=True)
class Identity:
    """The authenticated caller.

    ``issued_at``/``expires_at`` (epoch seconds) are those of a session JWT; an API token
    has neither. ``kid`` is the key that signed a JWT.
    """

    user_id: uuid.UUID
    email: str
    is_admin: bool = False
    scopes: frozenset[Scope] = ALL_SCOPES
    issued_at: float | None = None
    expires_at: float | None = None
    kid: str | None = None

    @property
    def is_api_token(self) -> bool:
        return self.issued_at is None


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
        sessions: SessionRegistry,
        access_token_ttl_seconds: float = 900.0,
        leeway_seconds: float = 30.0,
    ) -> None:
        self.auth = auth
        self.issuer = issuer
        self.audience = audience
        self.jwks_refresh_seconds = jwks_refresh_seconds
        self.api_token_cache_seconds = api_token_cache_seconds
        self.sessions = sessions
        self.max_lifetime = access_token_ttl_seconds + leeway_seconds
        self._keys: dict[str, jwt.PyJWK] = {}
        self._revoked_kids: set[str] = set()
        self._jwks_fetched_at = float("-inf")
        self._jwks_lock = asyncio.Lock()
        # token digest -> (identity, trusted until epoch seconds)
        self._cache: OrderedDict[bytes, tuple[Identity, float]] = OrderedDict()
        sessions.listen(self._on_revoked)

    async def verify(self, token: str) -> Identity:
        if not token:
            raise Unauthenticated("missing bearer token")
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._cache.get(digest)
        if cached is not None:
            identity, until = cached
            if time.time() < until and (identity.kid is None or identity.kid in self._keys):
                await self._check_not_revoked(identity)
                return identity
            self._cache.pop(digest, None)
        if token.startswith(API_TOKEN_PREFIX):
            identity = await self._introspect(token)
            until = time.time() + self.api_token_cache_seconds
        else:
            identity = await self._verify_jwt(token)
            until = identity.expires_at or 0.0
        await self._check_not_revoked(identity)
        if until > time.time():
            self._cache[digest] = (identity, until)
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return identity

    async def _check_not_revoked(self, identity: Identity) -> None:
        if identity.issued_at is None:
            return  # API tokens: revoked by auth itself (introspection), cache dropped on push
        not_before = await self.sessions.not_before(identity.user_id)
        if not_before is not None and identity.issued_at < not_before:
            raise Unauthenticated("session revoked; sign in again")

    def _on_revoked(self, user_id: uuid.UUID, _not_before: float) -> None:
        """Forget the cached API-token introspections of ``user_id`` (JWTs are checked
        against ``not_before`` on every use)."""
        for digest, (identity, _until) in list(self._cache.items()):
            if identity.user_id == user_id and identity.is_api_token:
                self._cache.pop(digest, None)

    # -- JWT -------------------------------------------------------------------------------

    async def _verify_jwt(self, token: str) -> Identity:
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
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated("invalid token") from exc
        issued_at, expires_at = claims["iat"], claims["exp"]
        if not all(isinstance(v, int | float) for v in (issued_at, expires_at)):
            raise Unauthenticated("invalid token times")
        if expires_at - issued_at > self.max_lifetime:
            raise Unauthenticated("token lifetime exceeds the access-token lifetime")
        try:
            user_id = uuid.UUID(str(claims["sub"]))
        except ValueError as exc:
            raise Unauthenticated("invalid token subject") from exc
        is_admin = claims.get("adm") is True
        return Identity(
            user_id=user_id,
            email=str(claims.get("email") or ""),
            is_admin=is_admin,
            scopes=_scopes(claims.get("scope"), is_admin=is_admin),
            issued_at=float(issued_at),
            expires_at=float(expires_at),
            kid=kid,
        )

    def revoke_key(self, kid: str) -> None:
        """``kid`` was revoked (``SigningKeyRevoked``): its tokens are refused from now on,
        cached verifications included, and no later JWKS brings it back."""
        self._revoked_kids.add(kid)
        self._keys.pop(kid, None)  # a cached identity is trusted only while its kid is known

    async def _key(self, kid: str) -> jwt.PyJWK:
        if kid in self._revoked_kids:
            raise Unauthenticated("token signed by a revoked key")
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

    async def refresh_jwks(self) -> None:
        """Fetch the published key set now; keys no longer published stop verifying."""
        async with self._jwks_lock:
            await self._refresh_jwks()

    async def refresh_jwks_forever(self, interval: float) -> None:
        """Refetch the key set every ``interval`` seconds (a failed fetch keeps the old)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh_jwks()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("periodic JWKS refresh failed (keeping the previous keys): %r", exc)

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
            if jwk.get("kid") in self._revoked_kids:
                continue  # auth's replica had not heard of the revocation yet
            try:
                keys[str(jwk["kid"])] = jwt.PyJWK(jwk, algorithm="EdDSA")
            except (KeyError, jwt.PyJWTError) as exc:
                log.warning("ignoring unusable JWK: %r", exc)
        self._keys = keys
        self._jwks_fetched_at = time.monotonic()
        for digest, (identity, _until) in list(self._cache.items()):
            if identity.kid is not None and identity.kid not in keys:
                self._cache.pop(digest, None)

    # -- API tokens ------------------------------------------------------------------------

    async def _introspect(self, token: str) -> Identity:
        if not _API_TOKEN_SHAPE.fullmatch(token):
            raise Unauthenticated("malformed API token")
        try:
            response = await self.auth.client().post(
                "/internal/introspect", json=IntrospectIn(token=token).model_dump()
            )
        except httpx.TransportError as exc:
            raise TransientError("auth service is unavailable") from exc
        if response.status_code in (400, 401, 403, 404, 422):
            raise Unauthenticated("invalid or revoked API token")
        if response.status_code != 200:
            raise TransientError(f"auth introspection failed ({response.status_code})")
        try:
            body = response.json()
        except ValueError as exc:
            raise TransientError("auth introspection answered invalid JSON") from exc
        answer = parse_answer(IntrospectOut, body, what="introspection")
        try:
            user_id = uuid.UUID(answer.user_id)
        except ValueError as exc:
            raise TransientError("auth introspection answered an unexpected body") from exc
        return Identity(
            user_id=user_id,
            email=answer.email,
            is_admin=answer.is_admin,
            scopes=_scopes(answer.scopes, is_admin=answer.is_admin),
        )
