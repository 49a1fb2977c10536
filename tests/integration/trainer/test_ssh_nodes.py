"""The trainer's SSH executor against a real sshd in a network namespace.

The namespace shares this machine's filesystem, so the node's python is this venv's and the
node workdir is a temporary folder here; every byte still travels over SSH/SFTP.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from services.trainer.models import Checkpoint, ModelVersion
from services.trainer.nodes import SSHExecutor
from services.trainer.staging import stage_manifest, store_tree
from shared.errors import ProviderError
from shared.events import ArtifactsCached, EnvInfo, NodeInfo, NodesReady, ProjectCreated
from shared.secrets import InMemoryVault
from shared.store import ArtifactStore
from tests.support.hostile import hostile_spec, parse_report
from tests.support.sshd_hosts import SshHost, generate_key, sshd_hosts
from tests.unit.trainer.conftest import put_dir, running_trainer, text_spec

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.usefixtures("namespaced_hosts"),
]


@pytest.fixture
def client_key(tmp_path: Path) -> Path:
    generate_key(tmp_path / "client")
    return tmp_path / "client"


@pytest.fixture
def host(client_key: Path) -> Iterator[SshHost]:
    with sshd_hosts(1) as (made,):
        made.authorize(client_key.with_suffix(".pub").read_text())
        yield made


@pytest.fixture
def known_hosts(tmp_path: Path, host: SshHost) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text(f"{host.address} {host.host_key_pub}\n")
    return path


def ssh_node(host: SshHost, workdir: Path, name: str = "ssh-0") -> NodeInfo:
    workdir.mkdir(parents=True, exist_ok=True)
    return NodeInfo(
        name=name,
        address=host.address,
        ssh_user="root",
        ssh_port=host.port,
        provider="ssh",
        workdir=str(workdir),
        python=sys.executable,
    )


async def test_staging_over_ssh_reuses_the_node_cache(
    tmp_path: Path,
    host: SshHost,
    client_key: Path,
    known_hosts: Path,
    tiny_files: tuple[Path, Path],
) -> None:
    store = ArtifactStore(tmp_path / "store", InMemoryVault())
    key = put_dir(store, tiny_files[0], source="hf://tests/tiny-bert")
    node = ssh_node(host, tmp_path / "node")
    ws = str(tmp_path / "node" / "aidp-run-x")
    executor = SSHExecutor(node, client_keys=[str(client_key)], known_hosts=str(known_hosts))
    try:
        sent = await stage_manifest(
            executor=executor, store=store, key=key, workspace=ws, dest="model"
        )
        total = sum(p.stat().st_size for p in tiny_files[0].iterdir())
        assert sent == total > 0
        for path in tiny_files[0].iterdir():
            assert (Path(ws) / "model" / path.name).read_bytes() == path.read_bytes()
        # a relaunch: the content-addressed cache on the node already has every blob
        again = await stage_manifest(
            executor=executor, store=store, key=key, workspace=ws, dest="model"
        )
        assert again == 0

        # node -> store: files the store already holds are referenced, not sent again
        tree = await store_tree(
            executor=executor,
            store=store,
            root=f"{ws}/model",
            source="aidp://t",
            revision="1",
            meta={},
        )
        assert tree.sent == 0 and tree.size == total
        (Path(ws) / "model" / "extra.bin").write_bytes(b"new bytes" * 1000)
        tree = await store_tree(
            executor=executor,
            store=store,
            root=f"{ws}/model",
            source="aidp://t",
            revision="2",
            meta={},
        )
        assert tree.sent == 9000 and len(tree.created) == 2  # the new file + the manifest
    finally:
        await executor.close()


async def test_unknown_host_keys_are_refused_unless_opted_in(
    tmp_path: Path, host: SshHost, client_key: Path
) -> None:
    _, impostor = generate_key(tmp_path / "impostor")
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"{host.address} {impostor}\n")
    node = ssh_node(host, tmp_path / "node")
    pinned_wrong = SSHExecutor(node, client_keys=[str(client_key)], known_hosts=str(wrong))
    with pytest.raises(ProviderError, match="cannot reach node"):
        await pinned_wrong.run(["true"])
    opted_in = SSHExecutor(node, client_keys=[str(client_key)], accept_unknown_host_keys=True)
    try:
        assert (await opted_in.run(["echo", "hi"]))[:2] == (0, "hi\n")
    finally:
        await opted_in.close()


async def test_training_over_ssh(
    tmp_path: Path,
    host: SshHost,
    client_key: Path,
    known_hosts: Path,
    tiny_files: tuple[Path, Path],
) -> None:
    settings: dict[str, Any] = {
        "trainer_ssh_keys": [client_key],
        "trainer_known_hosts": known_hosts,
        "trainer_keep_checkpoints": 1,
        "trainer_drop_checkpoints_on_register": False,
    }
    async with running_trainer(tmp_path, tiny_files, **settings) as trainer:
        run_id, project_id = uuid.uuid4(), uuid.uuid4()
        spec = text_spec(args={"epochs": 2, "batch_size": 8}, checkpoint_every=5)
        ready = NodesReady(
            nodes=[ssh_node(host, tmp_path / "node")],
            env=EnvInfo(lock_hash="c" * 64, python=sys.executable, torch_version="2.13.0"),
        )
        artifacts: ArtifactsCached = trainer.artifacts()
        for payload in (ProjectCreated(owner_id=uuid.uuid4(), spec=spec), ready, artifacts):
            await trainer.publish(payload, run_id=run_id, project_id=project_id)
        ev = trainer.events
        completed = await ev.first("TrainingCompleted", run_id, timeout=300)
        # no run user on this node: the run goes as the login user, and says so
        assert any(
            line.startswith("aidp: node ssh-0: runs as the login user") for line in ev.logs(run_id)
        ), ev.logs(run_id)[:5]
        steps = [e.payload["step"] for e in ev.of("TrainingProgress", run_id)]
        assert steps == sorted(steps) and steps[-1] == 16
        assert completed.payload["metrics"]["steps"] == 16.0
        runtime = trainer.app.state.runtime
        with runtime.db.session() as session:  # stored over SFTP; only the latest is kept
            kept = session.exec(select(Checkpoint).where(Checkpoint.run_id == run_id)).all()
            assert [c.step for c in kept] == [15]
            assert trainer.store.get_manifest(kept[0].manifest_key).files
        await ev.wait_for(
            lambda: not (tmp_path / "node" / f"aidp-run-{run_id}").exists(),
            what="workspace removed",
        )


# -- the run user (issue 11 item 7) -------------------------------------------------------

RUN_USER = "aidp-run"


def ensure_run_user() -> int:
    """The node's run user, made as node_base makes it (the sshd hosts share this machine's
    users): a system user with its own group, no login shell, no home, no sudo."""
    try:
        return pwd.getpwnam(RUN_USER).pw_uid
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--shell", "/usr/sbin/nologin",
             "--no-create-home", "--home-dir", "/nonexistent", RUN_USER],
            check=True, capture_output=True,
        )  # fmt: skip
        return pwd.getpwnam(RUN_USER).pw_uid


@pytest.fixture
def run_user_node_paths() -> Iterator[tuple[Path, str]]:
    """A node workdir and a python the run user can reach. This machine's venv lives under
    ``/root`` (0700): the node's python is a venv of the system Python 3.11 that sees the
    venv's packages through a ``.pth`` file, in a folder outside ``/root``."""
    base = Path(tempfile.mkdtemp(prefix="aidp-runuser-"))
    os.chmod(base, 0o711)
    env = base / "env"
    system_python = shutil.which("python3.11", path="/usr/bin")
    assert system_python is not None, (
        "needs /usr/bin/python3.11 (the venv's Python, outside /root): apt-get install python3.11"
        " (scripts/bootstrap.sh does it)"
    )
    subprocess.run([system_python, "-m", "venv", "--without-pip", str(env)], check=True)
    site = sysconfig.get_paths()["purelib"]
    (env / "lib" / "python3.11" / "site-packages" / "aidp-test.pth").write_text(site + "\n")
    for folder in (env, *env.rglob("*")):
        if folder.is_dir():
            os.chmod(folder, 0o755)
    workdir = base / "node"
    workdir.mkdir(mode=0o700)
    try:
        yield workdir, str(env / "bin" / "python")
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def test_training_over_ssh_runs_as_the_run_user(
    tmp_path: Path,
    host: SshHost,
    client_key: Path,
    known_hosts: Path,
    tiny_files: tuple[Path, Path],
    run_user_node_paths: tuple[Path, str],
) -> None:
    run_uid = ensure_run_user()
    workdir, python = run_user_node_paths
    node = ssh_node(host, workdir).model_copy(update={"python": python, "run_user": RUN_USER})
    # another run's workspace, staged as the trainer stages (over SSH, as the login user)
    other = workdir / "aidp-run-other" / "data" / "private.csv"
    planter = SSHExecutor(node, client_keys=[str(client_key)], known_hosts=str(known_hosts))
    try:
        await planter.write_chunks(str(other), _chunks(b"another run's plaintext"))
    finally:
        await planter.close()
    assert other.parent.parent.stat().st_mode & 0o077 == 0  # 0700: only the login user's

    targets = {
        "read": [str(host.authorized_keys), "/root/.ssh/authorized_keys", str(other)],
        "list": [str(workdir), str(other.parent.parent), "/root"],
        "write": [str(other.parent / "written.txt")],
    }
    spec = hostile_spec(targets)
    spec["model"] = "hf://tests/tiny-bert"
    settings: dict[str, Any] = {
        "trainer_ssh_keys": [client_key],
        "trainer_known_hosts": known_hosts,
    }
    async with running_trainer(tmp_path, tiny_files, **settings) as trainer:
        run_id, project_id = uuid.uuid4(), uuid.uuid4()
        ready = NodesReady(
            nodes=[node],
            env=EnvInfo(lock_hash="c" * 64, python=python, torch_version="2.13.0"),
        )
        artifacts: ArtifactsCached = trainer.artifacts(dataset=False)
        for payload in (ProjectCreated(owner_id=uuid.uuid4(), spec=spec), ready, artifacts):
            await trainer.publish(payload, run_id=run_id, project_id=project_id)
        ev = trainer.events
        try:
            completed = await ev.first("TrainingCompleted", run_id, timeout=300)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; log tail: {ev.logs(run_id)[-40:]}") from None
        logs = ev.logs(run_id)
        report = parse_report(logs)
        assert report["uid"] == run_uid != 0, report
        assert report["gid"] == pwd.getpwnam(RUN_USER).pw_gid
        assert report["escapes"] == [], report["escapes"]
        assert len(report["attempts"]) >= 9, report["attempts"]
        assert not (other.parent / "written.txt").exists()
        assert not any("runs as the login user" in line for line in logs)
        # the run's model was read back over SFTP and stored
        assert completed.payload["model_version"]
        with trainer.app.state.runtime.db.session() as session:
            assert session.exec(select(ModelVersion).where(ModelVersion.run_id == run_id)).all()
        await ev.wait_for(
            lambda: not (workdir / f"aidp-run-{run_id}").exists(), what="workspace removed"
        )
    assert other.read_bytes() == b"another run's plaintext"
    assert workdir.stat().st_mode & 0o007 == 0  # the node workdir is not world-readable


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data
