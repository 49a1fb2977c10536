"""Signing keys: in Vault only, JWKS, rotation without logging anyone out."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import jwt
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text

from shared.db import Database
from shared.secrets import InMemoryVault
from tests.unit.auth.conftest import bearer, login, register


def _admin_session(client: TestClient) -> dict[str, str]:
    register(client, "admin@example.com")  # first user: admin
    return bearer(login(client, "admin@example.com")["access_token"])


def test_jwks_publishes_the_active_public_key(client: TestClient) -> None:
    headers = _admin_session(client)
    keys = client.get("/api/auth/jwks").json()["keys"]
    assert len(keys) == 1
    assert keys[0]["kty"] == "OKP" and keys[0]["crv"] == "Ed25519" and keys[0]["alg"] == "EdDSA"
    assert set(keys[0]) == {"kty", "crv", "x", "kid", "alg", "use"}  # no "d"
    token = headers["Authorization"].split()[1]
    public = jwt.PyJWK(keys[0]).key
    claims = jwt.decode(token, public, algorithms=["EdDSA"], audience="aidp-api", issuer="aidp")
    assert claims["email"] == "admin@example.com"


def test_rotation_keeps_old_tokens_valid_and_lists_both_keys(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(keyring_reload_seconds=1)
    headers = _admin_session(client)
    old_kid = client.get("/api/auth/jwks").json()["keys"][0]["kid"]
    r = client.post("/api/auth/keys/rotate", headers=headers)
    assert r.status_code == 200
    new_kid = r.json()["kid"]
    assert new_kid != old_kid
    assert r.json()["keys"] == [new_kid, old_kid]
    kids = [k["kid"] for k in client.get("/api/auth/jwks").json()["keys"]]
    assert kids == [new_kid, old_kid]
    # Until every replica can have re-read the keyring, the old key keeps signing.
    soon = login(client, "admin@example.com")["access_token"]
    assert jwt.get_unverified_header(soon)["kid"] == old_kid
    time.sleep(2.1)
    # The token signed with the old key still works; new tokens use the new key.
    assert client.get("/api/auth/me", headers=headers).status_code == 200
    fresh = login(client, "admin@example.com")["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] == new_kid


def test_rotation_is_for_admins_only(client: TestClient) -> None:
    admin = _admin_session(client)
    register(client, "user@example.com")
    user = bearer(login(client, "user@example.com")["access_token"])
    assert client.post("/api/auth/keys/rotate", headers=user).status_code == 403
    assert client.post("/api/auth/keys/rotate").status_code == 401
    api = client.post("/api/auth/tokens", json={"name": "x"}, headers=admin).json()["token"]
    assert client.post("/api/auth/keys/rotate", headers=bearer(api)).status_code == 403


def test_retired_keys_leave_the_keyring_after_their_grace(client: TestClient) -> None:
    from datetime import timedelta

    keyring = client.app.state.auth.keyring  # type: ignore[attr-defined]
    first = keyring.active().kid
    keyring.rotate()
    keyring._grace = timedelta(seconds=0)  # as if every old token had expired
    keyring.rotate()
    kids = [k["kid"] for k in keyring.jwks()["keys"]]
    assert first not in kids and len(kids) == 1
    assert keyring.public_key(first) is None


def test_a_second_replica_sees_a_rotation(
    make_client: Callable[..., TestClient], vault: InMemoryVault
) -> None:
    a = make_client(keyring_reload_seconds=1)
    b = make_client(keyring_reload_seconds=60)  # same database and vault: another replica
    assert a.get("/api/auth/jwks").json() == b.get("/api/auth/jwks").json()
    headers = _admin_session(a)
    new_kid = a.post("/api/auth/keys/rotate", headers=headers).json()["kid"]
    time.sleep(2.1)
    token = login(a, "admin@example.com")["access_token"]
    assert jwt.get_unverified_header(token)["kid"] == new_kid
    # b has never seen new_kid: it re-reads the keyring from Vault on the unknown kid.
    assert b.post("/internal/introspect", json={"token": token}).status_code == 200
    assert new_kid in [k["kid"] for k in b.get("/api/auth/jwks").json()["keys"]]


def _private_key_encodings(vault: InMemoryVault) -> list[str]:
    data = vault.get_platform_secret("auth-signing-keys")
    assert data is not None
    needles = []
    for record in json.loads(data["keys"]):
        raw = base64.b64decode(record["private_key"])
        needles += [record["private_key"], raw.hex(), base64.urlsafe_b64encode(raw).decode()[:40]]
    return needles


def dump_all_text(db: Database) -> str:
    """Every value of every table, as text."""
    chunks = []
    with db.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                chunks.append(" ".join(map(str, row)))
    return "\n".join(chunks)


def test_private_keys_are_in_vault_and_nowhere_in_the_database(
    client: TestClient, vault: InMemoryVault
) -> None:
    headers = _admin_session(client)
    client.post("/api/auth/keys/rotate", headers=headers)
    client.post("/api/auth/tokens", json={"name": "x"}, headers=headers)
    dump = dump_all_text(client.app.state.auth.db)  # type: ignore[attr-defined]
    assert "admin@example.com" in dump  # the dump really covers the tables
    for needle in _private_key_encodings(vault):
        assert needle not in dump
    assert "PRIVATE KEY" not in dump


def test_a_key_revoked_on_another_replica_is_forgotten_for_good(
    make_client: Callable[..., TestClient], vault: InMemoryVault
) -> None:
    """``forget`` (the ``SigningKeyRevoked`` push): the key stops verifying at once on the
    replica that did not revoke it, and a read of the keyring from before the revocation,
    finishing late, cannot bring it back."""
    a = make_client(keyring_reload_seconds=3600)
    b = make_client(keyring_reload_seconds=3600)  # same database and vault: another replica
    headers = _admin_session(a)
    keyring = b.app.state.auth.keyring  # type: ignore[attr-defined]
    old = jwt.get_unverified_header(headers["Authorization"].split()[1])["kid"]
    new = a.post("/api/auth/keys/rotate", headers=headers).json()["kid"]
    stale = keyring._read()  # what Vault holds before the revocation
    keyring._install(*stale)
    assert a.post(f"/api/auth/admin/keys/{old}/revoke", headers=headers).status_code == 200
    assert keyring.public_key(old) is not None  # b has not re-read Vault (hourly)
    keyring.forget(old)
    assert keyring.public_key(old) is None
    assert old not in [k["kid"] for k in b.get("/api/auth/jwks").json()["keys"]]
    keyring._install(*stale)  # a read started before the push ends after it
    assert keyring.public_key(old) is None and keyring.public_key(new) is not None
    assert b.get("/api/auth/me", headers=headers).status_code == 401


def test_forgetting_a_key_while_vault_is_unreachable_still_forgets_it(
    make_client: Callable[..., TestClient], vault: InMemoryVault
) -> None:
    client = make_client(keyring_reload_seconds=3600)
    headers = _admin_session(client)
    keyring = client.app.state.auth.keyring  # type: ignore[attr-defined]
    kid = keyring.active().kid

    def unreachable(name: str) -> None:
        raise ConnectionError("vault is down")

    keyring._store.get_platform_secret = unreachable
    keyring.forget(kid)  # no error: the cached keyring minus the key
    assert keyring.public_key(kid) is None
    assert client.get("/api/auth/me", headers=headers).status_code == 401
