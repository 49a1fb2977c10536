"""Project webhooks (issue 16 item 7) against a real local HTTP receiver: signatures,
retries with backoff (the receiver fails twice first), the delivery log, Slack payloads,
SSRF rules, secrets sealed in the DB, authorisation."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from services.gateway.main import create_app
from services.gateway.webhook_models import Webhook, WebhookDelivery
from shared.bus.memory import MemoryBus
from shared.events import ModelDeployed, RunCancelled, TrainingCompleted, TrainingFailed, new_event
from shared.secrets import InMemoryVault
from tests.unit.gateway.authstub import AuthStub
from tests.unit.gateway.conftest import Harness, gateway_settings, wait_until


@dataclass
class Receiver:
    """A webhook receiver: answers 500 to the first ``fail_first`` requests, then 200."""

    fail_first: int = 0
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            code = 500 if len(state.requests) <= state.fail_first else 200
            state.answers.append(code)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/aidp"
    yield state
    server.shutdown()
    thread.join()


@pytest.fixture
async def hooks(tmp_path: Path, auth: AuthStub) -> AsyncIterator[Harness]:
    """The gateway with loopback webhooks allowed (dev/test setting) and fast retries."""
    vault = InMemoryVault()
    settings = gateway_settings(
        tmp_path,
        auth.url,  # type: ignore[attr-defined]
        webhook_allow_private=True,
        webhook_backoff=0.1,
        webhook_max_attempts=4,
        webhook_poll_interval=0.05,
    )
    app = create_app(settings, vault=(vault, vault))
    publisher = MemoryBus("memory://")
    await publisher.connect()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield Harness(app, client, auth, vault, publisher)
    await publisher.close()


def _verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    mac = hmac.new(secret.encode(), f"{headers['x-aidp-timestamp']}.".encode() + body, "sha256")
    return hmac.compare_digest(headers["x-aidp-signature"], "sha256=" + mac.hexdigest())


async def _project(h: Harness) -> tuple[dict[str, str], str, str]:
    _, owner = h.login("owner@example.com")
    project = await h.create_project(owner)
    return owner, project["id"], project["current_run_id"]


async def test_signed_delivery_retried_until_delivered(hooks: Harness, receiver: Receiver) -> None:
    receiver.fail_first = 2
    owner, pid, rid = await _project(hooks)
    r = await hooks.client.post(
        f"/api/projects/{pid}/webhooks",
        json={"url": receiver.url, "events": ["run.failed"]},
        headers=owner,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    secret, hook_id = created["secret"], created["id"]
    assert secret.startswith("whsec_") and created["events"] == ["run.failed"]

    # never shown again, never stored in plaintext
    listed = (await hooks.client.get(f"/api/projects/{pid}/webhooks", headers=owner)).json()
    assert [w["id"] for w in listed] == [hook_id] and "secret" not in listed[0]
    with hooks.app.state.runtime.db.session() as s:
        row = s.get(Webhook, uuid.UUID(hook_id))
        assert row is not None and secret not in row.secret_sealed
        assert row.secret_sealed.startswith("v1:")
        # the URL too (a Slack URL is a credential); listed masked past its path's start
        assert row.url.startswith("v1:") and "127.0.0.1" not in row.url
    assert listed[0]["url"] == receiver.url  # a short path is shown whole

    await hooks.publish(
        new_event(
            TrainingFailed(reason="CUDA out of memory", exit_code=1, retryable=False),
            project_id=uuid.UUID(pid),
            run_id=uuid.UUID(rid),
        )
    )
    await wait_until(lambda: receiver.answers == [500, 500, 200], timeout=20)
    # the same delivery id and event on every try; each signature verifies
    assert len({h["x-aidp-delivery"] for h, _ in receiver.requests}) == 1
    for headers, body in receiver.requests:
        assert headers["x-aidp-event"] == "run.failed"
        assert _verify(secret, headers, body)
        assert not _verify("whsec_wrong", headers, body)
    payload = json.loads(receiver.requests[-1][1])
    assert payload["type"] == "run.failed" and payload["project"]["id"] == pid
    assert payload["run"]["id"] == rid and payload["run"]["status"] == "failed"
    assert payload["run"]["error"] == "CUDA out of memory"

    log_url = f"/api/projects/{pid}/webhooks/{hook_id}/deliveries"
    log = await wait_until(
        lambda: _delivered(hooks, log_url, owner),
        timeout=10,
    )
    assert log[0]["attempts"] == 3 and log[0]["last_status_code"] == 200
    assert log[0]["kind"] == "run.failed" and log[0]["last_error"] is None


async def _delivered(h: Harness, url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    rows = (await h.client.get(url, headers=headers)).json()
    return rows if rows and rows[0]["status"] == "delivered" else []


async def test_gives_up_after_max_attempts_and_logs_why(hooks: Harness, receiver: Receiver) -> None:
    receiver.fail_first = 100
    owner, pid, rid = await _project(hooks)
    hook = (
        await hooks.client.post(
            f"/api/projects/{pid}/webhooks", json={"url": receiver.url}, headers=owner
        )
    ).json()
    await hooks.publish(
        new_event(RunCancelled(by=uuid.uuid4()), project_id=uuid.UUID(pid), run_id=uuid.UUID(rid))
    )
    url = f"/api/projects/{pid}/webhooks/{hook['id']}/deliveries"

    async def failed() -> list[dict[str, Any]]:
        rows = (await hooks.client.get(url, headers=owner)).json()
        return rows if rows and rows[0]["status"] == "failed" else []

    rows = await wait_until(failed, timeout=20)
    assert rows[0]["attempts"] == 4 and rows[0]["kind"] == "run.cancelled"
    assert rows[0]["last_status_code"] == 500 and "500" in rows[0]["last_error"]
    assert len(receiver.requests) == 4


async def test_slack_format_and_event_filter(hooks: Harness, receiver: Receiver) -> None:
    owner, pid, rid = await _project(hooks)
    r = await hooks.client.post(
        f"/api/projects/{pid}/webhooks",
        json={"url": receiver.url, "format": "slack", "events": ["run.succeeded"]},
        headers=owner,
    )
    assert r.status_code == 201
    # a failed run is not what this hook asked for; the next project's success is
    await hooks.publish(
        new_event(
            TrainingCompleted(model_version="v1", digest="d" * 64),
            project_id=uuid.UUID(pid),
            run_id=uuid.UUID(rid),
        )
    )
    await hooks.publish(
        new_event(
            ModelDeployed(deployment_id=uuid.uuid4(), endpoint="/api/x"),
            project_id=uuid.UUID(pid),
            run_id=uuid.UUID(rid),
        )
    )
    await wait_until(lambda: receiver.requests, timeout=10)
    headers, body = receiver.requests[0]
    assert headers["x-aidp-event"] == "run.succeeded"
    text = json.loads(body)["text"]
    assert text.startswith("aidp: project *p* run #1 succeeded")
    assert set(json.loads(body)) == {"text"}
    with hooks.app.state.runtime.db.session() as s:
        kinds = [d.kind for d in s.exec(select(WebhookDelivery))]
    assert kinds == ["run.succeeded"]  # model.deployed not asked for: nothing staged


async def test_urls_follow_the_ssrf_rules(harness: Harness) -> None:
    """Default settings: https only, and no host resolving to an internal address."""
    _, owner = harness.login("owner@example.com")
    pid = (await harness.create_project(owner))["id"]
    for url, words in (
        ("http://example.com/hook", "only https"),
        ("https://127.0.0.1/hook", "internal address 127.0.0.1"),
        ("https://localhost:8443/hook", "internal address"),
        ("https://10.1.2.3/x", "internal address"),
        ("https://[::ffff:169.254.169.254]/", "internal address"),
        ("https://user:pw@example.com/", "user info"),
        ("ftp://example.com/x", "only https"),
    ):
        r = await harness.client.post(
            f"/api/projects/{pid}/webhooks", json={"url": url}, headers=owner
        )
        assert r.status_code == 422, (url, r.text)
        assert words in r.json()["error"]["message"], (url, r.text)
    r = await harness.client.post(
        f"/api/projects/{pid}/webhooks",
        json={"url": "https://example.com/x", "events": ["run.exploded"]},
        headers=owner,
    )
    assert r.status_code == 422


async def test_only_editors_see_or_change_webhooks(hooks: Harness, receiver: Receiver) -> None:
    owner, pid, _ = await _project(hooks)
    hook = (
        await hooks.client.post(
            f"/api/projects/{pid}/webhooks", json={"url": receiver.url}, headers=owner
        )
    ).json()
    await hooks.add_member(pid, owner, "viewer@example.com", "viewer")
    _, viewer = hooks.login("viewer@example.com")
    _, stranger = hooks.login("stranger@example.com")
    base = f"/api/projects/{pid}/webhooks"
    for headers, code in ((viewer, 403), (stranger, 404)):
        assert (await hooks.client.get(base, headers=headers)).status_code == code
        r = await hooks.client.get(f"{base}/{hook['id']}/deliveries", headers=headers)
        assert r.status_code == code
        assert (await hooks.client.delete(f"{base}/{hook['id']}", headers=headers)).status_code == (
            code
        )
    # another project's owner cannot reach this hook through their own project
    _, other = hooks.login("other@example.com")
    other_pid = (await hooks.create_project(other))["id"]
    r = await hooks.client.delete(f"/api/projects/{other_pid}/webhooks/{hook['id']}", headers=other)
    assert r.status_code == 404
    assert (await hooks.client.delete(f"{base}/{hook['id']}", headers=owner)).status_code == 204
    assert (await hooks.client.get(base, headers=owner)).json() == []


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    from services.gateway.webhooks import sign

    expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign("k", 1700000000, b"{}") == f"sha256={expected}"


def test_migration_matches_the_models(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import MetaData

    from services.gateway import webhook_models
    from services.gateway.main import MIGRATIONS
    from shared.db import Database

    tables = ("gateway_webhooks", "gateway_webhook_deliveries")
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate(MIGRATIONS, service="gateway")
    ours = MetaData()
    for table in webhook_models.SQLModel.metadata.tables.values():
        if table.name in tables:
            table.to_metadata(ours)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), ours)
    db.dispose()
    relevant = [d for d in diff if any(f"'{t}'" in repr(d) or f"<{t}>" in repr(d) for t in tables)]
    assert relevant == []


def test_urls_are_listed_masked() -> None:
    from services.gateway.webhooks import masked_url

    slack = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"
    assert masked_url(slack) == "https://hooks.slack.com/services/T0…"
    assert masked_url("https://[::1]:8443/h") == "https://[::1]:8443/h"
