"""Register, login, refresh, logout, me and password change through the HTTP API."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.unit.auth.conftest import PASSWORD, bearer, login, register


def test_register_returns_the_user_without_secrets(client: TestClient) -> None:
    body = register(client, "  Alice@Example.COM ")
    assert set(body) == {"id", "email", "is_admin", "created_at"}
    assert body["email"] == "alice@example.com"


def test_first_user_is_admin_and_later_ones_are_not(client: TestClient) -> None:
    assert register(client, "first@example.com")["is_admin"] is True
    assert register(client, "second@example.com")["is_admin"] is False


def test_admin_emails_setting_decides_admins(make_client: Callable[..., TestClient]) -> None:
    client = make_client(admin_emails="Boss@example.com, other@example.com")
    assert register(client, "first@example.com")["is_admin"] is False
    assert register(client, "boss@example.com")["is_admin"] is True


def test_duplicate_email_is_409_case_insensitively(client: TestClient) -> None:
    register(client, "bob@example.com")
    r = client.post("/api/auth/register", json={"email": "BOB@example.com", "password": PASSWORD})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "conflict"


def test_invalid_email_and_unknown_fields_are_422_naming_the_field(client: TestClient) -> None:
    r = client.post("/api/auth/register", json={"email": "nope", "password": PASSWORD})
    assert r.status_code == 422
    assert r.json()["error"]["message"].startswith("email:")
    r = client.post(
        "/api/auth/register", json={"email": "a@example.com", "password": PASSWORD, "admin": True}
    )
    assert r.status_code == 422
    assert "admin: extra inputs are not permitted" in r.json()["error"]["message"]
    r = client.post("/api/auth/login", json={"email": "a@example.com"})
    assert r.status_code == 422
    assert "password: field required" in r.json()["error"]["message"]


def test_login_me_and_token_shape(client: TestClient) -> None:
    user = register(client, "carol@example.com")
    tokens = login(client, "CAROL@example.com")
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    me = client.get("/api/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json() == user


def test_wrong_password_and_unknown_user_answer_alike(client: TestClient) -> None:
    register(client, "dave@example.com")
    wrong = client.post("/api/auth/login", json={"email": "dave@example.com", "password": "x" * 12})
    unknown = client.post(
        "/api/auth/login", json={"email": "nobody@example.com", "password": "x" * 12}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_me_without_or_with_garbage_token_is_401(client: TestClient) -> None:
    assert client.get("/api/auth/me").status_code == 401
    r = client.get("/api/auth/me", headers=bearer("garbage"))
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthenticated"


def test_refresh_rotates_and_reuse_revokes_the_family(client: TestClient) -> None:
    register(client, "erin@example.com")
    first = login(client, "erin@example.com")
    second = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert client.get("/api/auth/me", headers=bearer(rotated["access_token"])).status_code == 200

    replay = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    assert "reused" in replay.json()["error"]["message"]
    # The whole family is gone: the token handed out by the legitimate rotation too,
    # and the access tokens issued so far.
    again = client.post("/api/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert again.status_code == 401
    assert client.get("/api/auth/me", headers=bearer(rotated["access_token"])).status_code == 401


def test_reuse_does_not_touch_other_sessions(client: TestClient) -> None:
    register(client, "frank@example.com")
    laptop = login(client, "frank@example.com")
    phone = login(client, "frank@example.com")
    client.post("/api/auth/refresh", json={"refresh_token": laptop["refresh_token"]})
    client.post("/api/auth/refresh", json={"refresh_token": laptop["refresh_token"]})
    r = client.post("/api/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    assert r.status_code == 200


def test_garbage_refresh_tokens_are_401(client: TestClient) -> None:
    for token in ["x", "abc.def", ".", "a" * 24 + "."]:
        r = client.post("/api/auth/refresh", json={"refresh_token": token})
        assert r.status_code == 401, token


def test_logout_revokes_the_family_and_access_tokens(client: TestClient) -> None:
    register(client, "gina@example.com")
    tokens = login(client, "gina@example.com")
    r = client.post(
        "/api/auth/logout",
        json={"refresh_token": tokens["refresh_token"]},
        headers=bearer(tokens["access_token"]),
    )
    assert r.status_code == 204
    assert client.get("/api/auth/me", headers=bearer(tokens["access_token"])).status_code == 401
    r = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401
    # A new login works again at once.
    fresh = login(client, "gina@example.com")
    assert client.get("/api/auth/me", headers=bearer(fresh["access_token"])).status_code == 200


def test_logout_without_body_and_without_token(client: TestClient) -> None:
    register(client, "hank@example.com")
    tokens = login(client, "hank@example.com")
    assert client.post("/api/auth/logout").status_code == 401
    r = client.post("/api/auth/logout", headers=bearer(tokens["access_token"]))
    assert r.status_code == 204


def test_logout_ignores_another_users_refresh_token(client: TestClient) -> None:
    register(client, "ivy@example.com")
    register(client, "jack@example.com")
    ivy = login(client, "ivy@example.com")
    jack = login(client, "jack@example.com")
    client.post(
        "/api/auth/logout",
        json={"refresh_token": ivy["refresh_token"]},
        headers=bearer(jack["access_token"]),
    )
    r = client.post("/api/auth/refresh", json={"refresh_token": ivy["refresh_token"]})
    assert r.status_code == 200


def test_password_change_revokes_everything(client: TestClient) -> None:
    register(client, "kate@example.com")
    tokens = login(client, "kate@example.com")
    headers = bearer(tokens["access_token"])
    api = client.post("/api/auth/tokens", json={"name": "ci"}, headers=headers).json()["token"]

    r = client.post(
        "/api/auth/password",
        json={"current_password": "Wrong-password-1", "new_password": "Another-good-pass"},
        headers=headers,
    )
    assert r.status_code == 403
    assert "current_password" in r.json()["error"]["message"]

    r = client.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": "Another-good-pass"},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"revoked_sessions": 1, "revoked_api_tokens": 1}
    assert client.get("/api/auth/me", headers=headers).status_code == 401
    assert client.get("/api/auth/me", headers=bearer(api)).status_code == 401
    r = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401
    r = client.post("/api/auth/login", json={"email": "kate@example.com", "password": PASSWORD})
    assert r.status_code == 401
    login(client, "kate@example.com", "Another-good-pass")


def test_password_change_applies_the_policy(client: TestClient) -> None:
    register(client, "liam@example.com")
    headers = bearer(login(client, "liam@example.com")["access_token"])
    r = client.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=headers,
    )
    assert r.status_code == 422
    assert r.json()["error"]["message"].startswith("new_password:")


def test_unknown_route_uses_the_error_shape(client: TestClient) -> None:
    r = client.get("/api/auth/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
