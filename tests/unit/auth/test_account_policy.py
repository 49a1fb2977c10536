"""Issue 13, account policy: registration modes and invitations, who becomes admin,
look-alike emails, weak passwords, the lockout DoS, registration rate limits and the
refresh token cookie."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from services.auth.settings import AuthSettings
from tests.unit.auth.conftest import PASSWORD, bearer, login, register

LOOKALIKES = [
    "ad\u200bmin@example.com",  # zero-width space
    "admin\u200d@example.com",  # zero-width joiner
    "\u202emoc.elpmaxe@nimda",  # right-to-left override
    "admin\u2066@example.com",  # bidi isolate
    "\u0430dmin@example.com",  # Cyrillic a + Latin
    "admin@ex\u0430mple.com",  # Cyrillic a in the domain
    "\u03bfpen@example.com",  # Greek omicron + Latin
]


@pytest.mark.parametrize("email", LOOKALIKES)
def test_lookalike_emails_are_refused_with_a_clear_422(client: TestClient, email: str) -> None:
    r = client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert message.startswith("email:")
    assert "invisible" in message or "mixes scripts" in message


def test_emails_are_normalised_nfkc_and_idna(client: TestClient) -> None:
    assert register(client, "\uff41nna@B\u00fccher.Example")["email"] == (
        "anna@xn--bcher-kva.example"
    )
    r = client.post(
        "/api/auth/register", json={"email": "anna@xn--bcher-kva.example", "password": PASSWORD}
    )
    assert r.status_code == 409  # the same mailbox, spelled the other way
    assert register(client, "иван@пример.рф")["email"] == "иван@xn--e1afmkfd.xn--p1ai"


@pytest.mark.parametrize("password", ["Password1!", "Summer2024!", "Qwerty123456!", "iloveyou2024"])
def test_weak_passwords_are_refused_with_a_helpful_message(
    client: TestClient, password: str
) -> None:
    r = client.post("/api/auth/register", json={"email": "w@example.com", "password": password})
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert message.startswith("password: ")
    assert "too common" in message or "too easy to guess" in message
    assert "passphrase" in message


def test_registration_default_follows_the_bind_host() -> None:
    assert AuthSettings(public_bind_host="127.0.0.1").registration_mode() == "open"
    assert AuthSettings(public_bind_host="::1").registration_mode() == "open"
    assert AuthSettings(public_bind_host="0.0.0.0").registration_mode() == "invite"
    assert AuthSettings(public_bind_host="10.0.0.5").registration_mode() == "invite"
    assert AuthSettings(host="0.0.0.0").registration_mode() == "invite"
    assert AuthSettings(host="0.0.0.0", registration="open").registration_mode() == "open"


def test_closed_registration_is_403(make_client: Callable[..., TestClient]) -> None:
    client = make_client(registration="closed")
    r = client.post("/api/auth/register", json={"email": "a@example.com", "password": PASSWORD})
    assert r.status_code == 403
    assert "closed" in r.json()["error"]["message"]


def test_invite_mode_needs_a_single_use_code(make_client: Callable[..., TestClient]) -> None:
    client = make_client(public_bind_host="0.0.0.0", admin_emails="boss@example.com")
    # not on loopback: invite mode by default, and no first-come admin
    r = client.post("/api/auth/register", json={"email": "a@example.com", "password": PASSWORD})
    assert r.status_code == 403 and "invitation" in r.json()["error"]["message"]

    # the admin named in AIDP_ADMIN_EMAILS bootstraps the platform without a code
    assert register(client, "boss@example.com")["is_admin"] is True
    admin = bearer(login(client, "boss@example.com")["access_token"])

    r = client.post("/api/auth/admin/invitations", json={}, headers=admin)
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    body = {"email": "new@example.com", "password": PASSWORD, "invitation": code}
    r = client.post("/api/auth/register", json=body)
    assert r.status_code == 201 and r.json()["is_admin"] is False
    body = {"email": "other@example.com", "password": PASSWORD, "invitation": code}
    r = client.post("/api/auth/register", json=body)
    assert r.status_code == 403 and "already used" in r.json()["error"]["message"]

    r = client.post(
        "/api/auth/admin/invitations", json={"email": "only@example.com"}, headers=admin
    )
    named = r.json()["code"]
    body = {"email": "thief@example.com", "password": PASSWORD, "invitation": named}
    assert client.post("/api/auth/register", json=body).status_code == 403
    body = {"email": "only@example.com", "password": PASSWORD, "invitation": named}
    assert client.post("/api/auth/register", json=body).status_code == 201
    body = {"email": "x@example.com", "password": PASSWORD, "invitation": "forged.code"}
    assert client.post("/api/auth/register", json=body).status_code == 403


def test_no_first_come_admin_off_loopback(make_client: Callable[..., TestClient]) -> None:
    client = make_client(public_bind_host="0.0.0.0", registration="open")
    assert register(client, "first@example.com")["is_admin"] is False
    loopback = make_client(registration="open")
    assert register(loopback, "second@example.com")["is_admin"] is False  # not the first


def test_right_password_from_a_known_device_passes_while_attacked(client: TestClient) -> None:
    register(client, "owner@example.com")
    first = client.post(
        "/api/auth/login", json={"email": "owner@example.com", "password": PASSWORD}
    )
    assert first.status_code == 200
    device = first.cookies.get("aidp_device")
    assert device
    client.cookies.clear()
    # an attacker hammers the account from many addresses
    for i in range(12):
        r = client.post(
            "/api/auth/login",
            json={"email": "owner@example.com", "password": "Wrong-password-1"},
            headers={"X-Forwarded-For": f"203.0.113.{i}"},
        )
        assert r.status_code in (401, 429)
    # from an unknown device even the owner waits (a delay, not a lockout)...
    r = client.post(
        "/api/auth/login",
        json={"email": "owner@example.com", "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.7"},
    )
    assert r.status_code == 429 and int(r.headers["Retry-After"]) <= 900
    # ...but the owner's own browser (device cookie) gets straight in
    r = client.post(
        "/api/auth/login",
        json={"email": "owner@example.com", "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.7"},
        cookies={"aidp_device": device},
    )
    assert r.status_code == 200, r.text
    # and a device cookie does not let a wrong password through
    r = client.post(
        "/api/auth/login",
        json={"email": "owner@example.com", "password": "Wrong-password-1"},
        headers={"X-Forwarded-For": "198.51.100.8"},
        cookies={"aidp_device": device},
    )
    assert r.status_code == 401


def test_register_is_rate_limited_per_address(make_client: Callable[..., TestClient]) -> None:
    client = make_client(register_limit_per_address=3)
    codes = [
        client.post(
            "/api/auth/register",
            json={"email": f"r{i}@example.com", "password": PASSWORD},
            headers={"X-Forwarded-For": "192.0.2.1"},
        ).status_code
        for i in range(4)
    ]
    assert codes == [201, 201, 201, 429]
    r = client.post(
        "/api/auth/register",
        json={"email": "r9@example.com", "password": PASSWORD},
        headers={"X-Forwarded-For": "192.0.2.2"},
    )
    assert r.status_code == 201


def test_browser_login_keeps_the_refresh_token_in_an_httponly_cookie(client: TestClient) -> None:
    register(client, "browser@example.com")
    r = client.post("/api/auth/login", json={"email": "browser@example.com", "password": PASSWORD})
    assert r.status_code == 200
    assert r.json()["refresh_token"] is None  # not readable by page scripts
    cookies = [v for k, v in r.headers.multi_items() if k == "set-cookie"]
    refresh = next(c for c in cookies if c.startswith("aidp_refresh="))
    lowered = refresh.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/api/auth" in lowered
    assert "secure" not in lowered  # plain HTTP here
    # refresh from the cookie alone, answered with a rotated cookie
    r2 = client.post("/api/auth/refresh")
    assert r2.status_code == 200 and r2.json()["refresh_token"] is None
    assert client.get("/api/auth/me", headers=bearer(r2.json()["access_token"])).status_code == 200
    # logout clears the cookie and revokes its family
    spent = client.cookies.get("aidp_refresh")
    r3 = client.post("/api/auth/logout", headers=bearer(r2.json()["access_token"]))
    assert r3.status_code == 204
    assert client.post("/api/auth/refresh", json={"refresh_token": spent}).status_code == 401
    client.cookies.clear()
    assert client.post("/api/auth/refresh").status_code == 401


def test_cookie_is_secure_behind_tls(client: TestClient) -> None:
    register(client, "tls@example.com")
    r = client.post(
        "/api/auth/login",
        json={"email": "tls@example.com", "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https"},
    )
    cookies = [v.lower() for k, v in r.headers.multi_items() if k == "set-cookie"]
    assert all("; secure" in c for c in cookies) and len(cookies) == 2


def test_cli_clients_ask_for_the_refresh_token_in_the_body(client: TestClient) -> None:
    register(client, "cli@example.com")
    tokens = login(client, "cli@example.com")
    assert tokens["refresh_token"]
    r = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200 and r.json()["refresh_token"]
