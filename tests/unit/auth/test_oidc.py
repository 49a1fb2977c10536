"""Single sign-on (issue 18 item 3) against a real OpenID Connect provider
(``oidc-provider-mock``, tests/support/oidc_server.py): the auth app on SQLite, the
provider over HTTP on 127.0.0.1. Every refusal leaves no session and no account behind."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from services.auth.settings import AuthSettings
from shared.secrets import InMemoryVault
from tests.support.oidc_server import OidcServer, oidc_server
from tests.unit.auth.conftest import PASSWORD, bearer, login, register

CALLBACK = "http://testserver/api/auth/oidc/callback"


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcServer]:
    with oidc_server() as server:
        yield server


@pytest.fixture
def sso(make_client: Callable[..., TestClient], idp: OidcServer) -> Callable[..., TestClient]:
    """An auth app with SSO on (the provider above), settings overrides allowed."""

    def start(**overrides: Any) -> TestClient:
        values: dict[str, Any] = {
            "oidc_issuer": idp.url,
            "oidc_client_id": "aidp-test",
            "oidc_client_secret": "client-secret-for-tests",
            "oidc_allow_insecure_issuer": True,
            "oidc_name": "Example IdP",
        }
        values.update(overrides)
        return make_client(**values)

    return start


def person(idp: OidcServer, *, verified: bool = True, **claims: Any) -> tuple[str, str]:
    """A new user at the provider: (sub, email)."""
    sub = f"sub-{uuid.uuid4().hex[:10]}"
    email = claims.pop("email", f"{sub}@example.com")
    idp.set_user(sub, email=email, email_verified=verified, **claims)
    return sub, email


def begin(client: TestClient, **params: Any) -> str:
    r = client.get("/api/auth/oidc/login", params=params, follow_redirects=False)
    assert r.status_code == 302, r.text
    assert r.headers["cache-control"] == "no-store"
    return str(r.headers["location"])


def sign_in(client: TestClient, idp: OidcServer, sub: str, **params: Any) -> Any:
    """The whole browser round trip; returns the callback's answer."""
    back = idp.approve(begin(client, **params), sub)
    assert back.startswith(CALLBACK)
    return client.get(back, follow_redirects=False)


def error_code(response: Any) -> str:
    assert response.status_code == 303, response.text
    location = str(response.headers["location"])
    assert location.startswith("/#/sso-error?"), location
    return parse_qs(location.split("?", 1)[1])["code"][0]


def session_token(client: TestClient) -> str:
    """Trade the refresh cookie the callback set for an access token (what the SPA does)."""
    r = client.post("/api/auth/refresh")
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def me(client: TestClient, token: str) -> dict[str, Any]:
    r = client.get("/api/auth/me", headers=bearer(token))
    assert r.status_code == 200, r.text
    return dict(r.json())


def account_exists(client: TestClient, email: str) -> bool:
    return client.get("/internal/users/lookup", params={"email": email}).status_code == 200


# -- configuration -----------------------------------------------------------------------


def test_config_says_whether_sso_is_on(make_client: Callable[..., TestClient], sso: Any) -> None:
    off = make_client()
    assert off.get("/api/auth/oidc/config").json() == {
        "enabled": False,
        "label": None,
        "login_url": None,
    }
    assert off.get("/api/auth/oidc/login", follow_redirects=False).status_code == 404
    r = off.post("/api/auth/oidc/token", json={"code": "x", "code_verifier": "v" * 43})
    assert r.status_code == 404
    on = sso()
    assert on.get("/api/auth/oidc/config").json() == {
        "enabled": True,
        "label": "Example IdP",
        "login_url": "/api/auth/oidc/login",
    }


def test_provider_urls_must_be_https_except_loopback_in_development() -> None:
    ok = AuthSettings(oidc_issuer="https://idp.example.com/realms/x", oidc_client_id="c")
    assert ok.oidc_enabled()
    bad: list[dict[str, Any]] = [
        {"oidc_issuer": "http://idp.example.com", "oidc_client_id": "c"},
        {"oidc_issuer": "http://127.0.0.1:8080", "oidc_client_id": "c"},  # no opt-in
        {
            "oidc_issuer": "http://10.1.2.3",
            "oidc_client_id": "c",
            "oidc_allow_insecure_issuer": True,
        },
        {"oidc_issuer": "https://user:pw@idp.example.com", "oidc_client_id": "c"},
        {"oidc_issuer": "https://idp.example.com"},  # no client id
    ]
    for values in bad:
        with pytest.raises(ValidationError):
            AuthSettings(**values)
    dev = AuthSettings(
        oidc_issuer="http://127.0.0.1:8080", oidc_client_id="c", oidc_allow_insecure_issuer=True
    )
    assert dev.oidc_enabled()


def test_distributed_mode_takes_the_client_secret_from_vault_only() -> None:
    vault = {"vault_addr": "https://vault.example.com", "vault_token": "s.real-token-value"}
    base = {"oidc_issuer": "https://idp.example.com", "oidc_client_id": "c", **vault}
    with pytest.raises(ValidationError, match="Vault"):
        AuthSettings(mode="distributed", oidc_client_secret="in-env", **base)
    with pytest.raises(ValidationError, match="development"):
        AuthSettings(
            mode="distributed",
            **{**base, "oidc_issuer": "http://127.0.0.1:1"},
            oidc_allow_insecure_issuer=True,
        )
    assert AuthSettings(mode="distributed", **base).oidc_client_secret is None


# -- the browser flow --------------------------------------------------------------------


def test_sign_in_creates_the_account_and_opens_a_platform_session(
    sso: Callable[..., TestClient], idp: OidcServer
) -> None:
    client = sso()
    sub, email = person(idp)
    checked = idp.pkce_checked
    r = sign_in(client, idp, sub)
    assert r.status_code == 303 and r.headers["location"] == "/#/sso-complete", r.text
    cookies = r.headers.get_list("set-cookie")
    refresh = next(c for c in cookies if c.startswith("aidp_refresh="))
    assert "HttpOnly" in refresh and "SameSite=strict" in refresh and "Path=/api/auth" in refresh
    assert any(c.startswith("aidp_oidc_") and "Max-Age=0" in c for c in cookies)
    # the authorization request: code flow, PKCE S256, state and nonce
    sent = idp.authorize_params[-1]
    assert sent["response_type"] == "code" and sent["code_challenge_method"] == "S256"
    assert len(sent["state"]) >= 32 and len(sent["nonce"]) >= 24
    assert "openid" in sent["scope"].split() and sent["redirect_uri"] == CALLBACK
    assert idp.pkce_checked == checked + 1  # the provider checked our verifier
    token = session_token(client)
    assert me(client, token)["email"] == email
    # an SSO account has no password: password login fails like a wrong password
    r = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 401


def test_the_same_identity_signs_in_as_the_same_user_even_after_an_email_change(
    sso: Callable[..., TestClient], idp: OidcServer
) -> None:
    client = sso()
    sub, email = person(idp)
    assert sign_in(client, idp, sub).headers["location"] == "/#/sso-complete"
    first = me(client, session_token(client))["id"]
    idp.set_user(sub, email=f"renamed-{email}", email_verified=True)
    assert sign_in(client, idp, sub).headers["location"] == "/#/sso-complete"
    assert me(client, session_token(client))["id"] == first


def test_an_existing_account_is_linked_by_verified_email(
    sso: Callable[..., TestClient], idp: OidcServer
) -> None:
    client = sso()
    email = f"linked-{uuid.uuid4().hex[:8]}@example.com"
    user_id = register(client, email)["id"]
    sub, _ = person(idp, email=email.upper())  # the provider's spelling is normalised
    assert sign_in(client, idp, sub).headers["location"] == "/#/sso-complete"
    assert me(client, session_token(client))["id"] == user_id
    assert login(client, email)["access_token"]  # the password still works
    # another identity at the same provider cannot take over the linked account
    other, _ = person(idp, email=email)
    assert error_code(sign_in(client, idp, other)) == "sso_identity_conflict"


def test_an_unverified_email_is_refused_and_nothing_is_created(
    sso: Callable[..., TestClient], idp: OidcServer
) -> None:
    client = sso()
    sub, email = person(idp, verified=False)
    r = sign_in(client, idp, sub)
    assert error_code(r) == "sso_email_unverified"
    assert not any(c.startswith("aidp_refresh=") for c in r.headers.get_list("set-cookie"))
    assert not account_exists(client, email)
    # nor is an existing account linked through an unverified email
    victim = f"victim-{uuid.uuid4().hex[:8]}@example.com"
    register(client, victim)
    attacker, _ = person(idp, verified=False, email=victim)
    assert error_code(sign_in(client, idp, attacker)) == "sso_email_unverified"
    assert client.post("/api/auth/refresh").status_code == 401


def test_a_provider_without_email_verified_can_be_trusted_by_the_operator(
    sso: Callable[..., TestClient], idp: OidcServer
) -> None:
    sub = f"sub-{uuid.uuid4().hex[:10]}"
    email = f"{sub}@corp.example"
    idp.set_user(sub, email=email)  # no email_verified at all (ID token nor userinfo)
    assert error_code(sign_in(sso(), idp, sub)) == "sso_email_unverified"
    trusting = sso(oidc_trust_email=True)
    assert sign_in(trusting, idp, sub).headers["location"] == "/#/sso-complete"
    assert me(trusting, session_token(trusting))["email"] == email


def test_a_forged_replayed_or_cross_browser_state_is_refused(
    sso: Callable[..., TestClient], idp: OidcServer
) -> None:
    client = sso()
    sub, email = person(idp)
    back = idp.approve(begin(client), sub)
    query = parse_qs(urlsplit(back).query)
    code, state = query["code"][0], query["state"][0]
    forged = client.get(
        "/api/auth/oidc/callback",
        params={"code": code, "state": secrets.token_urlsafe(32)},
        follow_redirects=False,
    )
    assert error_code(forged) == "sso_state_invalid"
    # the real state, but in another browser (no binding cookie): login CSRF
    other_browser = TestClient(client.app)
    r = other_browser.get(back, follow_redirects=False)
    assert error_code(r) == "sso_state_invalid"
    assert not account_exists(client, email)
    # the browser that started it still can, once
    assert client.get(back, follow_redirects=False).headers["location"] == "/#/sso-complete"
    assert error_code(client.get(back, follow_redirects=False)) == "sso_state_invalid"
    assert error_code(other_browser.get(back, follow_redirects=False)) == "sso_state_invalid"
    for state_value in ("", "x" * 300, "<script>", state + "x"):
        r = client.get(
            "/api/auth/oidc/callback",
            params={"code": code, "state": state_value},
            follow_redirects=False,
        )
        assert r.status_code in (303, 422), r.text
        if r.status_code == 303:
            assert error_code(r) == "sso_state_invalid"
    # a good flow still works once, then its state is dead
    back = idp.approve(begin(client), sub)
    assert client.get(back, follow_redirects=False).headers["location"] == "/#/sso-complete"
    assert error_code(client.get(back, follow_redirects=False)) == "sso_state_invalid"


def test_two_sign_ins_started_in_one_browser_both_finish(
    sso: Callable[..., TestClient], idp: OidcServer
) -> None:
    client = sso()
    sub, email = person(idp)
    first, second = begin(client), begin(client)  # two tabs, or a double click
    back_second = idp.approve(second, sub)
    back_first = idp.approve(first, sub)
    assert client.get(back_second, follow_redirects=False).headers["location"] == (
        "/#/sso-complete"
    )
    assert client.get(back_first, follow_redirects=False).headers["location"] == ("/#/sso-complete")
    assert me(client, session_token(client))["email"] == email


@pytest.mark.parametrize(
    "tamper",
    [
        {"aud": "another-client"},
        {"aud": ["another-client", "aidp-test"]},  # several audiences, azp missing
        {"iss": "https://evil.example.com"},
        {"nonce": "not-the-nonce-we-sent"},
        {"nonce": None},
        {"exp": 1_000_000_000},
        {"iat": 4_000_000_000},
        {"foreign_key": True},
    ],
    ids=[
        "audience",
        "audiences-no-azp",
        "issuer",
        "nonce",
        "no-nonce",
        "expired",
        "iat-future",
        "signature",
    ],
)
def test_bad_id_tokens_are_refused(
    sso: Callable[..., TestClient], idp: OidcServer, tamper: dict[str, Any]
) -> None:
    client = sso()
    sub, email = person(idp)
    back = idp.approve(begin(client), sub)
    idp.tamper(**tamper)
    r = client.get(back, follow_redirects=False)
    assert error_code(r) == "sso_token_invalid"
    assert not any(c.startswith("aidp_refresh=") for c in r.headers.get_list("set-cookie"))
    assert not account_exists(client, email)


def test_a_provider_error_is_shown_as_a_code(
    sso: Callable[..., TestClient], idp: OidcServer
) -> None:
    client = sso()
    state = parse_qs(urlsplit(begin(client)).query)["state"][0]
    r = client.get(
        "/api/auth/oidc/callback",
        params={"state": state, "error": "access_denied", "error_description": "<b>no</b>"},
        follow_redirects=False,
    )
    assert error_code(r) == "sso_denied"
    assert "<b>" not in r.headers["location"]


def test_a_disabled_account_cannot_sign_in(sso: Callable[..., TestClient], idp: OidcServer) -> None:
    client = sso()
    admin_email = f"admin-{uuid.uuid4().hex[:6]}@example.com"
    sub, email = person(idp)
    register(client, admin_email)  # first account on loopback: the admin
    admin = login(client, admin_email)["access_token"]
    assert sign_in(client, idp, sub).headers["location"] == "/#/sso-complete"
    user_id = me(client, session_token(client))["id"]
    r = client.post(f"/api/auth/admin/users/{user_id}/disable", headers=bearer(admin))
    assert r.status_code == 200, r.text
    assert error_code(sign_in(client, idp, sub)) == "sso_account_disabled"


# -- who may get an account ------------------------------------------------------------


def test_invite_only_needs_an_invitation_or_an_allowed_domain(
    sso: Callable[..., TestClient], idp: OidcServer
) -> None:
    boss = "boss@example.com"
    client = sso(
        registration="invite",
        admin_emails=boss,
        oidc_allowed_domains="corp.example",
    )
    stranger, stranger_email = person(idp)
    assert error_code(sign_in(client, idp, stranger)) == "sso_invitation_required"
    assert not account_exists(client, stranger_email)
    # a named admin needs no code; an admin's invitation lets the stranger in
    boss_sub, _ = person(idp, email=boss)
    assert sign_in(client, idp, boss_sub).headers["location"] == "/#/sso-complete"
    boss_token = session_token(client)
    assert me(client, boss_token)["is_admin"] is True
    r = client.post(
        "/api/auth/admin/invitations", json={"email": stranger_email}, headers=bearer(boss_token)
    )
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    newcomer = TestClient(client.app)
    bad = sign_in(newcomer, idp, stranger, invitation="nope.nope")
    assert error_code(bad) == "sso_invitation_invalid"
    r = sign_in(newcomer, idp, stranger, invitation=code)
    assert r.headers["location"] == "/#/sso-complete"
    assert me(newcomer, session_token(newcomer))["is_admin"] is False
    # the code is spent; a colleague from the allowed domain needs none
    colleague, _ = person(idp, email=f"c-{uuid.uuid4().hex[:6]}@corp.example")
    assert sign_in(TestClient(client.app), idp, colleague).headers["location"] == (
        "/#/sso-complete"
    )


def test_closed_registration_only_lets_existing_accounts_in(
    make_client: Callable[..., TestClient], sso: Callable[..., TestClient], idp: OidcServer
) -> None:
    existing = f"old-{uuid.uuid4().hex[:6]}@example.com"
    register(make_client(), existing)
    client = sso(registration="closed")
    newcomer, email = person(idp)
    assert error_code(sign_in(client, idp, newcomer)) == "sso_registration_closed"
    assert not account_exists(client, email)
    old_sub, _ = person(idp, email=existing)
    assert sign_in(client, idp, old_sub).headers["location"] == "/#/sso-complete"


def test_the_first_account_on_loopback_is_the_admin_by_sso_as_by_registration(
    sso: Callable[..., TestClient], idp: OidcServer
) -> None:
    """One bootstrap rule for both ways in (services/auth/first_admin.py)."""
    client = sso()
    first, _ = person(idp)
    assert sign_in(client, idp, first).headers["location"] == "/#/sso-complete"
    assert me(client, session_token(client))["is_admin"] is True
    later = sso()
    second, _ = person(idp)
    assert sign_in(later, idp, second).headers["location"] == "/#/sso-complete"
    assert me(later, session_token(later))["is_admin"] is False
    assert register(later, "third@example.com")["is_admin"] is False


def test_off_loopback_being_first_makes_no_admin_but_admin_emails_do(
    sso: Callable[..., TestClient], idp: OidcServer
) -> None:
    client = sso(host="0.0.0.0", registration="open")
    first, _ = person(idp)
    assert sign_in(client, idp, first).headers["location"] == "/#/sso-complete"
    assert me(client, session_token(client))["is_admin"] is False
    named = sso(host="0.0.0.0", registration="open", admin_emails="boss@example.com")
    boss, _ = person(idp, email="boss@example.com")
    assert sign_in(named, idp, boss).headers["location"] == "/#/sso-complete"
    assert me(named, session_token(named))["is_admin"] is True


def test_the_admin_group_maps_to_platform_admin_at_every_sign_in(
    sso: Callable[..., TestClient], idp: OidcServer
) -> None:
    client = sso(oidc_admin_group="aidp-admins", oidc_groups_claim="groups")
    sub, email = person(idp, groups=["staff", "aidp-admins"])
    assert sign_in(client, idp, sub).headers["location"] == "/#/sso-complete"
    token = session_token(client)
    assert me(client, token)["is_admin"] is True
    r = client.post("/api/auth/admin/invitations", json={}, headers=bearer(token))
    assert r.status_code == 201
    # removed from the group at the provider: the next sign-in takes admin away, and the
    # access tokens issued while admin stop working at once
    idp.set_user(sub, email=email, email_verified=True, groups=["staff"])
    assert sign_in(client, idp, sub).headers["location"] == "/#/sso-complete"
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 401
    fresh = session_token(client)
    assert me(client, fresh)["is_admin"] is False
    r = client.post("/api/auth/admin/invitations", json={}, headers=bearer(fresh))
    assert r.status_code == 403
    # someone outside the group is never admin, even as the first account on loopback
    outsider, _ = person(idp, groups="staff")
    other = TestClient(client.app)
    assert sign_in(other, idp, outsider).headers["location"] == "/#/sso-complete"
    assert me(other, session_token(other))["is_admin"] is False


# -- the CLI hand-off ----------------------------------------------------------------------


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def test_cli_sign_in_hands_a_one_time_code_to_the_loopback_listener(
    sso: Callable[..., TestClient], idp: OidcServer
) -> None:
    client = sso()
    sub, email = person(idp)
    verifier, challenge = _pkce()
    cli_state = secrets.token_urlsafe(16)
    r = sign_in(client, idp, sub, cli_port=48123, cli_challenge=challenge, cli_state=cli_state)
    assert r.status_code == 303
    target = urlsplit(r.headers["location"])
    assert (target.scheme, target.hostname, target.port, target.path) == (
        "http",
        "127.0.0.1",
        48123,
        "/callback",
    )
    query = parse_qs(target.query)
    assert query["state"] == [cli_state]
    handoff = query["code"][0]
    assert not any(c.startswith("aidp_refresh=") for c in r.headers.get_list("set-cookie"))
    wrong = client.post("/api/auth/oidc/token", json={"code": handoff, "code_verifier": _pkce()[0]})
    assert wrong.status_code == 401
    r = client.post("/api/auth/oidc/token", json={"code": handoff, "code_verifier": verifier})
    assert r.status_code == 200, r.text
    pair = r.json()
    assert pair["refresh_token"] and me(client, pair["access_token"])["email"] == email
    again = client.post("/api/auth/oidc/token", json={"code": handoff, "code_verifier": verifier})
    assert again.status_code == 401
    # the refresh token works in the body, as after `aidp login`
    r = client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert r.status_code == 200


def test_cli_errors_go_back_to_the_loopback_listener(
    sso: Callable[..., TestClient], idp: OidcServer
) -> None:
    client = sso()
    sub, _ = person(idp, verified=False)
    _, challenge = _pkce()
    r = sign_in(client, idp, sub, cli_port=48124, cli_challenge=challenge, cli_state="s" * 16)
    target = urlsplit(r.headers["location"])
    assert (target.hostname, target.port) == ("127.0.0.1", 48124)
    assert parse_qs(target.query) == {"error": ["sso_email_unverified"], "state": ["s" * 16]}


@pytest.mark.parametrize(
    "params",
    [
        {"cli_port": 80, "cli_challenge": "a" * 43, "cli_state": "s" * 16},
        {"cli_port": 50000, "cli_challenge": "short", "cli_state": "s" * 16},
        {"cli_port": 50000, "cli_challenge": "a" * 43},
        {"cli_port": "x", "cli_challenge": "a" * 43, "cli_state": "s" * 16},
        {"invitation": "bad code with spaces"},
    ],
)
def test_bad_login_parameters_are_a_422(
    sso: Callable[..., TestClient], params: dict[str, Any]
) -> None:
    r = sso().get("/api/auth/oidc/login", params=params, follow_redirects=False)
    assert r.status_code == 422, r.text


def test_bad_token_bodies_are_a_422(sso: Callable[..., TestClient]) -> None:
    client = sso()
    for body in ({}, {"code": "x"}, {"code": "x", "code_verifier": "v" * 43, "extra": 1}):
        assert client.post("/api/auth/oidc/token", json=body).status_code == 422


# -- the provider itself ------------------------------------------------------------------


@pytest.mark.parametrize(
    "override",
    [
        {"issuer": "https://evil.example.com"},
        {"token_endpoint": "http://idp.example.com/token"},  # plain http off loopback
        {"jwks_uri": None},
    ],
    ids=["issuer", "http-endpoint", "no-jwks"],
)
def test_a_bad_discovery_document_is_refused(
    sso: Callable[..., TestClient], idp: OidcServer, override: dict[str, Any]
) -> None:
    idp.discovery_overrides = override
    try:
        r = sso().get("/api/auth/oidc/login", follow_redirects=False)
    finally:
        idp.discovery_overrides = {}
    assert error_code(r) == "sso_misconfigured"


def test_a_provider_offering_only_unsafe_algorithms_is_refused(
    sso: Callable[..., TestClient], idp: OidcServer
) -> None:
    idp.discovery_overrides = {"id_token_signing_alg_values_supported": ["none", "HS256"]}
    try:
        client = sso()
        sub, email = person(idp)
        r = sign_in(client, idp, sub)
    finally:
        idp.discovery_overrides = {}
    assert error_code(r) == "sso_misconfigured"
    assert not account_exists(client, email)


def test_an_unreachable_provider_is_a_clear_error(sso: Callable[..., TestClient]) -> None:
    client = sso(oidc_issuer="http://127.0.0.1:9", oidc_http_timeout_seconds=2)
    r = client.get("/api/auth/oidc/login", follow_redirects=False)
    assert r.headers["location"] == "/#/sso-error?code=sso_unavailable"


def test_a_token_endpoint_that_cannot_be_reached_is_unavailable_not_a_refusal(
    sso: Callable[..., TestClient], idp: OidcServer
) -> None:
    # Authlib's client is built on httpx2, whose errors are not httpx's
    idp.discovery_overrides = {"token_endpoint": "http://127.0.0.1:9/token"}
    try:
        client = sso(oidc_http_timeout_seconds=2)
        sub, email = person(idp)
        r = sign_in(client, idp, sub)
    finally:
        idp.discovery_overrides = {}
    assert error_code(r) == "sso_unavailable"
    assert not account_exists(client, email)


def test_unfinished_sign_ins_are_limited_per_address(sso: Callable[..., TestClient]) -> None:
    client = sso(oidc_pending_limit_per_address=2)
    begin(client)
    begin(client)
    r = client.get("/api/auth/oidc/login", follow_redirects=False)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


def test_the_client_secret_comes_from_vault(
    make_client: Callable[..., TestClient], vault: InMemoryVault
) -> None:
    with oidc_server(require_client_registration=True) as strict:
        client_id, secret = strict.register_client([CALLBACK])
        sub, email = person(strict)
        settings = {
            "oidc_issuer": strict.url,
            "oidc_client_id": client_id,
            "oidc_allow_insecure_issuer": True,
        }
        vault.put_platform_secret("oidc", {"client_secret": "not-the-secret"})
        wrong = make_client(**settings)
        assert error_code(sign_in(wrong, strict, sub)) == "sso_token_invalid"
        vault.put_platform_secret("oidc", {"client_secret": secret})
        right = make_client(**settings)
        assert sign_in(right, strict, sub).headers["location"] == "/#/sso-complete"
        assert me(right, session_token(right))["email"] == email
