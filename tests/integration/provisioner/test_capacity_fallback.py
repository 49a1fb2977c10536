"""Capacity fallback (issue 19 item 5) against the local IDC API server: an instance type
without capacity moves provisioning to the spec's next instance type, then to the next
provider, with a ProvisioningProgress saying why; the price caps hold for every choice.

Nodes are real sshd hosts (the idc one behind a real jump host); the environment builder is
the harness's fake (Ansible is covered by test_idc.py): what matters here is which choice
the nodes came from.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from services.provisioner.settings import ProvisionerSettings
from shared.events import ProjectCreated, RunCancelled
from shared.secrets import InMemoryVault
from tests.support.idc_server import IdcCloud, jumped_cloud
from tests.support.sshd_hosts import SshHost, generate_key, private_link, sshd_hosts
from tests.unit.provisioner.harness import FakeEnvBuilder, Harness, spec_dict

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("namespaced_hosts")]


@pytest.fixture(scope="module")
def network() -> Iterator[tuple[SshHost, SshHost, SshHost, str]]:
    """(jump host, idc node host, a user's own ssh host, the idc node's private IP)."""
    with sshd_hosts(3) as (jump, node, own):
        yield jump, node, own, private_link(jump, node)


@pytest.fixture
def cloud(network: tuple[SshHost, SshHost, SshHost, str]) -> Iterator[tuple[IdcCloud, str]]:
    jump, node, _, private_ip = network
    with jumped_cloud(jump, node, private_ip) as made:
        yield made


@pytest.fixture
def settings(
    real_settings: ProvisionerSettings, tmp_path: Any, cloud: tuple[IdcCloud, str]
) -> ProvisionerSettings:
    _, url = cloud
    return real_settings.model_copy(
        update={
            "idc_api_url": url,
            "idc_token_url": f"{url}/oauth2/token",
            "idc_poll_interval": 0.1,
            "idc_backoff": 0.01,
            "ssh_node_root": str(tmp_path / "ssh-node"),
            "ssh_connect_timeout": 3,
        }
    )


def _owner(cloud: IdcCloud) -> tuple[InMemoryVault, uuid.UUID]:
    vault, owner = InMemoryVault(), uuid.uuid4()
    vault.put_user_secret(str(owner), "ITAC_CLIENT_ID", cloud.client_id)
    vault.put_user_secret(str(owner), "ITAC_CLIENT_SECRET", cloud.client_secret)
    vault.put_user_secret(str(owner), "ITAC_CLOUDACCOUNT", cloud.cloudaccount)
    return vault, owner


def _created_types(made: IdcCloud) -> list[str]:
    return [i["spec"]["instanceType"] for i in made.live_instances()]


async def test_no_capacity_for_the_first_type_uses_the_second(
    settings: ProvisionerSettings, cloud: tuple[IdcCloud, str]
) -> None:
    made, _ = cloud
    made.no_capacity_types = {"vm-spr-lrg"}
    vault, owner = _owner(made)
    spec = spec_dict(provider="idc", instance_type=["vm-spr-lrg", "vm-spr-sml"])
    async with Harness(settings, vault=vault, builder=FakeEnvBuilder()) as h:
        project, run = uuid.uuid4(), uuid.uuid4()
        await h.publish(ProjectCreated(owner_id=owner, spec=spec), project_id=project, run_id=run)
        ready = (await h.wait_for("NodesReady", run, timeout=120)).payload
        assert ready["nodes"][0]["provider"] == "idc", ready
        assert _created_types(made) == ["vm-spr-sml"]
        refused = [
            p for m, p, c in made.log if m == "POST" and p.endswith("/instances") and c == 429
        ]
        assert len(refused) == 1  # sold out is not a rate limit: asked once, not retried
        fallback = [e.payload for e in h.of("ProvisioningProgress", run)]
        fallback = [p for p in fallback if p["stage"] == "fallback"]
        assert len(fallback) == 1
        message = fallback[0]["message"]
        assert message.startswith("idc vm-spr-lrg has no capacity") and "vm-spr-sml" in message
        assert "insufficient capacity" in message
        with h.provisioner.runtime.db.session() as s:
            from services.provisioner.models import RunNodes

            row = s.get(RunNodes, run)
            assert row is not None and row.choice == 1 and row.hourly_usd == pytest.approx(0.36)
        await h.publish(RunCancelled(), project_id=project, run_id=run)
        await h.wait_for("NodesReleased", run, timeout=60)
    assert made.live_instances() == [] and made.keys == {}


async def test_no_capacity_anywhere_in_the_cloud_falls_back_to_ssh(
    settings: ProvisionerSettings,
    cloud: tuple[IdcCloud, str],
    network: tuple[SshHost, SshHost, SshHost, str],
    tmp_path: Any,
) -> None:
    made, _ = cloud
    own = network[2]
    made.no_capacity_types = {"vm-spr-lrg", "vm-spr-sml"}
    vault, owner = _owner(made)
    private, public = generate_key(tmp_path / "own_key")
    own.authorize(public)
    vault.put_user_secret(str(owner), "OWN_KEY", private)
    spec = spec_dict(
        provider="idc",
        instance_type=["vm-spr-lrg", "vm-spr-sml"],
        fallback=["ssh"],
        hosts=[{"address": own.address, "user": "root", "identity": "OWN_KEY"}],
    )
    async with Harness(settings, vault=vault, builder=FakeEnvBuilder()) as h:
        project, run = uuid.uuid4(), uuid.uuid4()
        await h.publish(ProjectCreated(owner_id=owner, spec=spec), project_id=project, run_id=run)
        ready = (await h.wait_for("NodesReady", run, timeout=120)).payload
        [node] = ready["nodes"]
        assert node["provider"] == "ssh" and node["address"] == own.address, ready
        stages = [e.payload for e in h.of("ProvisioningProgress", run)]
        moves = [p["message"] for p in stages if p["stage"] == "fallback"]
        assert [m.split(" has no capacity")[0] for m in moves] == [
            "idc vm-spr-lrg",
            "idc vm-spr-sml",
        ]
        assert moves[-1].endswith("trying ssh")
        assert made.live_instances() == []  # nothing billed is left behind
        await h.publish(RunCancelled(), project_id=project, run_id=run)
        released = (await h.wait_for("NodesReleased", run, timeout=60)).payload
    assert released["nodes"] == ["ssh-0"]


async def test_the_last_choice_without_capacity_fails_the_run(
    settings: ProvisionerSettings, cloud: tuple[IdcCloud, str]
) -> None:
    made, _ = cloud
    made.no_capacity_types = {"vm-spr-lrg", "vm-spr-sml"}
    vault, owner = _owner(made)
    spec = spec_dict(provider="idc", instance_type=["vm-spr-lrg", "vm-spr-sml"])
    async with Harness(settings, vault=vault, builder=FakeEnvBuilder()) as h:
        run = uuid.uuid4()
        created = ProjectCreated(owner_id=owner, spec=spec)
        await h.publish(created, project_id=uuid.uuid4(), run_id=run)
        failed = (await h.wait_for("NodesFailed", run, timeout=60)).payload
    assert failed["step"] == "nodes" and failed["retryable"] is True
    assert "no capacity" in failed["reason"] and "vm-spr-sml" in failed["reason"]
    assert made.live_instances() == [] and made.keys == {}


async def test_price_caps_apply_to_every_choice(
    settings: ProvisionerSettings, cloud: tuple[IdcCloud, str]
) -> None:
    """A fallback is no way around a limit: an over-budget later choice refuses the run
    before anything is created, naming that choice."""
    made, _ = cloud
    vault, owner = _owner(made)
    spec = spec_dict(provider="idc", instance_type=["vm-spr-sml", "vm-spr-lrg"], max_hourly_usd=1.0)
    async with Harness(settings, vault=vault, builder=FakeEnvBuilder()) as h:
        run = uuid.uuid4()
        created = ProjectCreated(owner_id=owner, spec=spec)
        await h.publish(created, project_id=uuid.uuid4(), run_id=run)
        failed = (await h.wait_for("NodesFailed", run, timeout=60)).payload
    assert failed["step"] == "check"
    assert failed["reason"].startswith("idc vm-spr-lrg: 1 x vm-spr-lrg costs $")
    assert not any(path.endswith("/instances") for _, path, _ in made.log)


async def test_submit_check_refuses_a_fallback_over_the_platform_cap(
    settings: ProvisionerSettings, cloud: tuple[IdcCloud, str]
) -> None:
    """The gateway's submit-time check (422) covers every choice, naming the refused one."""
    import httpx
    from pydantic import SecretStr

    from tests.support.service_auth import as_service

    made, _ = cloud
    platform = settings.model_copy(
        update={
            "idc_client_id": made.client_id,
            "idc_client_secret": SecretStr(made.client_secret),
            "idc_cloudaccount": made.cloudaccount,
            "cloud_platform_credential_users": "all",
            "cloud_max_price_per_hour": 1.0,
        }
    )
    owner = str(uuid.uuid4())
    async with Harness(platform, builder=FakeEnvBuilder()) as h:
        assert h.app is not None
        transport = httpx.ASGITransport(app=h.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://p", auth=as_service("provisioner")
        ) as api:

            async def check(**resources: Any) -> httpx.Response:
                spec = spec_dict(**resources)
                return await api.post(
                    "/internal/cloud-access/check", json={"user_id": owner, "spec": spec}
                )

            over = await check(provider="idc", instance_type=["vm-spr-sml", "vm-spr-lrg"])
            fits = await check(provider="idc", instance_type=["vm-spr-sml", "vm-spr-med"])
            via_fallback = await check(
                provider="ssh",
                hosts=[{"address": "10.0.0.9"}],
                fallback=["idc"],
                instance_type="vm-spr-lrg",
            )
    assert over.status_code == 422, over.text
    message = over.json()["error"]["message"]
    assert message.startswith("idc vm-spr-lrg: ") and "platform's cap of $1.00" in message
    assert fits.status_code == 204, fits.text
    assert via_fallback.status_code == 422 and "vm-spr-lrg" in via_fallback.text
    assert made.live_instances() == []


# -- node replacement (issue 19 item 4): the cloud deleted the instance mid-run ------------


async def test_a_deleted_instance_is_replaced_by_a_new_one(
    settings: ProvisionerSettings, cloud: tuple[IdcCloud, str]
) -> None:
    from shared.events import NodeLost

    made, _ = cloud
    vault, owner = _owner(made)
    spec = spec_dict(provider="idc", instance_type="vm-spr-sml")
    async with Harness(settings, vault=vault, builder=FakeEnvBuilder()) as h:
        project, run = uuid.uuid4(), uuid.uuid4()
        await h.publish(ProjectCreated(owner_id=owner, spec=spec), project_id=project, run_id=run)
        await h.wait_for("NodesReady", run, timeout=120)
        [first] = made.live_instances()
        made.preempt(first["metadata"]["resourceId"])  # the cloud took it back
        lost = NodeLost(nodes=["idc-0"], reason="node idc-0 does not answer", resume_step=5)
        await h.publish(lost, project_id=project, run_id=run)
        replaced = await _wait(h, "NodesReplaced", run)
        [second] = made.live_instances()
        assert second["metadata"]["resourceId"] != first["metadata"]["resourceId"]
        assert second["metadata"]["labels"]["aidp-run"] == str(run)
        assert replaced["replaced"] == ["idc-0"] and replaced["replacements"] == 1
        [node] = replaced["nodes"]
        assert node["name"] == "idc-0" and node["provider"] == "idc"
        stages = [e.payload["stage"] for e in h.of("ProvisioningProgress", run)]
        assert "replace" in stages
        await h.publish(RunCancelled(), project_id=project, run_id=run)
        await h.wait_for("NodesReleased", run, timeout=60)
    assert made.live_instances() == [] and made.keys == {}


async def test_a_loss_past_the_replacement_budget_fails(
    settings: ProvisionerSettings, cloud: tuple[IdcCloud, str]
) -> None:
    from shared.events import NodeLost

    made, _ = cloud
    vault, owner = _owner(made)
    budget = settings.model_copy(update={"max_node_replacements": 0})
    spec = spec_dict(provider="idc", instance_type="vm-spr-sml")
    async with Harness(budget, vault=vault, builder=FakeEnvBuilder()) as h:
        project, run = uuid.uuid4(), uuid.uuid4()
        await h.publish(ProjectCreated(owner_id=owner, spec=spec), project_id=project, run_id=run)
        await h.wait_for("NodesReady", run, timeout=120)
        lost = NodeLost(nodes=["idc-0"], reason="node idc-0 does not answer")
        await h.publish(lost, project_id=project, run_id=run)
        failed = (await h.wait_for("NodesFailed", run, timeout=30)).payload
        assert failed["step"] == "replace" and "AIDP_MAX_NODE_REPLACEMENTS" in failed["reason"]
        assert len(made.live_instances()) == 1  # nothing new was created
        await h.publish(RunCancelled(), project_id=project, run_id=run)
        await _wait(h, "NodesReleased", run, timeout=60, failed_ok=True)
    assert made.live_instances() == []


async def _wait(
    h: Harness, event_type: str, run: uuid.UUID, timeout: float = 120, failed_ok: bool = False
) -> dict:
    """The first ``event_type`` of the run (NodesFailed fails the test with its reason,
    unless ``failed_ok``)."""
    import asyncio

    async with asyncio.timeout(timeout):
        while True:
            if hits := h.of(event_type, run):
                return hits[0].payload
            if (failed := h.of("NodesFailed", run)) and not failed_ok:
                raise AssertionError(failed[0].payload)
            await asyncio.sleep(0.1)
