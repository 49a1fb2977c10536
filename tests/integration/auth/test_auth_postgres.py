"""The auth service against real PostgreSQL and OpenBao, with several replicas."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from tests.unit.auth.conftest import PASSWORD, bearer, login, register
from tests.unit.auth.test_keys import dump_all_text

pytestmark = pytest.mark.integration

# FastAPI builds a TypeAdapter per request inside warnings.catch_warnings(), which is not
# thread-safe; with the suite's warnings-as-errors, concurrent requests can turn pydantic's
# UnsupportedFieldAttributeWarning (which FastAPI means to silence) into a 500.
_THREADS_OK = pytest.mark.filterwarnings(
    "ignore::pydantic.warnings.UnsupportedFieldAttributeWarning"
)


def test_full_flow_on_postgres_and_openbao(make_pg_client: Callable[..., TestClient]) -> None:
    client = make_pg_client()
    user = register(client, "Pat@Example.com")
    assert user["is_admin"] is True
    tokens = login(client, "pat@example.com")
    headers = bearer(tokens["access_token"])
    assert client.get("/api/auth/me", headers=headers).json() == user

    rotated = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200
    for spent_or_revoked in (tokens["refresh_token"], rotated.json()["refresh_token"]):
        r = client.post("/api/auth/refresh", json={"refresh_token": spent_or_revoked})
        assert r.status_code == 401
    # The replay also revoked the access tokens issued so far.
    assert client.get("/api/auth/me", headers=headers).status_code == 401
    headers = bearer(login(client, "pat@example.com")["access_token"])

    api = client.post("/api/auth/tokens", json={"name": "ci"}, headers=headers).json()
    r = client.post("/internal/introspect", json={"token": api["token"]})
    assert r.status_code == 200 and r.json()["user_id"] == user["id"]
    assert client.delete(f"/api/auth/tokens/{api['id']}", headers=headers).status_code == 204
    assert client.post("/internal/introspect", json={"token": api["token"]}).status_code == 401

    assert client.post("/api/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/auth/me", headers=headers).status_code == 401
    assert client.get("/readyz").status_code == 200


def test_keyring_lives_in_openbao_and_never_in_postgres(
    make_pg_client: Callable[..., TestClient], vault_client: Any
) -> None:
    client = make_pg_client()
    register(client, "admin@example.com")
    headers = bearer(login(client, "admin@example.com")["access_token"])
    assert client.post("/api/auth/keys/rotate", headers=headers).status_code == 200
    client.post("/api/auth/tokens", json={"name": "x"}, headers=headers)

    stored = vault_client.get_platform_secret("auth-signing-keys")
    records = json.loads(stored["keys"])
    assert len(records) == 2
    dump = dump_all_text(client.app.state.auth.db)  # type: ignore[attr-defined]
    assert "admin@example.com" in dump and "$argon2id$" in dump
    for record in records:
        raw = base64.b64decode(record["private_key"])
        for needle in (record["private_key"], raw.hex(), base64.urlsafe_b64encode(raw).decode()):
            assert needle not in dump
    assert "PRIVATE KEY" not in dump


def test_rate_limit_is_shared_by_two_replicas(make_pg_client: Callable[..., TestClient]) -> None:
    a, b = make_pg_client(), make_pg_client()
    register(a, "target@example.com")
    codes = []
    for i in range(6):
        replica = (a, b)[i % 2]
        r = replica.post(
            "/api/auth/login",
            json={"email": "target@example.com", "password": "Wrong-password-1"},
            headers={"X-Forwarded-For": f"10.9.0.{i}"},
        )
        codes.append(r.status_code)
    assert codes == [401] * 5 + [429]
    assert int(r.headers["Retry-After"]) >= 1
    # Per address, across replicas and emails.
    codes = []
    for i in range(11):
        replica = (a, b)[i % 2]
        r = replica.post(
            "/api/auth/login",
            json={"email": f"spray{i}@example.com", "password": "Wrong-password-1"},
            headers={"X-Forwarded-For": "10.9.9.9"},
        )
        codes.append(r.status_code)
    assert codes == [401] * 10 + [429]


@_THREADS_OK
def test_concurrent_refresh_of_one_token_lets_exactly_one_through(
    make_pg_client: Callable[..., TestClient],
) -> None:
    a, b = make_pg_client(), make_pg_client()
    register(a, "race@example.com")
    token = login(a, "race@example.com")["refresh_token"]
    results: list[int] = []
    barrier = threading.Barrier(4)

    def spend(client: TestClient) -> None:
        barrier.wait()
        r = client.post("/api/auth/refresh", json={"refresh_token": token})
        results.append(r.status_code)

    threads = [threading.Thread(target=spend, args=((a, b)[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 401, 401, 401]


def test_rotation_on_one_replica_is_honoured_by_another(
    make_pg_client: Callable[..., TestClient],
) -> None:
    a = make_pg_client(keyring_reload_seconds=1)
    b = make_pg_client(keyring_reload_seconds=1)
    register(a, "boss@example.com")
    old = login(a, "boss@example.com")["access_token"]
    old_kid = jwt.get_unverified_header(old)["kid"]
    new_kid = a.post("/api/auth/keys/rotate", headers=bearer(old)).json()["kid"]
    time.sleep(2.1)
    kids_b = [k["kid"] for k in b.get("/api/auth/jwks").json()["keys"]]
    assert kids_b == [new_kid, old_kid]
    fresh = login(b, "boss@example.com", PASSWORD)["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] == new_kid
    for replica in (a, b):
        for token in (old, fresh):
            assert replica.post("/internal/introspect", json={"token": token}).status_code == 200


@_THREADS_OK
def test_first_admin_is_unique_under_concurrent_registration(
    make_pg_client: Callable[..., TestClient],
) -> None:
    a, b = make_pg_client(), make_pg_client()
    out: list[dict[str, Any]] = []
    barrier = threading.Barrier(4)

    def reg(client: TestClient, i: int) -> None:
        barrier.wait()
        r = client.post(
            "/api/auth/register", json={"email": f"u{i}@example.com", "password": PASSWORD}
        )
        out.append(r.json())

    threads = [threading.Thread(target=reg, args=((a, b)[i % 2], i)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(u["is_admin"] for u in out) == [False, False, False, True]


def test_hostile_input_on_postgres(make_pg_client: Callable[..., TestClient]) -> None:
    from tests.unit.auth.test_hostile_input import check_hostile

    check_hostile(make_pg_client())


def test_cli_rotation_with_vault_from_settings(
    postgres_url: str, bao_server: tuple[str, str], tmp_path: Any
) -> None:
    """The real wiring: Vault reached through AIDP_VAULT_ADDR/TOKEN, then the CLI rotates."""
    from services.auth.__main__ import rotate_key
    from services.auth.main import create_app
    from services.auth.settings import AuthSettings

    addr, token = bao_server
    settings = AuthSettings(
        data_dir=tmp_path,
        database_url=postgres_url,
        vault_addr=addr,
        vault_token=token,
        keyring_reload_seconds=1,
    )
    with TestClient(create_app(settings)) as client:
        before = [k["kid"] for k in client.get("/api/auth/jwks").json()["keys"]]
        new_kid = rotate_key(settings)
        time.sleep(1.1)
        after = [k["kid"] for k in client.get("/api/auth/jwks").json()["keys"]]
    assert after[0] == new_kid
    assert before[0] in after
