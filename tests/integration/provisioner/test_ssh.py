"""The ssh driver against two real sshd hosts in network namespaces, same playbooks."""

from __future__ import annotations

import grp
import pwd
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.provisioner.settings import ProvisionerSettings
from shared.events import ProjectCreated
from shared.secrets import InMemoryVault
from tests.support.sshd_hosts import SshHost, generate_key, sshd_hosts
from tests.unit.provisioner.harness import Harness, spec_dict

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.usefixtures("namespaced_hosts"),
]

KEY = "NODE_KEY"


@pytest.fixture
def client_key(tmp_path: Path) -> tuple[str, str]:
    return generate_key(tmp_path / "client")


@pytest.fixture
def hosts(client_key: tuple[str, str]) -> Iterator[list[SshHost]]:
    with sshd_hosts(2) as made:
        for host in made:
            host.authorize(client_key[1])
        yield made


@pytest.fixture
def ssh_settings(real_settings: ProvisionerSettings, shared_env_dir: Path) -> ProvisionerSettings:
    # The namespaces have no route to a package index: wheels are pushed from here. Hosts
    # share this filesystem, so their env root is shared too (flock serialises the build).
    return real_settings.model_copy(
        update={
            "ssh_node_root": str(shared_env_dir / "ssh-node"),
            "ssh_package_source": "push",
            "always_run_playbook": True,
            "ssh_connect_timeout": 3,
        }
    )


def _spec(hosts: list[SshHost], **kw: object) -> dict:
    spec = spec_dict(provider="ssh", nodes=len(hosts), **kw)  # node i = hosts[i]
    spec["resources"]["hosts"] = [
        {"address": h.address, "user": "root", "port": h.port, "identity": KEY} for h in hosts
    ]
    return spec


async def _run(
    settings: ProvisionerSettings, key: str, spec: dict, event: str
) -> tuple[Harness, dict, uuid.UUID]:
    vault = InMemoryVault()
    owner = uuid.uuid4()
    vault.put_user_secret(str(owner), KEY, key)
    async with Harness(settings, bus_url=settings.bus_url, vault=vault) as h:
        run = uuid.uuid4()
        created = ProjectCreated(owner_id=owner, spec=spec)
        await h.publish(created, project_id=uuid.uuid4(), run_id=run)
        found = await h.wait_for(event, run, timeout=900)
    return h, found.payload, run


@pytest.mark.slow
async def test_two_hosts_configured_over_ssh(
    ssh_settings: ProvisionerSettings, hosts: list[SshHost], client_key: tuple[str, str]
) -> None:
    h, ready, run = await _run(ssh_settings, client_key[0], _spec(hosts), "NodesReady")
    assert [n["address"] for n in ready["nodes"]] == [x.address for x in hosts]
    node = ready["nodes"][0]
    assert node["ssh_user"] == "root" and node["workdir"].endswith(str(run))
    # root can become root: node_base made the run user, and the trainer is told so
    assert [n["run_user"] for n in ready["nodes"]] == ["aidp-run"] * len(hosts)
    assert pwd.getpwnam("aidp-run").pw_shell == "/usr/sbin/nologin"
    workdir = Path(node["workdir"])
    assert workdir.stat().st_mode & 0o777 == 0o710  # enter, never list; nothing for others
    assert workdir.stat().st_gid == grp.getgrnam("aidp-run").gr_gid
    # the per-run uid pool: a root-only lease folder and its range (node_base's defaults)
    pool = Path("/var/lib/aidp/run-uids")
    assert pool.stat().st_mode & 0o777 == 0o700 and pool.stat().st_uid == 0
    assert (pool / "range").read_text().split() == ["4000000", "256"]
    assert (pool / "range").stat().st_mode & 0o777 == 0o600
    assert (pool / "leases").is_dir()
    python = ready["env"]["python"]
    assert python.startswith(str(ssh_settings.ssh_node_root))
    # The environment answers over SSH on each host.
    for host in hosts:
        out = subprocess.run(
            ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
             "-i", str(_key_file(client_key[0], ssh_settings)), f"root@{host.address}",
             f"{python} -c 'import torch, six; print(torch.__version__)'"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert out.stdout.strip() == ready["env"]["torch_version"]
    # Ansible ran over ssh (the playbook's tasks streamed as progress).
    messages = [e.payload["message"] for e in h.of("ProvisioningProgress", run)]
    assert any("ssh-1: Find Python 3.11" in m for m in messages)
    # The key from Vault lives in the run's private state dir (0700) while the run holds nodes.
    keys = ssh_settings.controller_dir() / str(run) / "keys"
    assert keys.exists() and (keys / "0").stat().st_mode & 0o777 == 0o600


def _key_file(text: str, settings: ProvisionerSettings) -> Path:
    path = settings.data_dir / "test-client-key"
    path.write_text(text)
    path.chmod(0o600)
    return path


async def test_unreachable_host_fails_clearly(
    ssh_settings: ProvisionerSettings, hosts: list[SshHost], client_key: tuple[str, str]
) -> None:
    hosts[1].stop()
    _, failed, run = await _run(ssh_settings, client_key[0], _spec(hosts), "NodesFailed")
    assert failed["step"] == "nodes"
    assert f"node ssh-1 (root@{hosts[1].address}:22) is unreachable" in failed["reason"]
    assert "Connection refused" in failed["reason"]
    # The reachable host's run workdir was removed again: nothing left behind.
    assert not (Path(ssh_settings.ssh_node_root) / "runs" / str(run)).exists()


async def test_host_key_mismatch_fails_clearly(
    ssh_settings: ProvisionerSettings,
    hosts: list[SshHost],
    client_key: tuple[str, str],
    tmp_path: Path,
) -> None:
    _, impostor = generate_key(tmp_path / "impostor")
    recorded = f"{hosts[0].address} {' '.join(impostor.split()[:2])}\n"
    vault = InMemoryVault()
    owner = uuid.uuid4()
    vault.put_user_secret(str(owner), KEY, client_key[0])
    (ssh_settings.resolved_known_hosts_dir() / str(owner)).write_text(recorded)
    async with Harness(ssh_settings, bus_url=ssh_settings.bus_url, vault=vault) as h:
        run = uuid.uuid4()
        spec = _spec(hosts[:1])
        await h.publish(
            ProjectCreated(owner_id=owner, spec=spec), project_id=uuid.uuid4(), run_id=run
        )
        failed = (await h.wait_for("NodesFailed", run, timeout=120)).payload
    assert failed["step"] == "nodes"
    assert "host key mismatch" in failed["reason"]
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in failed["reason"]
