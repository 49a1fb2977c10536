"""Forged and mis-addressed access tokens are refused (401) by /me and by introspection."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient

from services.auth.main import create_app
from shared.secrets import InMemoryVault
from tests.support.service_auth import as_service
from tests.unit.auth.conftest import bearer, login, make_settings, register


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    head, body, sig = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(head))),
        json.loads(base64.urlsafe_b64decode(pad(body))),
        sig,
    )


def _unsigned(header: dict[str, Any], claims: dict[str, Any], sig: str = "") -> str:
    return ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), sig])


def _hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode())])
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app for the module: the attacks only read, so they can share it."""
    vault = InMemoryVault()
    settings = make_settings(tmp_path_factory.mktemp("attacks"))
    with TestClient(create_app(settings, vault=(vault, vault))) as client:
        client.auth = as_service("auth")
        register(client, "victim@example.com")
        yield client


@pytest.fixture(scope="module")
def genuine(client: TestClient) -> tuple[str, dict[str, Any], dict[str, Any]]:
    token = login(client, "victim@example.com")["access_token"]
    header, claims, _ = _segments(token)
    return token, header, claims


def _foreign_key_token(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers=header)


def _public_key_bytes(client: TestClient, kid: str) -> list[bytes]:
    """The service's public key in every encoding an attacker might try as an HMAC secret."""
    jwk = next(k for k in client.get("/api/auth/jwks").json()["keys"] if k["kid"] == kid)
    pub = jwt.PyJWK(jwk).key
    return [
        jwk["x"].encode(),
        json.dumps(jwk).encode(),
        pub.public_bytes(Encoding.Raw, PublicFormat.Raw),
        pub.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
    ]


ATTACKS: dict[str, Callable[[TestClient, dict[str, Any], dict[str, Any], str], list[str]]] = {
    "alg_none": lambda c, h, cl, t: [
        _unsigned({**h, "alg": "none"}, cl),
        _unsigned({**h, "alg": "None"}, cl),
        _unsigned({"alg": "none", "typ": "JWT"}, cl),
    ],
    "other_ed25519_key": lambda c, h, cl, t: [_foreign_key_token(h, cl)],
    "hs256_with_public_key": lambda c, h, cl, t: [
        _hs256({**h, "alg": "HS256"}, cl, secret) for secret in _public_key_bytes(c, h["kid"])
    ],
    "tampered_payload": lambda c, h, cl, t: [
        ".".join(
            [t.split(".")[0], _b64(json.dumps({**cl, "adm": True}).encode()), t.split(".")[2]]
        ),
        ".".join(
            [
                t.split(".")[0],
                _b64(json.dumps({**cl, "sub": str(uuid.uuid4())}).encode()),
                t.split(".")[2],
            ]
        ),
    ],
    "truncated_signature": lambda c, h, cl, t: [t[:-4], t + "AAAA", t.rsplit(".", 1)[0] + "."],
    "unknown_kid": lambda c, h, cl, t: [_unsigned({**h, "kid": "nope"}, cl, t.split(".")[2])],
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_forged_tokens_are_401(
    client: TestClient, genuine: tuple[str, dict[str, Any], dict[str, Any]], attack: str
) -> None:
    token, header, claims = genuine
    for forged in ATTACKS[attack](client, header, claims, token):
        assert forged != token
        assert client.get("/api/auth/me", headers=bearer(forged)).status_code == 401, forged
        r = client.post("/internal/introspect", json={"token": forged})
        assert r.status_code == 401, forged
        assert r.json()["error"]["code"] == "unauthenticated"
    # The genuine token still works: the attacks failed for the right reason.
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 200


def _real_key(client: TestClient) -> tuple[str, Ed25519PrivateKey]:
    key = client.app.state.auth.keyring.active()  # type: ignore[attr-defined]
    return key.kid, key.private_key


@pytest.mark.parametrize(
    ("change", "drop"),
    [
        ({"exp": int(time.time()) - 60, "iat": int(time.time()) - 960}, None),
        ({"aud": "someone-else"}, None),
        ({"iss": "evil"}, None),
        ({}, "sub"),
        ({}, "exp"),
        ({}, "aud"),
        ({}, "iss"),
        ({"sub": "not-a-uuid"}, None),
        ({"adm": "yes"}, None),
        ({"tv": 999}, None),  # a token version the user never had (revoked)
    ],
)
def test_claims_checked_with_the_real_key(
    client: TestClient,
    genuine: tuple[str, dict[str, Any], dict[str, Any]],
    change: dict[str, Any],
    drop: str | None,
) -> None:
    """Signed with the service's own key, so only the claim check can refuse it."""
    _, header, claims = genuine
    kid, private_key = _real_key(client)
    forged_claims = {**claims, **change}
    if drop:
        forged_claims.pop(drop)
    forged = jwt.encode(forged_claims, private_key, algorithm="EdDSA", headers={"kid": kid})
    assert client.get("/api/auth/me", headers=bearer(forged)).status_code == 401
    assert client.post("/internal/introspect", json={"token": forged}).status_code == 401
    # Control: the same path with unchanged claims is accepted.
    control = jwt.encode(claims, private_key, algorithm="EdDSA", headers={"kid": kid})
    assert client.get("/api/auth/me", headers=bearer(control)).status_code == 200


def test_expired_message_says_expired(
    client: TestClient, genuine: tuple[str, dict[str, Any], dict[str, Any]]
) -> None:
    _, _, claims = genuine
    kid, private_key = _real_key(client)
    now = int(time.time())
    forged = jwt.encode(
        {**claims, "iat": now - 1000, "exp": now - 100},
        private_key,
        algorithm="EdDSA",
        headers={"kid": kid},
    )
    r = client.get("/api/auth/me", headers=bearer(forged))
    assert r.status_code == 401
    assert "expired" in r.json()["error"]["message"]


def test_access_token_claims_and_header(
    genuine: tuple[str, dict[str, Any], dict[str, Any]],
) -> None:
    _, header, claims = genuine
    assert header["alg"] == "EdDSA" and header["kid"]
    assert claims["iss"] == "aidp" and claims["aud"] == "aidp-api"
    assert claims["email"] == "victim@example.com" and claims["adm"] is True
    assert claims["exp"] - claims["iat"] == 900
    assert uuid.UUID(claims["sub"]) and claims["jti"]
