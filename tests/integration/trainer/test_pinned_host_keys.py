"""One host-key policy (issue 17): the trainer checks a user's host against the key the
provisioner pinned on first contact and announced with the node (``NodeInfo.host_keys``);
for a node announced without keys (an older provisioner), against the very file the
provisioner pinned it in, the run owner's known_hosts in ``AIDP_KNOWN_HOSTS_DIR``
(``shared.nodes.user_known_hosts``). A real sshd in a network
namespace; the provisioner's ssh driver pins its key, the trainer's executor checks it."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from services.provisioner.drivers.base import Node, RunContext
from services.provisioner.drivers.ssh import SshDriver
from services.provisioner.drivers.sshcmd import classify_ssh_failure
from services.provisioner.settings import ProvisionerSettings
from services.trainer.nodes.factory import node_executor
from services.trainer.nodes.ssh import SSHExecutor
from services.trainer.settings import TrainerSettings
from shared.errors import ProviderError
from shared.events import ArtifactsCached, EnvInfo, NodesReady, ProjectCreated
from shared.nodes import SSH_FAILED, user_known_hosts
from shared.secrets import InMemoryVault
from shared.spec import ProjectSpec
from tests.support.sshd_hosts import SshHost, generate_key
from tests.unit.provisioner.harness import spec_dict
from tests.unit.trainer.conftest import running_trainer, text_spec

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.usefixtures("namespaced_hosts"),
]

KEY = "NODE_KEY"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """One data dir for both services (as ``aidp up`` runs them): one known_hosts dir."""
    return tmp_path / "data"


async def pin_as_the_provisioner(
    data_dir: Path, host: SshHost, client_key: Path, owner: uuid.UUID, workdir: Path
) -> tuple[SshDriver, Node]:
    """The provisioner's ssh driver makes the owner's node and reaches it once: its host
    key is pinned (trust on first use) into the owner's known_hosts."""
    settings = ProvisionerSettings(
        data_dir=data_dir, ssh_connect_timeout=5, ssh_node_root=str(workdir)
    )
    vault = InMemoryVault()
    vault.put_user_secret(str(owner), KEY, client_key.read_text())
    driver = SshDriver(settings, secrets=vault)
    spec = spec_dict(provider="ssh", nodes=1)
    spec["resources"]["hosts"] = [
        {"address": host.address, "user": "root", "port": host.port, "identity": KEY}
    ]
    run_id = uuid.uuid4()
    ctx = RunContext(
        run_id=run_id,
        project_id=uuid.uuid4(),
        owner_id=owner,
        spec=ProjectSpec.model_validate(spec),
        state_dir=settings.controller_dir() / str(run_id),
    )
    node = await driver.create_node(ctx, 0)
    rc, out, err = await driver.run(node, f"mkdir -p {node.workdir} && echo pinned")
    assert (rc, out) == (0, "pinned\n"), err
    pinned = user_known_hosts(settings.resolved_known_hosts_dir(), owner)
    assert node.known_hosts == str(pinned)
    key_material = host.host_key_pub.split()[1]
    assert key_material in pinned.read_text()  # recorded on first contact
    return driver, node


def trainer_settings(data_dir: Path, client_key: Path) -> TrainerSettings:
    return TrainerSettings(data_dir=data_dir, trainer_ssh_keys=[client_key])


async def test_the_trainer_reaches_a_host_whose_key_the_provisioner_pinned(
    tmp_path: Path, data_dir: Path, host: SshHost, client_key: Path
) -> None:
    owner = uuid.uuid4()
    _, node = await pin_as_the_provisioner(data_dir, host, client_key, owner, tmp_path / "n")
    settings = trainer_settings(data_dir, client_key)
    info = node.info(python=sys.executable)
    # announced with the key the provisioner pinned: checked against exactly that key, no
    # file is read (whoever the owner named, even one with no known_hosts of their own)
    assert info.host_keys == (" ".join(host.host_key_pub.split()[:2]),)
    stranger = uuid.uuid4()
    executor = node_executor(info, settings, tenant=uuid.uuid4(), owner=str(stranger))
    try:
        assert isinstance(executor, SSHExecutor) and executor.access.known_hosts is None
        assert (await executor.run(["echo", "hi"]))[:2] == (0, "hi\n")
    finally:
        await executor.close()
    # announced without keys (an older provisioner): the owner's pinned file, as before
    info = info.model_copy(update={"host_keys": ()})
    executor = node_executor(info, settings, tenant=uuid.uuid4(), owner=str(owner))
    try:
        assert isinstance(executor, SSHExecutor)
        assert executor.access.known_hosts == node.known_hosts  # the very same file
        assert (await executor.run(["echo", "hi"]))[:2] == (0, "hi\n")
    finally:
        await executor.close()
    # another user's runs do not trust what this user pinned
    other = node_executor(info, settings, tenant=uuid.uuid4(), owner=str(stranger))
    try:
        with pytest.raises(ProviderError, match="no host key is pinned") as caught:
            await other.run(["true"])
        assert caught.value.code == "host_key_mismatch" and not caught.value.retryable
        assert str(data_dir / "known_hosts" / str(stranger)) in str(caught.value)
    finally:
        await other.close()


async def test_a_host_whose_key_changed_is_refused(
    tmp_path: Path, data_dir: Path, host: SshHost, client_key: Path
) -> None:
    owner = uuid.uuid4()
    driver, node = await pin_as_the_provisioner(data_dir, host, client_key, owner, tmp_path / "n")
    pinned_before = Path(str(node.known_hosts)).read_text()
    # the host is "reinstalled": a new host key at the same address
    host.stop()
    key_file = host.root / "ssh_host_ed25519_key"
    key_file.unlink()
    key_file.with_suffix(".pub").unlink()
    _, new_key = generate_key(key_file)
    assert new_key.split()[1] != host.host_key_pub.split()[1]
    host.start()

    settings = trainer_settings(data_dir, client_key)
    announced = node.info(python=sys.executable)
    assert announced.host_keys  # the key pinned before the reinstall
    for info, pinned_in in (
        (announced, "announced"),  # the keys announced with the node
        (announced.model_copy(update={"host_keys": ()}), str(node.known_hosts)),  # older
    ):
        executor = node_executor(info, settings, tenant=uuid.uuid4(), owner=owner)
        try:
            with pytest.raises(ProviderError, match="host key mismatch") as caught:
                await executor.run(["true"])
        finally:
            await executor.close()
        error = caught.value
        assert error.code == "host_key_mismatch" and not error.retryable
        assert pinned_in in str(error)  # says which pinned keys disagree
    # the unsafe opt-out skips the check only where no key was announced
    careless = TrainerSettings(
        data_dir=data_dir, trainer_ssh_keys=[client_key], trainer_accept_unknown_host_keys=True
    )
    executor = node_executor(announced, careless, tenant=uuid.uuid4(), owner=owner)
    try:
        with pytest.raises(ProviderError, match="host key mismatch"):
            await executor.run(["true"])
    finally:
        await executor.close()
    unannounced = announced.model_copy(update={"host_keys": ()})
    executor = node_executor(unannounced, careless, tenant=uuid.uuid4(), owner=owner)
    try:
        assert (await executor.run(["echo", "hi"]))[:2] == (0, "hi\n")
    finally:
        await executor.close()
    # the provisioner refuses it too, and nobody replaced the pinned key
    rc, _, err = await driver.run(node, "true")
    assert rc == SSH_FAILED
    assert classify_ssh_failure(node, err).code == "host_key_mismatch"
    assert Path(str(node.known_hosts)).read_text() == pinned_before


@pytest.mark.slow
async def test_a_run_is_checked_against_its_owners_pinned_key(
    tmp_path: Path,
    data_dir: Path,
    host: SshHost,
    client_key: Path,
    tiny_files: tuple[Path, Path],
) -> None:
    """Through the running trainer, for a node announced without keys (an older
    provisioner): the owner the run-starting event names picks the known_hosts file
    (``shared.events.run_owner``)."""
    owner, stranger = uuid.uuid4(), uuid.uuid4()
    _, node = await pin_as_the_provisioner(data_dir, host, client_key, owner, tmp_path / "n")
    info = node.info(python=sys.executable).model_copy(update={"host_keys": ()})
    env = EnvInfo(lock_hash="c" * 64, python=sys.executable, torch_version="2.13.0")
    settings: dict[str, Any] = {"trainer_ssh_keys": [client_key]}
    async with running_trainer(tmp_path, tiny_files, **settings) as trainer:
        assert trainer.app.state.trainer.settings.data_dir == data_dir  # one data dir
        spec = text_spec(args={"epochs": 1, "batch_size": 8})
        runs = {}
        for who in (stranger, owner):
            run_id, project_id = uuid.uuid4(), uuid.uuid4()
            artifacts: ArtifactsCached = trainer.artifacts()
            for payload in (
                ProjectCreated(owner_id=who, spec=spec),
                NodesReady(nodes=[info], env=env),
                artifacts,
            ):
                await trainer.publish(payload, run_id=run_id, project_id=project_id)
            runs[who] = run_id
        # the trainer cannot launch there: it gives the node back for another (NodeLost),
        # saying why; it never falls back to another known_hosts
        lost = await trainer.events.first("NodeLost", runs[stranger], timeout=120)
        reason = lost.payload["reason"]
        assert "no host key is pinned" in reason, reason
        assert str(data_dir / "known_hosts" / str(stranger)) in reason
        completed = await trainer.events.first("TrainingCompleted", runs[owner], timeout=300)
        assert completed.payload["model_version"]
