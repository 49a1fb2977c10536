"""``/api/admin/cloud-access``: platform admins only; the list lives in the (real, in-process)
provisioner, which records every change (issue 12 item 6)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from services.provisioner.settings import ProvisionerSettings
from shared.contracts import cloud_access as contract
from shared.internal import register_inproc, unregister_inproc
from tests.unit.gateway.conftest import SPEC, Harness
from tests.unit.provisioner.harness import FakeEnvBuilder
from tests.unit.provisioner.harness import Harness as ProvisionerHarness


@pytest.fixture
async def provisioner(harness: Harness, tmp_path: Path) -> AsyncIterator[ProvisionerHarness]:
    settings = ProvisionerSettings(
        data_dir=tmp_path / "provisioner",
        bus_url="memory://admin-cloud-access",
        reaper_interval=3600,
        cloud_max_price_per_hour=2.0,
        # The platform's own cloud account (never called here: the check creates nothing).
        ITAC_CLOUDACCOUNT="000000000000",
        ITAC_CLIENT_ID="platform-client",
        ITAC_CLIENT_SECRET="platform-secret",
    )
    async with ProvisionerHarness(settings, builder=FakeEnvBuilder()) as h:
        name = f"provisioner-{uuid.uuid4().hex[:6]}"
        register_inproc(name, h.app)
        downstream = harness.app.state.gateway.downstream.provisioner
        downstream.url, downstream._client = f"inproc://{name}", None
        yield h
        unregister_inproc(name)


async def test_only_admins_read_or_change_cloud_access(
    harness: Harness, provisioner: ProvisionerHarness
) -> None:
    c = harness.client
    bob_id, bob = harness.login("bob@example.com")
    admin_id, admin = harness.login("admin@example.com", admin=True)
    for method, path in (
        ("GET", "/api/admin/cloud-access"),
        ("PUT", "/api/admin/cloud-access"),
        ("GET", "/api/admin/cloud-access/changes"),
    ):
        body = {"users": [str(bob_id)]} if method == "PUT" else None
        denied = await c.request(method, path, json=body, headers=bob)
        assert denied.status_code == 403, (path, denied.text)
        anonymous = await c.request(method, path, json=body)
        assert anonymous.status_code == 401
    assert provisioner.provisioner.cloud_access is not None
    assert not provisioner.provisioner.cloud_access.allows(bob_id)

    put = await c.put("/api/admin/cloud-access", json={"users": ["bob@example.com"]}, headers=admin)
    assert put.status_code == 200, put.text
    body = put.json()
    assert [(u["user_id"], u["email"]) for u in body["users"]] == [(str(bob_id), "bob@example.com")]
    assert body["max_price_per_hour"] == 2.0 and body["setting"]["all"] is False
    assert provisioner.provisioner.cloud_access.allows(bob_id)

    unknown = await c.put(
        "/api/admin/cloud-access", json={"users": ["nobody@example.com"]}, headers=admin
    )
    assert unknown.status_code == 422 and "nobody@example.com" in unknown.text
    extra = await c.put("/api/admin/cloud-access", json={"users": [], "all": True}, headers=admin)
    assert extra.status_code == 422
    assert provisioner.provisioner.cloud_access.allows(bob_id)  # nothing changed

    got = await c.get("/api/admin/cloud-access", headers=admin)
    assert got.json()["users"][0]["granted_by"] == str(admin_id)
    # the public answer is the contract's, whole (its keys are the same as before)
    assert set(got.json()) == set(contract.AccessPolicy.model_fields)
    assert contract.AccessPolicy.model_validate(got.json()).model_dump(mode="json") == got.json()
    changes = (await c.get("/api/admin/cloud-access/changes", headers=admin)).json()["changes"]
    assert len(changes) == 1 and changes[0]["actor_id"] == str(admin_id)
    assert changes[0]["after"][0]["user_id"] == str(bob_id)


async def test_a_spec_above_the_platform_price_cap_is_refused_at_submit(
    harness: Harness, provisioner: ProvisionerHarness
) -> None:
    """A spec cannot raise the platform's cap: 422 before any project or run exists."""
    c = harness.client
    _, bob = harness.login("bob@example.com")
    _, admin = harness.login("admin@example.com", admin=True)
    allow = await c.put(
        "/api/admin/cloud-access", json={"users": ["bob@example.com"]}, headers=admin
    )
    assert allow.status_code == 200  # bob runs on the platform's credentials, under its caps
    idc = {"provider": "idc", "instance_type": "vm-spr-sml"}  # $0.36/hour a node
    spec = {**SPEC, "name": "cloud", "resources": {**idc, "max_hourly_usd": 5}}
    refused = await c.post("/api/projects", json={"name": "cloud", "spec": spec}, headers=bob)
    assert refused.status_code == 422, refused.text
    assert "cap" in refused.json()["error"]["message"]
    assert (await c.get("/api/projects", headers=bob)).json() == []

    within = {**spec, "resources": {**idc, "max_hourly_usd": 1}}
    created = await c.post("/api/projects", json={"name": "cloud", "spec": within}, headers=bob)
    assert created.status_code == 201, created.text
    project_id = created.json()["id"]
    rerun = await c.post(f"/api/projects/{project_id}/runs", json={"spec": spec}, headers=bob)
    assert rerun.status_code == 422, rerun.text
    runs = (await c.get(f"/api/projects/{project_id}/runs", headers=bob)).json()
    assert len(runs) == 1  # only run 1


def _provisioner_out_of_contract() -> FastAPI:
    """A provisioner that answers bodies its contract does not allow (a stand-in: the real
    one declares its answers with ``response_model`` and cannot)."""
    app = FastAPI()
    bad: dict[str, Any] = {"users": "everyone", "max_price_per_hour": "cheap"}

    @app.get(contract.ACCESS_PATH)
    def show() -> dict[str, Any]:
        return bad

    @app.put(contract.ACCESS_PATH)
    def replace() -> dict[str, Any]:
        return bad

    @app.get(contract.CHANGES_PATH)
    def changes() -> dict[str, Any]:
        return {"changes": [{"at": "yesterday", "before": None}]}

    return app


async def test_a_provisioner_answer_out_of_contract_is_a_502(harness: Harness) -> None:
    name = f"provisioner-bad-{uuid.uuid4().hex[:6]}"
    register_inproc(name, _provisioner_out_of_contract())
    downstream = harness.app.state.gateway.downstream.provisioner
    downstream.url, downstream._client = f"inproc://{name}", None
    bob_id, _ = harness.login("bob@example.com")
    _, admin = harness.login("admin@example.com", admin=True)
    try:
        for method, path in (
            ("GET", "/api/admin/cloud-access"),
            ("PUT", "/api/admin/cloud-access"),
            ("GET", "/api/admin/cloud-access/changes"),
        ):
            body = {"users": [str(bob_id)]} if method == "PUT" else None
            answer = await harness.client.request(method, path, json=body, headers=admin)
            assert answer.status_code == 502, (path, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "provider_error"
            assert error["message"] == "provisioner service answered an unexpected body"
            assert "everyone" not in answer.text  # never passed on as it came
    finally:
        unregister_inproc(name)
