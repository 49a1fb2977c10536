"""A training node lost mid-run (issue 19 item 4): the trainer and the provisioner on one
bus, the nodes real sshd hosts in network namespaces. The run's spec lists two hosts for
one node; the first host dies (every process in its namespace killed, sshd included) after
a checkpoint: the trainer sends NodeLost, the provisioner puts the second host in its place
(NodesReplaced) and the run resumes there from its checkpoint and completes.

The namespaces share this machine's filesystem, so the node's python is this venv's: the
environment builder is the provisioner harness's fake, answering with that interpreter
(building a real environment with Ansible is covered by tests/integration/provisioner).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from services.provisioner.settings import ProvisionerSettings
from services.trainer.models import Checkpoint
from shared.events import ProjectCreated
from shared.secrets import InMemoryVault
from tests.support.sshd_hosts import SshHost, clear_stale_shell_locks, generate_key, sshd_hosts
from tests.unit.provisioner.harness import FakeEnvBuilder
from tests.unit.provisioner.harness import Harness as Provisioner
from tests.unit.trainer.conftest import running_trainer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(420),
    pytest.mark.usefixtures("namespaced_hosts"),
]

BUS = "memory://node-loss"

#: Sleeps per step so the host can be killed mid-run; checks its resume state.
SCRIPT = """
    import json, time
    import aidp_progress as aidp

    total = int(aidp.train_args()["steps"])
    resumed = aidp.resume_step()
    if resumed:
        state = json.loads((aidp.resume_dir() / "state.json").read_text())
        assert state["step"] == resumed, state
    reporter = aidp.Reporter(total_steps=total, samples_per_step=4, min_interval=0)
    for step in range(resumed + 1, total + 1):
        time.sleep(float(aidp.train_args()["sleep"]))
        reporter.step(step, loss=1.0 / step)
        if step % aidp.checkpoint_every() == 0:
            (aidp.checkpoint_dir(step) / "state.json").write_text(json.dumps({"step": step}))
            aidp.checkpoint_saved(step)
    (aidp.output_dir() / "weights.txt").write_text("trained")
    aidp.completed({"resumed_from": float(resumed)})
"""


@pytest.fixture(scope="module")
def node_python() -> Iterator[str]:
    """A python any uid can run (the hosts share this machine's filesystem, and where the
    machine has the ``aidp-run`` user a run goes as its own uid): a venv of the system
    Python 3.11 outside ``/root`` that sees this venv's packages through a ``.pth`` file
    (as tests/integration/trainer/test_ssh_nodes.py does)."""
    base = Path(tempfile.mkdtemp(prefix="aidp-nodeloss-"))
    os.chmod(base, 0o711)
    env = base / "env"
    system_python = shutil.which("python3.11", path="/usr/bin")
    assert system_python is not None, "needs /usr/bin/python3.11 (scripts/bootstrap.sh)"
    subprocess.run([system_python, "-m", "venv", "--without-pip", str(env)], check=True)
    site = sysconfig.get_paths()["purelib"]
    (env / "lib" / "python3.11" / "site-packages" / "aidp-test.pth").write_text(site + "\n")
    for folder in (env, *env.rglob("*")):
        if folder.is_dir():
            os.chmod(folder, 0o755)
    try:
        yield str(env / "bin" / "python")
    finally:
        shutil.rmtree(base, ignore_errors=True)


class LocalPythonBuilder(FakeEnvBuilder):
    """The fake builder, answering with an interpreter of this machine: ``remote`` for SSH
    nodes (see ``node_python``), this venv's for the local node (the trainer's sandbox)."""

    def __init__(self, remote: str) -> None:
        super().__init__()
        self.remote = remote

    async def configure(self, **kwargs: Any) -> dict[str, Any]:
        local = all(n.provider == "local" for n in kwargs["nodes"])
        python = sys.executable if local else self.remote
        return {**await super().configure(**kwargs), "python": python}


def node_root() -> str:
    """The SSH nodes' root, in a folder every uid may pass through."""
    base = Path(tempfile.mkdtemp(prefix="aidp-noderoot-"))
    os.chmod(base, 0o711)
    return str(base / "root")


def kill_host(host: SshHost) -> None:
    """The machine is gone: every process in its namespace dies (sshd and the training)."""
    pids = subprocess.run(
        ["ip", "netns", "pids", host.netns], capture_output=True, text=True, check=True
    ).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    clear_stale_shell_locks()  # a shell killed mid `pyenv rehash` must not hang the others


async def test_a_lost_ssh_host_is_replaced_and_the_run_resumes_there(
    tmp_path: Path, tiny_files: tuple[Path, Path], node_python: str
) -> None:
    with sshd_hosts(2) as (first, second):
        private, public = generate_key(tmp_path / "node_key")
        known = tmp_path / "known_hosts"
        for host in (first, second):
            host.authorize(public)
        known.write_text("".join(f"{h.address} {h.host_key_pub}\n" for h in (first, second)))
        owner = uuid.uuid4()
        vault = InMemoryVault()
        vault.put_user_secret(str(owner), "NODE_KEY", private)
        prov_settings = ProvisionerSettings(
            data_dir=tmp_path / "prov",
            env_dir=tmp_path / "envs",
            retry_delay=0.2,
            reaper_interval=3600,
            bus_url=BUS,
            ssh_node_root=node_root(),
            ssh_connect_timeout=3,
        )
        trainer_settings: dict[str, Any] = {
            "bus_url": BUS,
            "trainer_ssh_keys": [tmp_path / "node_key"],
            "trainer_known_hosts": known,
            "trainer_node_timeout_seconds": 4.0,
            "trainer_drop_checkpoints_on_register": False,
        }
        spec = {
            "name": "lossy",
            "model": "hf://tests/tiny-bert",
            "task": "custom",
            "train": {
                "entrypoint": "train.py",
                "script": textwrap.dedent(SCRIPT),
                "args": {"steps": 40, "sleep": 0.25},
                "checkpoint_every": 5,
            },
            "resources": {
                "provider": "ssh",
                "nodes": 1,
                "hosts": [
                    {"address": h.address, "user": "root", "identity": "NODE_KEY"}
                    for h in (first, second)
                ],
            },
        }
        async with (
            Provisioner(
                prov_settings, bus_url=BUS, vault=vault, builder=LocalPythonBuilder(node_python)
            ),
            running_trainer(tmp_path, tiny_files, **trainer_settings) as trainer,
        ):
            run_id, project_id = uuid.uuid4(), uuid.uuid4()
            for payload in (
                ProjectCreated(owner_id=owner, spec=spec),
                trainer.artifacts(dataset=False),
            ):
                await trainer.publish(payload, run_id=run_id, project_id=project_id)
            ev = trainer.events
            started = await ev.first("TrainingStarted", run_id, timeout=180)
            runtime = trainer.app.state.runtime

            def checkpointed() -> bool:
                with runtime.db.session() as session:
                    rows = session.exec(select(Checkpoint).where(Checkpoint.run_id == run_id))
                    return any(c.step >= 10 for c in rows.all())

            await ev.wait_for(checkpointed, timeout=120, what="a checkpoint of step 10")
            kill_host(first)

            lost = await ev.first("NodeLost", run_id, timeout=60)
            replaced = await ev.first("NodesReplaced", run_id, timeout=120)
            completed = await ev.first("TrainingCompleted", run_id, timeout=180)

        starts = ev.of("TrainingStarted", run_id)
    assert started.payload["attempt"] == 1
    assert lost.payload["nodes"] == ["ssh-0"] and lost.payload["resume_step"] >= 10
    [node] = replaced.payload["nodes"]
    assert node["name"] == "ssh-0" and node["address"] == second.address
    assert replaced.payload["replaced"] == ["ssh-0"]
    assert [s.payload["attempt"] for s in starts] == [1, 2]
    resumed = starts[-1].payload["resumed_from_step"]
    assert resumed is not None and resumed >= 10
    assert completed.payload["metrics"]["resumed_from"] == float(resumed)
    steps = [e.payload["step"] for e in ev.of("TrainingProgress", run_id)]
    assert steps[-1] == 40
    assert any("lost during training" in line for line in ev.logs(run_id))


def freeze_host(host: SshHost, sig: signal.Signals = signal.SIGSTOP) -> None:
    """The machine hangs: its processes stop, its connections stay open (nothing closes
    them, the kernel still acknowledges TCP), nothing answers."""
    pids = subprocess.run(
        ["ip", "netns", "pids", host.netns], capture_output=True, text=True, check=True
    ).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), sig)
        except ProcessLookupError:
            pass
    clear_stale_shell_locks()  # a shell frozen mid `pyenv rehash` must not hang the others


async def test_a_node_that_stops_answering_is_declared_lost_within_the_timeout(
    tmp_path: Path, tiny_files: tuple[Path, Path]
) -> None:
    """No provisioner here: the trainer alone must notice a hung node whose connection
    stays open, and ask for a replacement (NodeLost) within a bounded time."""
    from shared.events import EnvInfo, NodeInfo, NodesReady, RunCancelled

    with sshd_hosts(1) as (host,):
        _, public = generate_key(tmp_path / "node_key")
        host.authorize(public)
        known = tmp_path / "known_hosts"
        known.write_text(f"{host.address} {host.host_key_pub}\n")
        workdir = tmp_path / "node"
        workdir.mkdir()
        node = NodeInfo(
            name="ssh-0",
            address=host.address,
            ssh_user="root",
            provider="ssh",
            workdir=str(workdir),
            python=sys.executable,
        )
        timeout = 4.0
        settings: dict[str, Any] = {
            "bus_url": "memory://node-silent",
            "trainer_ssh_keys": [tmp_path / "node_key"],
            "trainer_known_hosts": known,
            "trainer_node_timeout_seconds": timeout,
        }
        spec = {
            "name": "silent",
            "model": "hf://tests/tiny-bert",
            "task": "custom",
            "train": {
                "entrypoint": "train.py",
                "script": textwrap.dedent(SCRIPT),
                "args": {"steps": 400, "sleep": 0.25},
                "checkpoint_every": 5,
            },
        }
        try:
            async with running_trainer(tmp_path, tiny_files, **settings) as trainer:
                run_id, project_id = uuid.uuid4(), uuid.uuid4()
                env = EnvInfo(lock_hash="c" * 64, python=sys.executable, torch_version="2.13.0")
                for payload in (
                    ProjectCreated(owner_id=uuid.uuid4(), spec=spec),
                    NodesReady(nodes=[node], env=env),
                    trainer.artifacts(dataset=False),
                ):
                    await trainer.publish(payload, run_id=run_id, project_id=project_id)
                ev = trainer.events
                await ev.wait_for(
                    lambda: any(e.payload["step"] >= 3 for e in ev.of("TrainingProgress", run_id)),
                    timeout=180,
                    what="training under way",
                )
                loop = asyncio.get_running_loop()
                frozen_at = loop.time()
                freeze_host(host)
                lost = await ev.first("NodeLost", run_id, timeout=60)
                took = loop.time() - frozen_at
                await trainer.publish(RunCancelled(), run_id=run_id, project_id=project_id)
        finally:
            freeze_host(host, signal.SIGKILL)  # let the hosts' teardown reap them
    assert lost.payload["nodes"] == ["ssh-0"]
    assert lost.payload["reason"].startswith("node ssh-0 lost during training")
    # silent for the timeout, then a fresh connection that gets no answer in the timeout
    assert took < 3 * timeout + 10, took
    assert not ev.of("TrainingFailed", run_id)
    logs = ev.logs(run_id)
    assert not any("heartbeat" in line for line in logs)  # heartbeats are not log lines
    assert any("aidp: node ssh-0" in line for line in logs), logs[-5:]


#: Runs out of memory at step 8 of its first attempt (after the checkpoint of step 5).
OOM_SCRIPT = """
    import time
    import aidp_progress as aidp

    resumed = aidp.resume_step()
    for step in range(resumed + 1, 13):
        time.sleep(0.05)
        aidp.report(step, total_steps=12, loss=1.0 / step)
        if step % 5 == 0:
            (aidp.checkpoint_dir(step) / "state.txt").write_text(str(step))
            aidp.checkpoint_saved(step)
        if step == 8 and resumed == 0:
            raise MemoryError("cannot allocate 64 GiB for the activations")
    (aidp.output_dir() / "weights.txt").write_text("trained")
    aidp.completed({"resumed_from": float(resumed)})
"""


async def test_out_of_memory_retries_once_on_the_next_choice(
    tmp_path: Path, tiny_files: tuple[Path, Path], node_python: str
) -> None:
    """``retry_larger_on_oom``: the run ran out of memory on this machine (provider local);
    its nodes move to the next choice (fallback ssh) and it resumes there from its
    checkpoint."""
    with sshd_hosts(1) as (host,):
        private, public = generate_key(tmp_path / "node_key")
        host.authorize(public)
        known = tmp_path / "known_hosts"
        known.write_text(f"{host.address} {host.host_key_pub}\n")
        owner = uuid.uuid4()
        vault = InMemoryVault()
        vault.put_user_secret(str(owner), "NODE_KEY", private)
        bus = "memory://node-oom"
        prov_settings = ProvisionerSettings(
            data_dir=tmp_path / "prov",
            env_dir=tmp_path / "envs",
            retry_delay=0.2,
            reaper_interval=3600,
            bus_url=bus,
            ssh_node_root=node_root(),
            ssh_connect_timeout=3,
        )
        trainer_settings: dict[str, Any] = {
            "bus_url": bus,
            "trainer_ssh_keys": [tmp_path / "node_key"],
            "trainer_known_hosts": known,
        }
        spec = {
            "name": "hungry",
            "model": "hf://tests/tiny-bert",
            "task": "custom",
            "train": {
                "entrypoint": "train.py",
                "script": textwrap.dedent(OOM_SCRIPT),
                "checkpoint_every": 5,
            },
            "resources": {
                "provider": "local",
                "fallback": ["ssh"],
                "hosts": [{"address": host.address, "user": "root", "identity": "NODE_KEY"}],
                "retry_larger_on_oom": True,
            },
        }
        async with (
            Provisioner(
                prov_settings, bus_url=bus, vault=vault, builder=LocalPythonBuilder(node_python)
            ) as prov,
            running_trainer(tmp_path, tiny_files, **trainer_settings) as trainer,
        ):
            run_id, project_id = uuid.uuid4(), uuid.uuid4()
            for payload in (
                ProjectCreated(owner_id=owner, spec=spec),
                trainer.artifacts(dataset=False),
            ):
                await trainer.publish(payload, run_id=run_id, project_id=project_id)
            ev = trainer.events
            completed = await ev.first("TrainingCompleted", run_id, timeout=240)
            moved = [
                e.payload["message"]
                for e in prov.of("ProvisioningProgress", run_id)
                if e.payload["stage"] == "larger"
            ]
        lost = ev.of("NodeLost", run_id)
        replaced = ev.of("NodesReplaced", run_id)
        starts = ev.of("TrainingStarted", run_id)
    assert [e.payload["larger"] for e in lost] == [True]
    assert "MemoryError: cannot allocate 64 GiB" in lost[0].payload["reason"]
    assert len(moved) == 1 and moved[0].endswith("retrying on ssh (was local)"), moved
    [node] = replaced[0].payload["nodes"]
    assert node["provider"] == "ssh" and node["address"] == host.address
    assert [s.payload["nodes"] for s in starts] == [["local-0"], ["ssh-0"]]
    assert starts[-1].payload["resumed_from_step"] == 5
    assert completed.payload["metrics"]["resumed_from"] == 5.0
