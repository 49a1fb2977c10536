"""The platform's cloud credentials go only to allowed users, within the platform's price
caps (issue 12 item 6), against the local IDC API server (real HTTP, OAuth, instances).

Instances here never turn Ready (no sshd behind them): what matters is whether the run got
past the ``check`` step and created an instance, and on which account.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from services.provisioner.settings import ProvisionerSettings
from shared.events import ProjectCreated, RunCancelled
from shared.secrets import InMemoryVault
from tests.support.idc_server import IdcCloud, idc_server
from tests.support.service_auth import as_service
from tests.unit.provisioner.harness import FakeEnvBuilder, Harness, spec_dict

# Generous: on a loaded 2-core machine one provisioning pass has taken over a minute.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def cloud() -> Iterator[tuple[IdcCloud, str]]:
    made = IdcCloud(ready_after=10**9)  # instances stay Provisioning: nothing to reach
    with idc_server(made) as url:
        yield made, url


@pytest.fixture
def platform_settings(
    real_settings: ProvisionerSettings, cloud: tuple[IdcCloud, str]
) -> ProvisionerSettings:
    """The platform holds credentials of its own (the IDC server's account)."""
    made, url = cloud
    return real_settings.model_copy(
        update={
            "idc_api_url": url,
            "idc_token_url": f"{url}/oauth2/token",
            "idc_client_id": made.client_id,
            "idc_client_secret": SecretStr(made.client_secret),
            "idc_cloudaccount": made.cloudaccount,
            "idc_poll_interval": 0.1,
            "idc_backoff": 0.01,
        }
    )


def _spec(**kw: Any) -> dict[str, Any]:
    return spec_dict(provider="idc", instance_type="vm-spr-sml", **kw)  # $0.36/hour a node


async def _start(h: Harness, owner: uuid.UUID, spec: dict[str, Any]) -> uuid.UUID:
    run = uuid.uuid4()
    await h.publish(ProjectCreated(owner_id=owner, spec=spec), project_id=uuid.uuid4(), run_id=run)
    return run


async def _instance_of(made: IdcCloud, run: uuid.UUID, timeout: float = 30) -> dict[str, Any]:
    """The instance the run created (waits for it)."""
    async with asyncio.timeout(timeout):
        while True:
            for instance in made.live_instances():
                if instance["metadata"]["labels"].get("aidp-run") == str(run):
                    return instance
            await asyncio.sleep(0.05)


async def _release(h: Harness, *runs: uuid.UUID) -> None:
    """Cancel runs still provisioning and wait until their instances are gone, so the
    service never stops with a provisioning job in flight (each test ends clean)."""
    for run in runs:
        await h.publish(RunCancelled(), project_id=uuid.uuid4(), run_id=run)
    for run in runs:
        await h.wait_for("NodesReleased", run)


def _created(made: IdcCloud) -> int:
    return sum(
        1 for method, path, _ in made.log if method == "POST" and path.endswith("/instances")
    )


async def test_unlisted_user_without_credentials_fails_before_anything_is_created(
    platform_settings: ProvisionerSettings, cloud: tuple[IdcCloud, str]
) -> None:
    made, _ = cloud
    assert platform_settings.cloud_platform_credential_users == "none"  # the default
    async with Harness(platform_settings, builder=FakeEnvBuilder()) as h:
        run = await _start(h, uuid.uuid4(), _spec())
        failed = (await h.wait_for("NodesFailed", run, timeout=30)).payload
    assert failed["step"] == "check" and failed["retryable"] is False
    reason = failed["reason"]
    assert "ITAC_CLIENT_ID, ITAC_CLIENT_SECRET and ITAC_CLOUDACCOUNT" in reason
    assert "AIDP_CLOUD_PLATFORM_CREDENTIAL_USERS" in reason
    assert made.live_instances() == [] and _created(made) == 0
    assert made.tokens_issued == 0  # the platform's account was never even logged into


async def test_user_allowed_by_the_setting_provisions_on_the_platform_account(
    platform_settings: ProvisionerSettings, cloud: tuple[IdcCloud, str]
) -> None:
    made, _ = cloud
    allowed, other = uuid.uuid4(), uuid.uuid4()
    settings = platform_settings.model_copy(
        update={"cloud_platform_credential_users": f"{uuid.uuid4()}, {allowed}"}
    )
    async with Harness(settings, builder=FakeEnvBuilder()) as h:
        run = await _start(h, allowed, _spec())
        instance = await _instance_of(made, run)
        refused = await _start(h, other, _spec())
        failed = (await h.wait_for("NodesFailed", refused)).payload
        await h.publish(RunCancelled(), project_id=uuid.uuid4(), run_id=run)
        await h.wait_for("NodesReleased", run)
    assert instance["spec"]["instanceType"] == "vm-spr-sml"
    assert "ITAC_CLIENT_SECRET" in failed["reason"]
    assert made.live_instances() == []  # released with the account that created it


async def test_admin_list_allows_a_user_and_every_change_is_recorded(
    platform_settings: ProvisionerSettings, cloud: tuple[IdcCloud, str]
) -> None:
    made, _ = cloud
    user, admin = uuid.uuid4(), uuid.uuid4()
    async with Harness(platform_settings, builder=FakeEnvBuilder()) as h:
        assert h.app is not None
        transport = httpx.ASGITransport(app=h.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://p", auth=as_service("provisioner")
        ) as api:
            before = await _start(h, user, _spec())
            await h.wait_for("NodesFailed", before)
            put = await api.put(
                "/internal/cloud-access",
                json={"users": [{"user_id": str(user), "email": "u@example.com"}],
                      "actor_id": str(admin)},
            )  # fmt: skip
            bad = await api.put("/internal/cloud-access", json={"users": [{"user_id": "x"}]})
            after = await _start(h, user, _spec())
            await _instance_of(made, after)
            cleared = await api.put("/internal/cloud-access", json={"users": []})
            changes = (await api.get("/internal/cloud-access/changes")).json()["changes"]
            third = await _start(h, user, _spec())
            await h.wait_for("NodesFailed", third)
            await _release(h, after)
    assert put.status_code == 200 and bad.status_code == 422
    body = put.json()
    assert [u["user_id"] for u in body["users"]] == [str(user)]
    assert body["users"][0]["granted_by"] == str(admin)
    assert body["setting"] == {"all": False, "user_ids": []}
    assert cleared.json()["users"] == []
    assert len(changes) == 2  # newest first: the clearing, then the grant
    assert changes[1]["actor_id"] == str(admin) and changes[1]["before"] == []
    assert changes[1]["after"][0]["email"] == "u@example.com"
    assert changes[0]["before"][0]["user_id"] == str(user) and changes[0]["after"] == []


async def test_a_spec_cannot_raise_the_platform_cap(
    platform_settings: ProvisionerSettings, cloud: tuple[IdcCloud, str]
) -> None:
    made, _ = cloud
    owner = uuid.uuid4()
    settings = platform_settings.model_copy(
        update={"cloud_platform_credential_users": "all", "cloud_max_price_per_hour": 0.5}
    )
    async with Harness(settings, builder=FakeEnvBuilder()) as h:
        asks_more = await _start(h, owner, _spec(max_hourly_usd=5))
        no_cap_two_nodes = await _start(h, owner, _spec(nodes=2))  # 2 x 0.36 > 0.5
        first = (await h.wait_for("NodesFailed", asks_more)).payload
        second = (await h.wait_for("NodesFailed", no_cap_two_nodes)).payload
        assert h.app is not None
        transport = httpx.ASGITransport(app=h.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://p", auth=as_service("provisioner")
        ) as api:
            check = await api.post(
                "/internal/cloud-access/check",
                json={"user_id": str(owner), "spec": _spec(max_hourly_usd=5)},
            )
            fits = await api.post(
                "/internal/cloud-access/check",
                json={"user_id": str(owner), "spec": _spec(max_hourly_usd=0.4)},
            )
    assert first["step"] == "check"
    assert "max_hourly_usd of $5.00 is above the platform's cap of $0.50" in first["reason"]
    assert "$0.72/hour, over the platform's cap of $0.50" in second["reason"]
    assert check.status_code == 422 and "platform's cap" in check.json()["error"]["message"]
    assert fits.status_code == 204
    assert made.live_instances() == [] and _created(made) == 0


async def test_own_credentials_are_bounded_by_the_spec_only(
    platform_settings: ProvisionerSettings, cloud: tuple[IdcCloud, str]
) -> None:
    made, _ = cloud
    vault, owner = InMemoryVault(), uuid.uuid4()
    vault.put_user_secret(str(owner), "ITAC_CLIENT_ID", made.client_id)
    vault.put_user_secret(str(owner), "ITAC_CLIENT_SECRET", made.client_secret)
    vault.put_user_secret(str(owner), "ITAC_CLOUDACCOUNT", made.cloudaccount)
    settings = platform_settings.model_copy(
        update={"cloud_max_price_per_hour": 0.1, "cloud_max_price_per_user_hour": 0.1}
    )
    async with Harness(settings, builder=FakeEnvBuilder(), vault=vault) as h:
        run = await _start(h, owner, _spec(max_hourly_usd=5))
        await _instance_of(made, run)  # not on the platform's account: its caps do not apply
        with h.provisioner.runtime.db.session() as s:
            from services.provisioner.models import RunNodes

            row = s.get(RunNodes, run)
            assert row is not None and row.credential_source == "user"
            assert row.hourly_usd == pytest.approx(0.36)
        await _release(h, run)


async def test_a_users_runs_together_stay_within_the_per_user_cap(
    platform_settings: ProvisionerSettings, cloud: tuple[IdcCloud, str]
) -> None:
    made, _ = cloud
    owner, someone_else = uuid.uuid4(), uuid.uuid4()
    settings = platform_settings.model_copy(
        update={"cloud_platform_credential_users": "all", "cloud_max_price_per_user_hour": 0.5}
    )
    async with Harness(settings, builder=FakeEnvBuilder()) as h:
        first = await _start(h, owner, _spec())
        await _instance_of(made, first)  # $0.36/hour, still provisioning
        second = await _start(h, owner, _spec())  # would make $0.72/hour
        failed = (await h.wait_for("NodesFailed", second)).payload
        theirs = await _start(h, someone_else, _spec())  # another user's budget
        await _instance_of(made, theirs)
        await h.publish(RunCancelled(), project_id=uuid.uuid4(), run_id=first)
        await h.wait_for("NodesReleased", first)
        third = await _start(h, owner, _spec())  # the first one ended: room again
        await _instance_of(made, third)
        labels = sorted(i["metadata"]["labels"]["aidp-run"] for i in made.live_instances())
        await _release(h, theirs, third)
    assert failed["step"] == "check"
    assert "other active runs on the platform's cloud account $0.36/hour" in failed["reason"]
    assert "cap of $0.50/hour per user" in failed["reason"]
    assert labels == sorted([str(theirs), str(third)])
