"""Bearer tokens: JWTs verified locally against the JWKS, API tokens introspected."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.unit.gateway.conftest import Harness


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256(claims: dict[str, object], secret: bytes, *, kid: str) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = _b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(sig)}"


async def _status(harness: Harness, token: str | None) -> int:
    headers = _bearer(token) if token is not None else {}
    return (await harness.client.get("/api/projects", headers=headers)).status_code


async def test_valid_token_and_missing_token(harness: Harness) -> None:
    user_id, email = harness.auth.user()
    assert await _status(harness, harness.auth.token(user_id, email)) == 200
    r = await harness.client.get("/api/projects")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    r = await harness.client.get("/api/projects", headers={"Authorization": "Basic eDp5"})
    assert r.status_code == 401


async def test_token_attacks_are_401(harness: Harness) -> None:
    auth = harness.auth
    user_id, email = auth.user()
    now = int(time.time())
    claims = {"iss": "aidp", "aud": "aidp-api", "sub": str(user_id), "exp": now + 600}

    none_alg = jwt.encode(
        claims,
        key=None,  # type: ignore[arg-type]
        algorithm="none",
        headers={"kid": auth.active},
    )
    other_key = jwt.encode(
        claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": auth.active}
    )
    # HS256 keyed with the public JWK's bytes: the classic algorithm confusion
    jwk = (await harness.client.get("/api/auth/jwks")).json()["keys"][0]
    hs = _hs256(claims, base64.urlsafe_b64decode(jwk["x"] + "=="), kid=auth.active)
    expired = auth.token(user_id, email, exp=now - 10)
    wrong_aud = auth.token(user_id, email, aud="someone-else")
    wrong_iss = auth.token(user_id, email, iss="evil")
    no_sub = jwt.encode(
        {k: v for k, v in claims.items() if k != "sub"},
        auth.keys[auth.active],
        algorithm="EdDSA",
        headers={"kid": auth.active},
    )
    head, payload, sig = auth.token(user_id, email).split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["sub"] = str(uuid.uuid4())
    tampered = ".".join(
        [head, base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode(), sig]
    )
    key_gone = Ed25519PrivateKey.generate()
    unknown_kid = jwt.encode(claims, key_gone, algorithm="EdDSA", headers={"kid": "nope"})

    for token in (
        none_alg,
        other_key,
        hs,
        expired,
        wrong_aud,
        wrong_iss,
        no_sub,
        tampered,
        unknown_kid,
        "garbage",
        "",
    ):
        assert await _status(harness, token) == 401, token


async def test_rotated_key_is_fetched_on_unknown_kid(harness: Harness) -> None:
    user_id, email = harness.auth.user()
    assert await _status(harness, harness.auth.token(user_id, email)) == 200
    fetches = harness.auth.jwks_fetches
    harness.auth.rotate()
    assert await _status(harness, harness.auth.token(user_id, email)) == 200
    assert harness.auth.jwks_fetches == fetches + 1


async def test_api_token_is_introspected_and_revocable(harness: Harness) -> None:
    harness.app.state.gateway.verifier.api_token_cache_seconds = 0
    user_id, _ = harness.auth.user()
    token = harness.auth.api_token(user_id)
    assert await _status(harness, token) == 200
    del harness.auth.api_tokens[token]
    assert await _status(harness, token) == 401
    assert await _status(harness, "aidp_unknown") == 401


async def test_auth_unreachable_is_503(harness: Harness) -> None:
    harness.app.state.gateway.downstream.auth.url = "http://127.0.0.1:9"
    harness.app.state.gateway.downstream.auth._client = None
    harness.app.state.gateway.verifier._keys.clear()
    user_id, email = harness.auth.user()
    assert await _status(harness, harness.auth.token(user_id, email)) == 503
