"""A hostile SSH host cannot make the controller run anything (issue 12, item 1).

A real sshd in a network namespace whose ``ForceCommand`` answers every command (the
probe included) with a Jinja payload in place of python3's path: the run fails with
"invalid probe answer" and no marker file appears on the controller. And the inventory
that hands every value to Ansible as unsafe data still drives a real ssh connection.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.provisioner.drivers.base import RunContext
from services.provisioner.drivers.ssh import SshDriver
from services.provisioner.envs.ansible import run_playbook
from services.provisioner.envs.builder import AnsibleEnvBuilder, LockResult
from services.provisioner.settings import ProvisionerSettings
from shared.events import ProjectCreated
from shared.secrets import InMemoryVault
from shared.spec import ProjectSpec
from tests.support.sshd_hosts import SshHost, generate_key, sshd_hosts
from tests.unit.provisioner.harness import Harness, spec_dict

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("namespaced_hosts")]

KEY = "NODE_KEY"


class _FixedLockBuilder(AnsibleEnvBuilder):
    """The real builder (Ansible over ssh) with a lock that needs no package index."""

    async def resolve(self, spec: ProjectSpec) -> LockResult:
        text = "six==1.16.0 --hash=sha256:" + "0" * 64 + "\n"
        return LockResult(input_key=self.input_key(spec), lock_hash="f" * 64, text=text)


@pytest.fixture
def marker() -> Iterator[Path]:
    path = Path(f"/tmp/aidp-marker-{uuid.uuid4().hex}")
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture
def client_key(tmp_path: Path) -> tuple[str, str]:
    return generate_key(tmp_path / "client")


@pytest.fixture
def hostile_host(client_key: tuple[str, str], marker: Path) -> Iterator[SshHost]:
    """One sshd whose every answer is the probe's shape with a Jinja python3 path."""
    with sshd_hosts(1, start=False) as (host,):
        host.authorize(client_key[1])
        # No whitespace in the payload: it survives any split of the probe's output.
        payload = '{{lookup("pipe","touch${IFS}' + str(marker) + '")}}'
        script = host.root / "answer.sh"
        script.write_text(f"#!/bin/sh\nprintf '%s\\n' 3.11.7 '{payload}' /root\n")
        script.chmod(0o755)
        with (host.root / "sshd_config").open("a") as config:
            config.write(f"ForceCommand {script}\n")
        host.start()
        yield host


async def test_jinja_in_the_probe_answer_fails_the_run(
    real_settings: ProvisionerSettings,
    hostile_host: SshHost,
    client_key: tuple[str, str],
    marker: Path,
) -> None:
    settings = real_settings.model_copy(
        update={"ssh_connect_timeout": 3, "ssh_package_source": "index"}
    )
    spec = spec_dict(provider="ssh", nodes=1)
    spec["resources"]["hosts"] = [
        {"address": hostile_host.address, "user": "root", "port": 22, "identity": KEY}
    ]
    vault = InMemoryVault()
    owner = uuid.uuid4()
    vault.put_user_secret(str(owner), KEY, client_key[0])
    builder = _FixedLockBuilder(settings)
    async with Harness(settings, bus_url=settings.bus_url, vault=vault, builder=builder) as h:
        run = uuid.uuid4()
        await h.publish(
            ProjectCreated(owner_id=owner, spec=spec), project_id=uuid.uuid4(), run_id=run
        )
        failed = (await h.wait_for("NodesFailed", run, timeout=240)).payload
    assert not marker.exists(), "the node's answer was rendered on the controller"
    assert failed["step"] == "nodes"
    assert "invalid probe answer" in failed["reason"]
    assert "python3 path" in failed["reason"]


_PLAYBOOK = """\
- name: Use node values over ssh
  hosts: all
  gather_facts: false
  tasks:
    - name: Run a command on the node
      ansible.builtin.command:
        argv: [echo, "{{ aidp_value }}"]
      register: echoed
    - name: Write it on the node
      ansible.builtin.copy:
        content: "{{ echoed.stdout }} {{ ansible_user }}@{{ ansible_host }}\\n"
        dest: "{{ aidp_workdir }}/echoed.txt"
"""


async def test_unsafe_inventory_drives_a_real_ssh_connection(
    real_settings: ProvisionerSettings,
    client_key: tuple[str, str],
    marker: Path,
    tmp_path: Path,
) -> None:
    ansible_dir = tmp_path / "ansible"
    ansible_dir.mkdir()
    (ansible_dir / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = False\n")
    (ansible_dir / "provision.yml").write_text(_PLAYBOOK)
    settings = real_settings.model_copy(
        update={
            "ssh_connect_timeout": 3,
            "ansible_dir": ansible_dir,
            "ssh_node_root": str(tmp_path / "node"),
        }
    )
    vault = InMemoryVault()
    owner = uuid.uuid4()
    vault.put_user_secret(str(owner), KEY, client_key[0])
    run = uuid.uuid4()
    state = settings.controller_dir() / str(run)
    state.mkdir(mode=0o700)
    spec = spec_dict(provider="ssh", nodes=1)
    with sshd_hosts(1) as (host,):
        host.authorize(client_key[1])
        spec["resources"]["hosts"] = [
            {"address": host.address, "user": "root", "port": 22, "identity": KEY}
        ]
        ctx = RunContext(
            run_id=run,
            project_id=uuid.uuid4(),
            owner_id=owner,
            spec=ProjectSpec.model_validate(spec),
            state_dir=state,
        )
        driver = SshDriver(settings, secrets=vault)
        node = await driver.check_node(ctx, await driver.create_node(ctx, 0))
        payload = '{{lookup("pipe","touch ' + str(marker) + '")}}'

        async def progress(stage: str, message: str, pct: float | None) -> None:
            return None

        await run_playbook(
            nodes=[node],
            driver=driver,
            host_vars=lambda n: {"aidp_value": payload, "aidp_workdir": n.workdir},
            private_dir=state / "configure",
            settings=settings,
            progress=progress,
            cancel=threading.Event(),
        )
    assert not marker.exists()
    # The host shares this filesystem: the file the task wrote over ssh is here.
    echoed = (Path(node.workdir) / "echoed.txt").read_text()
    assert echoed == f"{payload} root@{host.address}\n"
    inventory = (state / "configure" / "inventory.yml").read_text()
    assert f'ansible_host: !unsafe "{host.address}"' in inventory


async def test_cuda_on_an_ssh_host_without_a_gpu_fails_before_configuring(
    real_settings: ProvisionerSettings, client_key: tuple[str, str]
) -> None:
    """Issue 16 item 3: the host is asked what it has (nvidia-smi -L lists no GPU here), and
    a ``cuda`` spec fails at the nodes step with a clear message, not a CPU run."""
    settings = real_settings.model_copy(
        update={"ssh_connect_timeout": 3, "ssh_package_source": "index"}
    )
    vault = InMemoryVault()
    owner = uuid.uuid4()
    vault.put_user_secret(str(owner), KEY, client_key[0])
    with sshd_hosts(1) as (host,):
        host.authorize(client_key[1])
        spec = spec_dict(provider="ssh", nodes=1, accelerator="cuda")
        spec["resources"]["hosts"] = [
            {"address": host.address, "user": "root", "port": 22, "identity": KEY}
        ]
        builder = _FixedLockBuilder(settings)
        async with Harness(settings, bus_url=settings.bus_url, vault=vault, builder=builder) as h:
            run = uuid.uuid4()
            await h.publish(
                ProjectCreated(owner_id=owner, spec=spec), project_id=uuid.uuid4(), run_id=run
            )
            failed = (await h.wait_for("NodesFailed", run, timeout=240)).payload
            stages = [e.payload["stage"] for e in h.of("ProvisioningProgress", run)]
    assert failed["step"] == "nodes", failed
    assert "resources.accelerator: 'cuda' is not available on ssh host ssh-0" in failed["reason"]
    assert "no NVIDIA GPU" in failed["reason"] and "accelerator: cpu" in failed["reason"]
    assert not any(stage in ("ansible", "configure") for stage in stages), stages
