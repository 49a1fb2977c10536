"""The idc driver end to end against a local server speaking the documented API, with the
nodes being real sshd hosts behind a real SSH jump host (network namespaces)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.provisioner.drivers.idc import IdcDriver
from services.provisioner.drivers.idc_api import IdcClient, IdcCredentials
from services.provisioner.settings import ProvisionerSettings
from shared.events import ProjectCreated, RunCancelled
from shared.secrets import InMemoryVault
from tests.support.idc_server import IdcCloud, jumped_cloud
from tests.support.sshd_hosts import SshHost, private_link, sshd_hosts
from tests.unit.provisioner.harness import Harness, spec_dict

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.usefixtures("namespaced_hosts"),
]


@pytest.fixture(scope="module")
def network() -> Iterator[tuple[SshHost, SshHost, str]]:
    """(jump host, node host, the node's private IP reachable only through the jump)."""
    with sshd_hosts(2) as (jump, node):
        yield jump, node, private_link(jump, node)


@pytest.fixture
def cloud(network: tuple[SshHost, SshHost, str]) -> Iterator[tuple[IdcCloud, str]]:
    jump, node, private_ip = network
    with jumped_cloud(jump, node, private_ip) as made:
        yield made


@pytest.fixture
def idc_settings(
    real_settings: ProvisionerSettings, shared_env_dir: Path, cloud: tuple[IdcCloud, str]
) -> ProvisionerSettings:
    made, url = cloud
    return real_settings.model_copy(
        update={
            "idc_api_url": url,
            "idc_token_url": f"{url}/oauth2/token",
            "idc_poll_interval": 0.1,
            "idc_backoff": 0.01,
            "ssh_node_root": str(shared_env_dir / "ssh-node"),
            "package_source": "push",
            "always_run_playbook": True,
            "ssh_connect_timeout": 3,
        }
    )


def _vault(cloud: IdcCloud) -> tuple[InMemoryVault, uuid.UUID]:
    """The owner's own cloud credentials, stored as their secrets."""
    vault, owner = InMemoryVault(), uuid.uuid4()
    vault.put_user_secret(str(owner), "ITAC_CLIENT_ID", cloud.client_id)
    vault.put_user_secret(str(owner), "ITAC_CLIENT_SECRET", cloud.client_secret)
    vault.put_user_secret(str(owner), "ITAC_CLOUDACCOUNT", cloud.cloudaccount)
    return vault, owner


def _spec(**kw: object) -> dict:
    return spec_dict(provider="idc", instance_type="vm-spr-sml", **kw)


@pytest.mark.slow
async def test_instance_ready_configured_through_jump_host_then_released(
    idc_settings: ProvisionerSettings, cloud: tuple[IdcCloud, str], network: tuple
) -> None:
    made, _ = cloud
    jump, _, private_ip = network
    made.token_ttl = 0.5  # tokens expire while the instance boots: refreshed
    made.ready_after = 12  # polls (0.1 s apart) before Ready
    made.inject("POST", "/v1/cloudaccounts", 429, times=1)
    made.inject("GET", "/v1/cloudaccounts", 503, times=2)
    vault, owner = _vault(made)
    async with Harness(idc_settings, bus_url=idc_settings.bus_url, vault=vault) as h:
        project, run = uuid.uuid4(), uuid.uuid4()
        await h.publish(
            ProjectCreated(owner_id=owner, spec=_spec()), project_id=project, run_id=run
        )
        ready = (await h.wait_for("NodesReady", run, timeout=300)).payload
        node = ready["nodes"][0]
        assert node["address"] == private_ip and node["proxy"] == f"root@{jump.address}:22"
        assert node["provider"] == "idc" and ready["env"]["torch_version"].startswith("2.13.0")
        assert node["run_user"] == "aidp-run"  # the VM's login user can become root
        # the host keys pinned on first contact travel with the node, for the trainer
        assert node["host_keys"] == [" ".join(network[1].host_key_pub.split()[:2])]
        assert node["proxy_host_keys"] == [" ".join(jump.host_key_pub.split()[:2])]
        [instance] = made.live_instances()
        assert instance["metadata"]["labels"]["aidp-run"] == str(run)
        assert instance["spec"]["userData"].startswith("#cloud-config")
        assert made.statuses(429) == 1 and made.statuses(503) == 2 and made.tokens_issued >= 2
        messages = [e.payload["message"] for e in h.of("ProvisioningProgress", run)]
        assert any("idc-0: Find Python" in m for m in messages)  # Ansible ran via the jump

        await h.publish(RunCancelled(), project_id=project, run_id=run)
        released = (await h.wait_for("NodesReleased", run, timeout=60)).payload
    assert released["nodes"] == ["idc-0"]
    assert made.live_instances() == [] and made.keys == {}


async def test_failed_instance_fails_fast_with_the_api_message(
    idc_settings: ProvisionerSettings, cloud: tuple[IdcCloud, str]
) -> None:
    made, _ = cloud
    made.fail_types = {"vm-spr-sml": "insufficient capacity for vm-spr-sml in us-region-2a"}
    vault, owner = _vault(made)
    async with Harness(idc_settings, bus_url=idc_settings.bus_url, vault=vault) as h:
        run = uuid.uuid4()
        created = ProjectCreated(owner_id=owner, spec=_spec())
        await h.publish(created, project_id=uuid.uuid4(), run_id=run)
        failed = (await h.wait_for("NodesFailed", run, timeout=60)).payload
    assert failed["step"] == "nodes"
    assert "insufficient capacity for vm-spr-sml" in failed["reason"]
    assert made.live_instances() == [] and made.keys == {}


async def test_quota_error_tears_down_what_was_created(
    idc_settings: ProvisionerSettings, cloud: tuple[IdcCloud, str]
) -> None:
    made, _ = cloud
    made.max_instances = 1
    vault, owner = _vault(made)
    async with Harness(idc_settings, bus_url=idc_settings.bus_url, vault=vault) as h:
        run = uuid.uuid4()
        created = ProjectCreated(owner_id=owner, spec=_spec(nodes=2))
        await h.publish(created, project_id=uuid.uuid4(), run_id=run)
        failed = (await h.wait_for("NodesFailed", run, timeout=120)).payload
    assert "quota exceeded" in failed["reason"] and failed["retryable"] is False
    assert made.live_instances() == [] and made.keys == {}


async def test_price_limit_refuses_before_creating(
    idc_settings: ProvisionerSettings, cloud: tuple[IdcCloud, str]
) -> None:
    made, _ = cloud
    vault, owner = _vault(made)
    async with Harness(idc_settings, bus_url=idc_settings.bus_url, vault=vault) as h:
        run = uuid.uuid4()
        spec = _spec(max_hourly_usd=0.2)
        await h.publish(
            ProjectCreated(owner_id=owner, spec=spec), project_id=uuid.uuid4(), run_id=run
        )
        failed = (await h.wait_for("NodesFailed", run, timeout=30)).payload
    assert failed["step"] == "check"
    assert "$0.36/hour, over the spec's max_hourly_usd of $0.20" in failed["reason"]
    assert not any(path.endswith("/instances") for _, path, _ in made.log)


async def test_reaper_deletes_instances_of_ended_runs(
    idc_settings: ProvisionerSettings, cloud: tuple[IdcCloud, str]
) -> None:
    made, url = cloud
    creds = IdcCredentials(made.client_id, made.client_secret, made.cloudaccount, "platform")
    live, ended = uuid.uuid4(), uuid.uuid4()
    async with IdcClient(api_url=url, token_url=f"{url}/oauth2/token", credentials=creds) as api:
        for run in (live, ended):
            await api.create_instance(
                {"metadata": {"name": f"aidp-{run.hex[:12]}-0",
                              "labels": {"aidp-run": str(run), "aidp-managed": "true"}},
                 "spec": {"instanceType": "vm-spr-sml", "sshPublicKeyNames": []}}
            )  # fmt: skip
        await api.create_instance(
            {"metadata": {"name": "not-ours", "labels": {}}, "spec": {"instanceType": "x"}}
        )
    vault, owner = _vault(made)
    driver = IdcDriver(idc_settings, secrets=vault, owner_id=owner)
    removed = await driver.reap(active_run_ids=[live])
    assert removed == [f"aidp-{ended.hex[:12]}-0"]
    names = sorted(i["metadata"]["name"] for i in made.live_instances())
    assert names == sorted([f"aidp-{live.hex[:12]}-0", "not-ours"])


async def test_revoked_token_is_refreshed_on_401(cloud: tuple[IdcCloud, str]) -> None:
    made, url = cloud
    creds = IdcCredentials(made.client_id, made.client_secret, made.cloudaccount, "user")
    async with IdcClient(api_url=url, token_url=f"{url}/oauth2/token", credentials=creds) as api:
        assert await api.instances() == []
        made.tokens.clear()  # the server forgets every token
        assert await api.instances() == []
    assert made.statuses(401) == 1 and made.tokens_issued == 2
    assert "client_secret" not in repr(creds) and made.client_secret not in repr(creds)


async def test_wrong_credentials_fail_clearly(cloud: tuple[IdcCloud, str]) -> None:
    made, url = cloud
    creds = IdcCredentials(made.client_id, "wrong", made.cloudaccount, "user")
    from shared.errors import ProviderError

    async with IdcClient(api_url=url, token_url=f"{url}/oauth2/token", credentials=creds) as api:
        with pytest.raises(ProviderError, match="401: invalid client credentials"):
            await api.instances()
