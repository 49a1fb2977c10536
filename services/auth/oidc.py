"""The OpenID Connect relying party: discovery, the authorization URL (code flow with PKCE
S256, ``state`` and ``nonce``), the code exchange and ID-token verification, with Authlib
(``authlib.integrations.httpx_client``, ``authlib.oidc.core``) and joserfc.

Everything that comes from the provider is checked, not trusted:

- discovery: the document's ``issuer`` must equal the configured issuer exactly, and every
  endpoint must be https (http only for a loopback provider when the development setting
  allows it); the document is cached for ``DISCOVERY_TTL`` seconds;
- the ID token: signed with an asymmetric algorithm the provider advertises (never
  ``none`` or an HMAC), by a key of its JWKS (re-read once when a ``kid`` is unknown, at
  most every ``JWKS_MIN_REFRESH`` seconds); ``iss`` = the issuer, ``aud`` contains the
  client id (``azp`` = the client id when there are several audiences), ``exp`` in the
  future, ``iat`` not in the future, ``nonce`` = the one this sign-in sent, ``at_hash``
  matching the access token when present;
- userinfo (read only when the ID token lacks the email or groups): its ``sub`` must be
  the ID token's.

Failures raise :class:`OidcError` with a stable ``code`` (shown to the user as a message,
never the provider's raw text).
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from services.auth.settings import AuthSettings, check_provider_url

__all__ = ["OidcClaims", "OidcError", "OidcProvider"]

log = logging.getLogger("aidp.auth.oidc")

DISCOVERY_TTL = 3600.0
JWKS_TTL = 3600.0
JWKS_MIN_REFRESH = 30.0
#: Asymmetric JWS algorithms accepted for ID tokens (intersected with what the provider says).
SAFE_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
_MAX_DOCUMENT_BYTES = 512 * 1024


class OidcError(Exception):
    """A sign-in that cannot go on; ``code`` is stable (the UI maps it to a message)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class OidcClaims:
    """What a verified sign-in tells about the person."""

    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    groups: tuple[str, ...]


def _verified(value: object) -> bool:
    # Some providers (Cognito, older Azure B2C) send the boolean as a string.
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _groups(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


class OidcProvider:
    """One configured provider; thread-safe (routes run in FastAPI's thread pool)."""

    def __init__(self, settings: AuthSettings, *, client_secret: str | None) -> None:
        assert settings.oidc_issuer and settings.oidc_client_id
        self.issuer = settings.oidc_issuer
        self.client_id = settings.oidc_client_id
        self._secret = client_secret
        self._settings = settings
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._jwks: KeySet | None = None
        self._jwks_at = 0.0
        scopes = settings.oidc_scopes.split()
        self.scope = " ".join(["openid", *[s for s in scopes if s != "openid"]])

    # -- provider documents -------------------------------------------------------------

    def _get_json(self, url: str, *, what: str) -> dict[str, Any]:
        try:
            with httpx.Client(
                timeout=self._settings.oidc_http_timeout_seconds, follow_redirects=False
            ) as http:
                response = http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            log.warning("oidc: %s at %s unreachable: %s", what, url, type(exc).__name__)
            raise OidcError("sso_unavailable", "the identity provider is not reachable") from None
        if response.status_code != 200 or len(response.content) > _MAX_DOCUMENT_BYTES:
            log.warning("oidc: %s at %s answered %s", what, url, response.status_code)
            raise OidcError("sso_unavailable", f"the identity provider's {what} is unavailable")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise OidcError("sso_unavailable", f"the identity provider's {what} is not JSON")
        return body

    def _check_endpoint(self, url: object, name: str) -> str:
        if not isinstance(url, str):
            raise OidcError("sso_misconfigured", f"the provider's discovery lacks {name}")
        try:
            check_provider_url(
                url,
                allow_insecure=self._settings.oidc_allow_insecure_issuer,
                what=f"OIDC {name}",
            )
        except ValueError:
            raise OidcError("sso_misconfigured", f"the provider's {name} is not https") from None
        return url

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (cached), checked as the module says."""
        with self._lock:
            if self._metadata is not None and time.monotonic() - self._metadata_at < DISCOVERY_TTL:
                return self._metadata
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        doc = self._get_json(url, what="discovery document")
        if doc.get("issuer") != self.issuer and doc.get("issuer") != self.issuer.rstrip("/"):
            log.warning("oidc: discovery issuer %r is not %r", doc.get("issuer"), self.issuer)
            raise OidcError("sso_misconfigured", "the provider's discovery names another issuer")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            self._check_endpoint(doc.get(name), name)
        if doc.get("userinfo_endpoint") is not None:
            self._check_endpoint(doc.get("userinfo_endpoint"), "userinfo_endpoint")
        with self._lock:
            self._metadata, self._metadata_at = doc, time.monotonic()
        return doc

    @property
    def discovered_issuer(self) -> str:
        return str(self.metadata()["issuer"])

    def _keys(self, *, refresh: bool = False) -> KeySet:
        with self._lock:
            age = time.monotonic() - self._jwks_at
            if (
                self._jwks is not None
                and age < JWKS_TTL
                and not (refresh and age >= JWKS_MIN_REFRESH)
            ):
                return self._jwks
        doc = self._get_json(self.metadata()["jwks_uri"], what="key set")
        try:
            keys = KeySet.import_key_set(doc)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError):
            raise OidcError(
                "sso_unavailable", "the identity provider's key set is invalid"
            ) from None
        with self._lock:
            self._jwks, self._jwks_at = keys, time.monotonic()
        return keys

    def _algorithms(self) -> list[str]:
        offered = self.metadata().get("id_token_signing_alg_values_supported") or ["RS256"]
        algs = [a for a in offered if isinstance(a, str) and a in SAFE_ALGORITHMS]
        if not algs:
            raise OidcError(
                "sso_misconfigured", "the provider signs ID tokens with no safe algorithm"
            )
        return algs

    # -- the code flow --------------------------------------------------------------------

    def _client(self, redirect_uri: str) -> OAuth2Client:
        meta = self.metadata()
        methods = meta.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        if self._secret is None:
            method = "none"
        elif "client_secret_basic" in methods:
            method = "client_secret_basic"
        else:
            method = "client_secret_post"
        return OAuth2Client(
            client_id=self.client_id,
            client_secret=self._secret,
            scope=self.scope,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method=method,
            timeout=self._settings.oidc_http_timeout_seconds,
            follow_redirects=False,
        )

    def authorization_url(
        self, *, redirect_uri: str, state: str, nonce: str, code_verifier: str
    ) -> str:
        """Where to send the browser: the provider's authorize endpoint with ``state``,
        ``nonce`` and the S256 challenge of ``code_verifier``."""
        endpoint = self.metadata()["authorization_endpoint"]
        with self._client(redirect_uri) as client:
            url, _ = client.create_authorization_url(
                endpoint, state=state, nonce=nonce, code_verifier=code_verifier
            )
        return str(url)

    def exchange(self, *, code: str, code_verifier: str, redirect_uri: str) -> dict[str, Any]:
        """Trade the authorization code (and the PKCE verifier) for the provider's tokens."""
        endpoint = self.metadata()["token_endpoint"]
        try:
            with self._client(redirect_uri) as client:
                token = client.fetch_token(endpoint, code=code, code_verifier=code_verifier)
        except (httpx.HTTPError, httpx2.HTTPError) as exc:  # Authlib's client is httpx2's
            log.warning("oidc: token endpoint unreachable: %s", type(exc).__name__)
            raise OidcError("sso_unavailable", "the identity provider is not reachable") from None
        except Exception as exc:  # authlib's OAuthError and friends: the provider said no
            reason = getattr(exc, "error", type(exc).__name__)
            log.warning("oidc: code exchange refused: %s", reason)
            raise OidcError(
                "sso_token_invalid", "the identity provider refused the sign-in code"
            ) from None
        if not isinstance(token, dict) or not isinstance(token.get("id_token"), str):
            raise OidcError("sso_token_invalid", "the identity provider sent no ID token")
        return dict(token)

    def verify_id_token(
        self, id_token: str, *, nonce: str, access_token: str | None
    ) -> dict[str, Any]:
        """The ID token's claims after every check of the module docstring."""
        algorithms = self._algorithms()
        try:
            decoded = self._decode(id_token, algorithms, refresh=False)
        except _UnknownKey:
            try:
                decoded = self._decode(id_token, algorithms, refresh=True)
            except _UnknownKey:
                raise OidcError(
                    "sso_token_invalid", "the ID token's signing key is unknown"
                ) from None
        claims = CodeIDToken(
            decoded.claims,
            decoded.header,  # type: ignore[arg-type]
            options={
                "iss": {"essential": True, "value": self.discovered_issuer},
                "aud": {"essential": True, "value": self.client_id},
                "sub": {"essential": True},
                "exp": {"essential": True},
                "nonce": {"essential": True},
            },
            params={"nonce": nonce, "client_id": self.client_id, "access_token": access_token},
        )
        leeway = self._settings.clock_skew_seconds
        try:
            claims.validate(leeway=leeway)
        except JoseError as exc:
            claim = getattr(exc, "claim", None)
            reason = f"{exc.error}: {claim}" if claim else exc.error
            log.warning("oidc: ID token refused: %s", reason)
            raise OidcError("sso_token_invalid", f"the ID token is invalid ({reason})") from None
        # Belt and braces on what the spec makes the client's job.
        if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
            raise OidcError("sso_token_invalid", "the ID token is invalid (nonce)")
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or iat > time.time() + leeway:
            raise OidcError("sso_token_invalid", "the ID token is invalid (iat)")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 255:
            raise OidcError("sso_token_invalid", "the ID token is invalid (sub)")
        return dict(claims)

    def _decode(self, token: str, algorithms: list[str], *, refresh: bool) -> jwt.Token:
        keys = self._keys(refresh=refresh)
        try:
            return jwt.decode(token, keys, algorithms=algorithms)
        except ValueError as exc:  # joserfc: no key of the set matches the header's kid
            if "kid" in str(exc).lower() or "key" in str(exc).lower():
                raise _UnknownKey from None
            raise OidcError("sso_token_invalid", "the ID token is malformed") from None
        except JoseError as exc:
            log.warning("oidc: ID token signature refused: %s", exc.error)
            raise OidcError("sso_token_invalid", f"the ID token is invalid ({exc.error})") from None

    def userinfo(self, access_token: str) -> dict[str, Any]:
        endpoint = self.metadata().get("userinfo_endpoint")
        if not endpoint:
            return {}
        try:
            with httpx.Client(
                timeout=self._settings.oidc_http_timeout_seconds, follow_redirects=False
            ) as http:
                response = http.get(
                    endpoint,
                    headers={
                        "Authorization": f"Bearer {access_token}",
                        "Accept": "application/json",
                    },
                )
        except httpx.HTTPError:
            raise OidcError("sso_unavailable", "the identity provider is not reachable") from None
        if response.status_code != 200 or len(response.content) > _MAX_DOCUMENT_BYTES:
            raise OidcError("sso_unavailable", "the identity provider's userinfo failed")
        try:
            body = response.json()
        except ValueError:
            body = None
        return body if isinstance(body, dict) else {}

    def sign_in(
        self, *, code: str, code_verifier: str, redirect_uri: str, nonce: str
    ) -> OidcClaims:
        """The whole back channel: exchange, verify, and the claims that decide the account."""
        token = self.exchange(code=code, code_verifier=code_verifier, redirect_uri=redirect_uri)
        access = token.get("access_token") if isinstance(token.get("access_token"), str) else None
        claims = self.verify_id_token(token["id_token"], nonce=nonce, access_token=access)
        groups_claim = self._settings.oidc_groups_claim
        wants_groups = self._settings.oidc_admin_group is not None
        if access and (
            "email" not in claims
            or "email_verified" not in claims
            or (wants_groups and groups_claim not in claims)
        ):
            info = self.userinfo(access)
            if info:
                if info.get("sub") != claims["sub"]:
                    raise OidcError("sso_token_invalid", "userinfo is about someone else")
                for name in ("email", "email_verified", groups_claim):
                    if name not in claims and name in info:
                        claims[name] = info[name]
        email = claims.get("email")
        return OidcClaims(
            issuer=str(claims["iss"]),
            subject=str(claims["sub"]),
            email=email if isinstance(email, str) and email else None,
            email_verified=_verified(claims.get("email_verified")),
            groups=_groups(claims.get(groups_claim)),
        )


class _UnknownKey(Exception):
    pass
