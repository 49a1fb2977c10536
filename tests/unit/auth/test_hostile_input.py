"""Bad input is a 4xx with the error shape, never a 500 (also run on PostgreSQL)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.unit.auth.conftest import bearer, login, register

NUL = "\x00"

#: (method, path, json body or None, extra headers)
HOSTILE: list[tuple[str, str, Any, dict[str, Any]]] = [
    ("POST", "/api/auth/register", {"email": f"a{NUL}@example.com", "password": "x"}, {}),
    ("POST", "/api/auth/register", {"email": "a@example.com", "password": f"Abcdefghij{NUL}1"}, {}),
    ("POST", "/api/auth/register", ["not", "an", "object"], {}),
    ("POST", "/api/auth/register", "just a string", {}),
    ("POST", "/api/auth/login", {"email": "é" * 300 + "@x.io", "password": "x"}, {}),
    ("POST", "/api/auth/login", {"email": f"b{NUL}@example.com", "password": "x"}, {}),
    ("POST", "/api/auth/login", {"email": "b@example.com", "password": 12}, {}),
    ("POST", "/api/auth/refresh", {"refresh_token": f"{NUL}.{NUL}"}, {}),
    ("POST", "/api/auth/refresh", {"refresh_token": "é.x"}, {}),
    ("POST", "/api/auth/refresh", {"refresh_token": "a" * 5000}, {}),
    ("POST", "/internal/introspect", {"token": f"aidp_{NUL}_x"}, {}),
    ("POST", "/internal/introspect", {"token": "aidp_" + "f" * 3000 + "_x"}, {}),
    ("POST", "/internal/introspect", {"token": "e30.e30.e30"}, {}),
    ("POST", "/internal/introspect", {"token": "W10.W10.W10"}, {}),
    ("GET", "/internal/users/lookup?email=a%00@example.com", None, {}),
    ("GET", "/internal/users/%00", None, {}),
    ("GET", "/internal/users/not-a-uuid", None, {}),
    ("GET", "/api/auth/me", None, {"Authorization": "Bearer aidp_\u00e9\u00e9".encode()}),
    ("GET", "/api/auth/me", None, {"Authorization": "Basic abc"}),
    ("GET", "/api/auth/me", None, {"Authorization": "Bearer " + "a" * 10000}),
]


def check_hostile(client: TestClient) -> None:
    register(client, "owner@example.com")
    headers = bearer(login(client, "owner@example.com")["access_token"])
    cases = [
        *HOSTILE,
        ("POST", "/api/auth/tokens", {"name": f"x{NUL}"}, headers),
        ("DELETE", "/api/auth/tokens/%00", None, headers),
        ("POST", "/api/auth/logout", {"refresh_token": NUL}, headers),
    ]
    for method, path, body, extra in cases:
        if isinstance(body, str):
            r = client.request(method, path, content=body, headers=extra)
        else:
            r = client.request(method, path, json=body, headers=extra)
        assert 400 <= r.status_code < 500, (method, path, body, r.status_code, r.text)
        assert set(r.json()["error"]) == {"code", "message"}


def test_hostile_input_on_sqlite(client: TestClient) -> None:
    check_hostile(client)


def test_malformed_json_is_422(client: TestClient) -> None:
    r = client.post(
        "/api/auth/login", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid"
