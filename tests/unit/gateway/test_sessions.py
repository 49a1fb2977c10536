"""Issue 13 at the gateway: revoked sessions, retired and revoked keys, bounded token
lifetimes, malformed API tokens, and WebSockets that close when the session, the key or
the access ends."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import jwt
import pytest

from services.gateway.main import create_app
from shared.events import MembershipChanged, SessionsRevoked, SigningKeyRevoked, new_event
from shared.secrets import InMemoryVault
from tests.unit.gateway import wsclient
from tests.unit.gateway.authstub import AuthStub
from tests.unit.gateway.conftest import Harness, Served, gateway_settings, serve, wait_until

pytestmark = pytest.mark.timeout(60)


async def _status(harness: Harness, token: str) -> int:
    r = await harness.client.get("/api/projects", headers={"Authorization": f"Bearer {token}"})
    return r.status_code


async def _open_for(ws: wsclient.ClientConnection, seconds: float) -> bool:
    """True when the server keeps the socket open for ``seconds`` (frames are read)."""
    try:
        async with asyncio.timeout(seconds):
            await wsclient.close_code(ws, timeout=seconds + 1)
    except TimeoutError:
        return True
    return False


def _revoked(user_id: uuid.UUID, at: float | None = None) -> SessionsRevoked:
    return SessionsRevoked(
        user_id=user_id, not_before=datetime.fromtimestamp(at or time.time(), UTC), reason="logout"
    )


async def test_a_forged_long_lived_token_is_refused(harness: Harness) -> None:
    user_id, email = harness.auth.user()
    now = int(time.time())
    year = harness.auth.token(user_id, email, iat=now, exp=now + 365 * 86400)
    assert await _status(harness, year) == 401
    no_iat = jwt.encode(
        {"iss": "aidp", "aud": "aidp-api", "sub": str(user_id), "exp": now + 600},
        harness.auth.keys[harness.auth.active],
        algorithm="EdDSA",
        headers={"kid": harness.auth.active},
    )
    assert await _status(harness, no_iat) == 401
    # the configured lifetime (900 s) plus slack is fine
    assert await _status(harness, harness.auth.token(user_id, email, exp=now + 920)) == 200


async def test_malformed_api_tokens_are_401_not_503(harness: Harness) -> None:
    for token in (
        "aidp_",
        "aidp_x",
        "aidp_" + "%" * 20,
        "aidp_a b c d e f g h",
        "aidp_" + "a" * 600,
    ):
        assert await _status(harness, token) == 401, token
    assert not any(p == "/internal/introspect" for p in harness.auth.seen)
    assert await _status(harness, "aidp_" + "a" * 40) == 401  # well shaped, unknown: auth says


async def test_a_pushed_revocation_kills_older_tokens_at_once(harness: Harness) -> None:
    user_id, headers = harness.login()
    assert (await harness.client.get("/api/projects", headers=headers)).status_code == 200
    await harness.publish(new_event(_revoked(user_id)))

    async def refused() -> bool:
        r = await harness.client.get("/api/projects", headers=headers)
        return r.status_code == 401

    await wait_until(refused, timeout=1.0)
    r = await harness.client.get("/api/secrets", headers=headers)
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    # a token issued after the revocation works
    email = next(e for e, u in harness.auth.users.items() if u == user_id)
    issued = time.time()
    fresh = harness.auth.token(user_id, email, iat=issued, exp=issued + 900)
    assert await _status(harness, fresh) == 200


async def test_a_revocation_drops_cached_api_token_introspections(harness: Harness) -> None:
    user_id, _ = harness.login()
    token = harness.auth.api_token(user_id)
    assert await _status(harness, token) == 200
    del harness.auth.api_tokens[token]  # auth revoked it along with the sessions
    assert await _status(harness, token) == 200  # still cached (api_token_cache_seconds)
    await harness.publish(new_event(_revoked(user_id)))

    async def refused() -> bool:
        return await _status(harness, token) == 401

    await wait_until(refused, timeout=1.0)


async def test_not_before_is_asked_of_auth_for_a_user_first_seen(harness: Harness) -> None:
    """A revocation from before this process started (no push ever seen) still counts."""
    user_id, email = harness.auth.user()
    issued = time.time() - 60
    old = harness.auth.token(user_id, email, iat=issued, exp=issued + 900)
    harness.auth.not_before[user_id] = time.time() - 30
    assert await _status(harness, old) == 401
    assert f"/internal/users/{user_id}/sessions" in harness.auth.seen
    assert await _status(harness, harness.auth.token(user_id, email)) == 200


async def test_a_retired_key_stops_verifying_after_the_periodic_refresh(
    tmp_path: Path, auth: AuthStub
) -> None:
    vault = InMemoryVault()
    settings = gateway_settings(
        tmp_path,
        auth.url,  # type: ignore[attr-defined]
        jwks_refresh_interval=0.2,
        jwks_refresh_seconds=60.0,  # no unknown-kid refetch: only the periodic one
    )
    app = create_app(settings, vault=(vault, vault))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            user_id, email = auth.user()
            old_kid = auth.active
            token = auth.token(user_id, email)
            headers = {"Authorization": f"Bearer {token}"}
            assert (await client.get("/api/projects", headers=headers)).status_code == 200
            auth.rotate()
            auth.retire(old_kid)

            async def refused() -> bool:
                r = await client.get("/api/projects", headers=headers)
                return r.status_code == 401

            await wait_until(refused, timeout=2.0)
            fresh = {"Authorization": f"Bearer {auth.token(user_id, email)}"}
            assert (await client.get("/api/projects", headers=fresh)).status_code == 200


async def test_a_pushed_key_revocation_kills_its_tokens_at_once(harness: Harness) -> None:
    """The push wins over the JWKS: auth's replica that served it had not heard yet and
    still publishes the revoked key, which is not learnt again (a verification cached
    before the revocation included)."""
    user_id, headers = harness.login()
    assert (await harness.client.get("/api/projects", headers=headers)).status_code == 200
    email = next(e for e, u in harness.auth.users.items() if u == user_id)
    revoked = harness.auth.active
    harness.auth.rotate()  # a new signing key; the stub keeps publishing the revoked one
    await harness.publish(new_event(SigningKeyRevoked(kid=revoked)))

    async def refused() -> bool:  # a token never seen before, so never cached
        return await _status(harness, harness.auth.token(user_id, email, kid=revoked)) == 401

    await wait_until(refused, timeout=1.0)
    fetches = harness.auth.jwks_fetches
    fresh = harness.auth.token(user_id, email)  # an unknown kid: the JWKS is fetched again
    assert await _status(harness, fresh) == 200
    assert harness.auth.jwks_fetches > fetches and revoked in harness.auth.keys
    # the first token, verified (and cached) before the revocation, is refused too
    r = await harness.client.get("/api/projects", headers=headers)
    assert r.status_code == 401 and "revoked key" in r.json()["error"]["message"]


# --- WebSockets ---------------------------------------------------------------------------


@pytest.fixture
async def short_lived(tmp_path: Path, auth: AuthStub) -> AsyncIterator[Served]:
    """A served gateway (pings every 0.5 s)."""
    from shared.bus.memory import MemoryBus

    vault = InMemoryVault()
    app = create_app(
        gateway_settings(tmp_path, auth.url, ws_ping_interval=0.5),  # type: ignore[attr-defined]
        vault=(vault, vault),
    )
    publisher = MemoryBus("memory://")
    await publisher.connect()
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield Served(app, client, auth, vault, publisher, url=url)
    await publisher.close()


async def test_ws_closes_4401_when_the_token_expires(short_lived: Served) -> None:
    served = short_lived
    user_id, email = served.auth.user()
    now = time.time()
    # A few seconds of life: authenticating must finish before it ends on a loaded machine.
    token = served.auth.token(user_id, email, iat=now - 896, exp=now + 4.0)
    ws = await wsclient.authed(served.ws_url, token)
    started = time.monotonic()
    assert await wsclient.close_code(ws, timeout=10) == 4401
    assert 1.0 < time.monotonic() - started < 6.0


async def test_ws_fresh_auth_moves_the_expiry(short_lived: Served) -> None:
    served = short_lived
    user_id, email = served.auth.user()
    now = time.time()
    ws = await wsclient.authed(
        served.ws_url, served.auth.token(user_id, email, iat=now - 896, exp=now + 3.0)
    )
    await ws.send(json.dumps({"type": "auth", "token": served.auth.token(user_id, email)}))
    assert await _open_for(ws, max(0.0, now + 3.0 - time.time()) + 1.5)  # past the first exp
    # another user's token cannot take the connection over
    other_id, other_email = served.auth.user()
    await ws.send(json.dumps({"type": "auth", "token": served.auth.token(other_id, other_email)}))
    assert await wsclient.close_code(ws, timeout=5) == 4401


async def test_ws_closes_4401_on_revocation(short_lived: Served) -> None:
    served = short_lived
    user_id, email = served.auth.user()
    token = served.auth.token(user_id, email)
    headers = {"Authorization": f"Bearer {token}"}
    project = await served.create_project(headers)
    ws = await wsclient.authed(served.ws_url, token)
    await wsclient.subscribe(ws, project["id"])
    await served.publish(new_event(_revoked(user_id)))
    started = time.monotonic()
    assert await wsclient.close_code(ws, timeout=5) == 4401
    assert time.monotonic() - started < 1.0


async def test_ws_closes_4403_when_the_member_is_removed(short_lived: Served) -> None:
    served = short_lived
    _, owner = served.login("wsowner@example.com")
    viewer_id, _ = served.auth.user("wsviewer@example.com")
    viewer_token = served.auth.token(viewer_id, "wsviewer@example.com")
    project = await served.create_project(owner)
    pid = project["id"]
    await served.add_member(pid, owner, "wsviewer@example.com", "viewer")
    ws = await wsclient.authed(served.ws_url, viewer_token)
    await wsclient.subscribe(ws, pid)
    # a role change keeps the socket (a viewer-or-better still reads)
    await served.add_member(pid, owner, "wsviewer@example.com", "editor")
    assert await _open_for(ws, 0.5)
    r = await served.client.delete(f"/api/projects/{pid}/members/{viewer_id}", headers=owner)
    assert r.status_code == 204
    started = time.monotonic()
    assert await wsclient.close_code(ws, timeout=5) == 4403
    assert time.monotonic() - started < 1.0


async def test_a_membership_push_for_another_project_keeps_the_socket(short_lived: Served) -> None:
    served = short_lived
    user_id, email = served.auth.user()
    token = served.auth.token(user_id, email)
    project = await served.create_project({"Authorization": f"Bearer {token}"})
    ws = await wsclient.authed(served.ws_url, token)
    await wsclient.subscribe(ws, project["id"])
    await served.publish(
        new_event(MembershipChanged(user_id=user_id, role=None), project_id=uuid.uuid4())
    )
    # still the owner of the watched project: re-authorisation keeps it
    await served.publish(
        new_event(MembershipChanged(user_id=user_id, role="owner"), project_id=project["id"])
    )
    assert await _open_for(ws, 1.0)


async def test_ws_closes_4401_when_its_signing_key_is_revoked(short_lived: Served) -> None:
    """Only the sockets whose token the revoked key signed close."""
    served = short_lived
    revoked = served.auth.active
    user_id, email = served.auth.user()
    token = served.auth.token(user_id, email)
    project = await served.create_project({"Authorization": f"Bearer {token}"})
    old = await wsclient.authed(served.ws_url, token)
    await wsclient.subscribe(old, project["id"])
    served.auth.rotate()
    new = await wsclient.authed(served.ws_url, served.auth.token(user_id, email))
    await wsclient.subscribe(new, project["id"])
    await served.publish(new_event(SigningKeyRevoked(kid=revoked)))
    started = time.monotonic()
    assert await wsclient.close_code(old, timeout=5) == 4401
    assert time.monotonic() - started < 1.0
    assert await _open_for(new, 1.0)
