"""Single sign-on through the real gateway (issue 18 item 3): auth and the gateway on
PostgreSQL, RabbitMQ and OpenBao, and a real OpenID Connect provider
(``oidc-provider-mock``) that only knows this platform as a registered client: its
redirect URI and client secret are checked, and so is PKCE (tests/support/oidc_server.py).
The client secret reaches auth from Vault (platform secret ``oidc``), never from a setting.

The browser is httpx with a cookie jar; ``aidp login --sso`` runs as the real CLI.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import uvicorn

from services.auth.main import create_app as create_auth_app
from services.gateway.main import create_app as create_gateway_app
from shared.secrets.vault import VaultClient
from tests.integration.gateway.conftest import PASSWORD, auth_settings, gateway_settings
from tests.support import infra
from tests.support.oidc_server import OidcServer, oidc_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[3]
ADMIN_GROUP = "aidp-admins"


@dataclass
class Sso:
    url: str
    idp: OidcServer

    def browser(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def person(self, *, verified: bool = True, **claims: Any) -> tuple[str, str]:
        sub = f"sub-{uuid.uuid4().hex[:10]}"
        email = claims.pop("email", f"{sub}@example.com")
        self.idp.set_user(sub, email=email, email_verified=verified, **claims)
        return sub, email

    def begin(self, browser: httpx.Client, **params: str) -> str:
        r = browser.get("/api/auth/oidc/login", params=params)
        assert r.status_code == 302, r.text
        location = str(r.headers["location"])
        assert location.startswith(self.idp.url + "/oauth2/authorize?"), location
        return location

    def sign_in(
        self, browser: httpx.Client, sub: str, *, authorize_url: str = ""
    ) -> httpx.Response:
        back = self.idp.approve(authorize_url or self.begin(browser), sub)
        assert back.startswith(f"{self.url}/api/auth/oidc/callback?"), back
        return browser.get(back)


def _serve(app: Any, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 90
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    return server, thread


@pytest.fixture(scope="module")
def sso(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_base: str,
    amqp_base: str,
    bao_server: tuple[str, str],
) -> Iterator[Sso]:
    tmp = tmp_path_factory.mktemp("sso")
    postgres_url, db_name = infra.create_database(postgres_base)
    amqp_url, vhost = infra.create_vhost(amqp_base)
    vault = VaultClient(bao_server[0], token=bao_server[1], prefix=f"test-{uuid.uuid4().hex[:12]}")
    vault.ensure_mounts()
    vault.ensure_key("aidp-artifacts")
    port = infra.free_port()
    url = f"http://127.0.0.1:{port}"
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []
    try:
        with oidc_server(require_client_registration=True) as idp:
            client_id, secret = idp.register_client([f"{url}/api/auth/oidc/callback"])
            vault.put_platform_secret("oidc", {"client_secret": secret})
            settings = auth_settings(tmp, postgres_url, amqp_url).model_copy(
                update={
                    "oidc_issuer": idp.url,
                    "oidc_client_id": client_id,
                    "oidc_allow_insecure_issuer": True,
                    "oidc_admin_group": ADMIN_GROUP,
                    "oidc_name": "Example IdP",
                }
            )
            auth_port = infra.free_port()
            servers.append(_serve(create_auth_app(settings, vault=(vault, vault)), auth_port))
            gateway = create_gateway_app(
                gateway_settings(tmp, postgres_url, amqp_url, f"http://127.0.0.1:{auth_port}"),
                vault=(vault, vault),
            )
            servers.append(_serve(gateway, port))
            yield Sso(url=url, idp=idp)
    finally:
        for server, thread in reversed(servers):
            server.should_exit = True
            thread.join(30)
        infra.delete_vhost(amqp_base, vhost)
        infra.drop_database(postgres_base, db_name)


def _token(browser: httpx.Client) -> str:
    r = browser.post("/api/auth/refresh")  # the cookie the callback set, as the SPA does
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/#/sso-error?{urlencode({'code': code})}"
    assert not any(c.startswith("aidp_refresh=") for c in response.headers.get_list("set-cookie"))


def test_config_is_public(sso: Sso) -> None:
    r = httpx.get(f"{sso.url}/api/auth/oidc/config")
    assert r.json() == {
        "enabled": True,
        "label": "Example IdP",
        "login_url": "/api/auth/oidc/login",
    }


def test_the_code_flow_through_the_gateway_opens_a_platform_session(sso: Sso) -> None:
    sub, email = sso.person()
    with sso.browser() as browser:
        checked = sso.idp.pkce_checked
        r = sso.sign_in(browser, sub)
        assert r.status_code == 303 and r.headers["location"] == "/#/sso-complete"
        assert sso.idp.pkce_checked == checked + 1
        token = _token(browser)
        me = browser.get("/api/auth/me", headers=_bearer(token)).json()
        assert me["email"] == email and me["is_admin"] is False
        # the platform's own token works on the gateway's routes
        r = browser.get("/api/projects", headers=_bearer(token))
        assert r.status_code == 200, r.text
        # and signing in again is the same account
        assert sso.sign_in(browser, sub).headers["location"] == "/#/sso-complete"
        again = browser.get("/api/auth/me", headers=_bearer(_token(browser))).json()
        assert again["id"] == me["id"]


def test_an_existing_account_is_linked_by_verified_email(sso: Sso) -> None:
    email = f"pw-{uuid.uuid4().hex[:8]}@example.com"
    with sso.browser() as browser:
        r = browser.post("/api/auth/register", json={"email": email, "password": PASSWORD})
        assert r.status_code == 201, r.text
        user_id = r.json()["id"]
        sub, _ = sso.person(email=email)
        assert sso.sign_in(browser, sub).headers["location"] == "/#/sso-complete"
        assert browser.get("/api/auth/me", headers=_bearer(_token(browser))).json()["id"] == user_id


def test_an_unverified_email_is_refused(sso: Sso) -> None:
    email = f"victim-{uuid.uuid4().hex[:8]}@example.com"
    with sso.browser() as browser:
        r = browser.post("/api/auth/register", json={"email": email, "password": PASSWORD})
        assert r.status_code == 201
        attacker, _ = sso.person(verified=False, email=email)
        _refused(sso.sign_in(browser, attacker), "sso_email_unverified")
        assert browser.post("/api/auth/refresh").status_code == 401


def test_the_gateway_never_keeps_a_session_cookie_for_the_next_caller(sso: Sso) -> None:
    """The cookies auth sets (refresh, device, SSO flow) go to the browser that asked; the
    gateway's own client to auth keeps none, so a caller without cookies gets no session."""
    email = f"cookie-{uuid.uuid4().hex[:8]}@example.com"
    sub, _ = sso.person()
    with sso.browser() as browser:
        r = browser.post("/api/auth/register", json={"email": email, "password": PASSWORD})
        assert r.status_code == 201
        r = browser.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200 and "aidp_refresh" in browser.cookies
        assert sso.sign_in(browser, sub).headers["location"] == "/#/sso-complete"
    with sso.browser() as stranger:
        assert stranger.post("/api/auth/refresh").status_code == 401
        r = stranger.get("/api/auth/oidc/callback", params={"state": "s" * 43, "code": "c"})
        assert r.headers["location"] == "/#/sso-error?code=sso_state_invalid"


def test_a_forged_state_is_refused(sso: Sso) -> None:
    sub, _ = sso.person()
    with sso.browser() as browser:
        back = sso.idp.approve(sso.begin(browser), sub)
        code = parse_qs(urlsplit(back).query)["code"][0]
        forged = browser.get(
            "/api/auth/oidc/callback", params={"code": code, "state": "forged-" + "x" * 30}
        )
        _refused(forged, "sso_state_invalid")


def test_a_wrong_nonce_is_refused(sso: Sso) -> None:
    """The provider signs what it was asked: an ID token whose nonce is not the one this
    sign-in sent (an authorization request someone else made) is refused."""
    sub, email = sso.person()
    with sso.browser() as browser:
        authorize = sso.begin(browser)
        parts = urlsplit(authorize)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        query["nonce"] = "an-attackers-nonce-" + uuid.uuid4().hex
        swapped = f"{sso.idp.url}{parts.path}?{urlencode(query)}"
        _refused(sso.sign_in(browser, sub, authorize_url=swapped), "sso_token_invalid")


def test_an_id_token_for_another_audience_is_refused(sso: Sso) -> None:
    sub, _ = sso.person()
    with sso.browser() as browser:
        back = sso.idp.approve(sso.begin(browser), sub)
        sso.idp.tamper(aud="some-other-client")  # re-signed with the provider's real key
        _refused(browser.get(back), "sso_token_invalid")


def test_the_admin_group_maps_to_platform_admin(sso: Sso) -> None:
    admin_sub, _ = sso.person(groups=[ADMIN_GROUP])
    user_sub, _ = sso.person(groups=["staff"])
    with sso.browser() as admin_browser, sso.browser() as user_browser:
        assert sso.sign_in(admin_browser, admin_sub).headers["location"] == "/#/sso-complete"
        assert sso.sign_in(user_browser, user_sub).headers["location"] == "/#/sso-complete"
        admin, user = _token(admin_browser), _token(user_browser)
        r = admin_browser.post("/api/auth/admin/invitations", json={}, headers=_bearer(admin))
        assert r.status_code == 201, r.text
        r = user_browser.post("/api/auth/admin/invitations", json={}, headers=_bearer(user))
        assert r.status_code == 403
        # the gateway's own admin routes follow the flag too
        r = user_browser.get("/api/admin/cloud-access", headers=_bearer(user))
        assert r.status_code == 403
        r = admin_browser.get("/api/admin/cloud-access", headers=_bearer(admin))
        assert r.status_code != 403


def test_aidp_login_sso_with_the_real_cli(sso: Sso, tmp_path: Path) -> None:
    sub, email = sso.person()
    env = {
        **os.environ,
        "AIDP_CONFIG": str(tmp_path / "config"),
        "COLUMNS": "400",
        "NO_COLOR": "1",
    }
    env.pop("AIDP_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "login", "--sso", "--no-browser", "--server", sso.url],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"(http://\S+/api/auth/oidc/login\?\S+)", line)
        assert match, line
        with httpx.Client(timeout=30) as browser:  # the person's browser
            r = browser.get(match.group(1))
            assert r.status_code == 302
            back = sso.idp.approve(str(r.headers["location"]), sub)
            r = browser.get(back)  # the platform's callback: on to the CLI's listener
            assert r.status_code == 303
            loopback = str(r.headers["location"])
            assert loopback.startswith("http://127.0.0.1:") and "/callback?code=" in loopback
            page = browser.get(loopback)
            assert page.status_code == 200 and "Signed in" in page.text
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, out
    assert f"as {email}" in out
    whoami = subprocess.run(
        [sys.executable, "-m", "cli.main", "whoami"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert whoami.returncode == 0 and email in whoami.stdout, whoami.stdout + whoami.stderr
