"""One host-key policy for cloud nodes too (issue 17 item 2): the provisioner's idc driver
pins a fresh VM's host key (and its jump host's) on first contact, announces them in the
node's ``NodeInfo`` (``host_keys``, ``proxy_host_keys``), and the trainer checks the node
against exactly those keys, with no known_hosts file of its own (so it works on another
machine). Real sshd hosts in network namespaces behind the local IDC API server."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.provisioner.drivers.base import Node, RunContext
from services.provisioner.drivers.idc import IdcDriver
from services.provisioner.settings import ProvisionerSettings
from services.trainer.nodes.factory import node_executor
from services.trainer.nodes.ssh import SSHExecutor
from services.trainer.settings import TrainerSettings
from shared.errors import ProviderError
from shared.events import EnvInfo, NodeInfo, NodesReady
from shared.secrets import InMemoryVault
from shared.spec import ProjectSpec
from tests.support.idc_server import IdcCloud, jumped_cloud
from tests.support.sshd_hosts import SshHost, generate_key, private_link, sshd_hosts
from tests.unit.provisioner.harness import spec_dict

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.usefixtures("namespaced_hosts"),
]


@pytest.fixture
def network() -> Iterator[tuple[SshHost, SshHost, str]]:
    """(jump host, node host, the node's private IP reachable only through the jump)."""
    with sshd_hosts(2) as (jump, node):
        yield jump, node, private_link(jump, node)


@pytest.fixture
def cloud(network: tuple[SshHost, SshHost, str]) -> Iterator[tuple[IdcCloud, str]]:
    jump, node, private_ip = network
    with jumped_cloud(jump, node, private_ip) as made:
        yield made


async def provision(tmp_path: Path, cloud: tuple[IdcCloud, str]) -> tuple[Node, RunContext]:
    """The provisioner's idc driver creates the run's VM and reaches it once through its
    jump host: both host keys are pinned into the run's own known_hosts."""
    made, url = cloud
    settings = ProvisionerSettings(
        data_dir=tmp_path / "provisioner",
        idc_api_url=url,
        idc_token_url=f"{url}/oauth2/token",
        idc_poll_interval=0.1,
        idc_backoff=0.01,
        ssh_connect_timeout=3,
        ssh_node_root=str(tmp_path / "node"),
    )
    vault, owner = InMemoryVault(), uuid.uuid4()
    vault.put_user_secret(str(owner), "ITAC_CLIENT_ID", made.client_id)
    vault.put_user_secret(str(owner), "ITAC_CLIENT_SECRET", made.client_secret)
    vault.put_user_secret(str(owner), "ITAC_CLOUDACCOUNT", made.cloudaccount)
    driver = IdcDriver(settings, secrets=vault, owner_id=owner)
    run_id = uuid.uuid4()
    ctx = RunContext(
        run_id=run_id,
        project_id=uuid.uuid4(),
        owner_id=owner,
        spec=ProjectSpec.model_validate(spec_dict(provider="idc", instance_type="vm-spr-sml")),
        state_dir=settings.controller_dir() / str(run_id),
        credential_source="user",
    )
    node = await driver.create_node(ctx, 0)
    node = await driver.check_node(ctx, node)
    return node, ctx


def announced(node: Node) -> NodeInfo:
    """The node as the trainer receives it: through a NodesReady event's JSON."""
    event = NodesReady(
        nodes=[node.info(python=sys.executable)],
        env=EnvInfo(lock_hash="c" * 64, python=sys.executable, torch_version="2.13.0"),
    )
    return NodesReady.model_validate_json(event.model_dump_json()).nodes[0]


def trainer_settings(tmp_path: Path, node: Node) -> TrainerSettings:
    """A trainer on "another machine": its own data dir (no known_hosts of the
    provisioner's) and the run's key as its SSH key."""
    assert node.identity_file is not None
    return TrainerSettings(data_dir=tmp_path / "trainer", trainer_ssh_keys=[node.identity_file])


async def test_an_idc_node_is_reached_with_its_announced_key_and_refused_once_it_changes(
    tmp_path: Path, cloud: tuple[IdcCloud, str], network: tuple[SshHost, SshHost, str]
) -> None:
    jump, host, _ = network
    node, _ = await provision(tmp_path, cloud)
    info = announced(node)
    assert info.host_keys == (" ".join(host.host_key_pub.split()[:2]),)
    assert info.proxy_host_keys == (" ".join(jump.host_key_pub.split()[:2]),)

    settings = trainer_settings(tmp_path, node)
    executor = node_executor(info, settings, tenant=uuid.uuid4(), owner=None)
    assert isinstance(executor, SSHExecutor)
    try:
        assert executor.access.known_hosts is None  # no file: exactly the announced keys
        assert (await executor.run(["echo", "hi"]))[:2] == (0, "hi\n")
    finally:
        await executor.close()

    # the VM is "reinstalled": a new host key at the same address
    host.stop()
    key_file = host.root / "ssh_host_ed25519_key"
    key_file.unlink()
    key_file.with_suffix(".pub").unlink()
    _, new_key = generate_key(key_file)
    host.start()
    assert new_key.split()[1] != host.host_key_pub.split()[1]

    executor = node_executor(info, settings, tenant=uuid.uuid4(), owner=None)
    try:
        with pytest.raises(ProviderError, match="host key mismatch") as caught:
            await executor.run(["true"])
    finally:
        await executor.close()
    assert caught.value.code == "host_key_mismatch" and not caught.value.retryable
    assert "announced" in str(caught.value)


async def test_a_jump_host_whose_key_is_not_the_announced_one_is_refused(
    tmp_path: Path, cloud: tuple[IdcCloud, str]
) -> None:
    node, _ = await provision(tmp_path, cloud)
    info = announced(node)
    _, stranger = generate_key(tmp_path / "stranger")
    forged = info.model_copy(update={"proxy_host_keys": (" ".join(stranger.split()[:2]),)})
    executor = node_executor(forged, trainer_settings(tmp_path, node), tenant=uuid.uuid4())
    try:
        with pytest.raises(ProviderError) as caught:
            await executor.run(["true"])
    finally:
        await executor.close()
    assert caught.value.code == "host_key_mismatch" and not caught.value.retryable
