"""The trainer's SSH executor against a real sshd in a network namespace.

The namespace shares this machine's filesystem, so the node's python is this venv's and the
node workdir is a temporary folder here; every byte still travels over SSH/SFTP.
"""

from __future__ import annotations

import asyncio
import json
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

from services.trainer import ssh_runs
from services.trainer.checkpoint_paths import ensure_inside
from services.trainer.models import Checkpoint, ModelVersion
from services.trainer.nodes.ssh import SSHExecutor
from services.trainer.staging import stage_manifest, store_tree
from shared.errors import ProviderError
from shared.events import ArtifactsCached, EnvInfo, NodeInfo, NodesReady, ProjectCreated
from shared.secrets import InMemoryVault
from shared.store import ArtifactStore
from tests.support.hostile import hostile_spec, parse_report
from tests.support.sshd_hosts import SshHost, generate_key, private_link, sshd_hosts
from tests.unit.trainer.conftest import put_dir, running_trainer, text_spec

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.usefixtures("namespaced_hosts"),
]


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
    with pytest.raises(ProviderError, match="cannot reach node") as caught:
        await pinned_wrong.run(["true"])
    # the shared classification (shared.nodes): trying again cannot help
    assert caught.value.code == "host_key_mismatch" and not caught.value.retryable
    opted_in = SSHExecutor(node, client_keys=[str(client_key)], accept_unknown_host_keys=True)
    try:
        assert (await opted_in.run(["echo", "hi"]))[:2] == (0, "hi\n")
    finally:
        await opted_in.close()


async def test_a_node_behind_a_jump_host_is_reached_with_the_same_keys_and_checks(
    tmp_path: Path, client_key: Path
) -> None:
    """The node's private address is reachable only through the jump host (as an IDC VM's):
    the jump host is reached as ``user@host:port`` with the node's key and known_hosts."""
    with sshd_hosts(2) as (jump, behind):
        for made in (jump, behind):
            made.authorize(client_key.with_suffix(".pub").read_text())
        private_ip = private_link(jump, behind)
        node = ssh_node(behind, tmp_path / "node").model_copy(
            update={"address": private_ip, "ssh_port": 22, "proxy": f"root@{jump.address}:22"}
        )
        known = tmp_path / "known_hosts"
        known.write_text(f"{private_ip} {behind.host_key_pub}\n")
        only_node = SSHExecutor(node, client_keys=[str(client_key)], known_hosts=str(known))
        with pytest.raises(ProviderError, match="cannot reach node") as caught:
            await only_node.run(["true"])  # the jump host's key is not pinned: refused
        assert caught.value.code == "host_key_mismatch"
        known.write_text(
            f"{private_ip} {behind.host_key_pub}\n{jump.address} {jump.host_key_pub}\n"
        )
        executor = SSHExecutor(node, client_keys=[str(client_key)], known_hosts=str(known))
        try:
            assert (await executor.run(["echo", "hi"]))[:2] == (0, "hi\n")
        finally:
            await executor.close()


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
    ensure_run_user()
    ensure_run_uid_pool()
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
        "read": [
            str(host.authorized_keys),
            "/root/.ssh/authorized_keys",
            str(other),
            str(RUN_UID_DIR / "range"),
        ],
        "list": [str(workdir), str(other.parent.parent), "/root", str(RUN_UID_DIR)],
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
        # the run's own uid from the node's pool, its own gid, no groups
        assert POOL_FIRST <= report["uid"] < POOL_FIRST + POOL_COUNT, report
        assert report["gid"] == report["uid"], report
        assert report["escapes"] == [], report["escapes"]
        assert len(report["attempts"]) >= 9, report["attempts"]
        assert not (other.parent / "written.txt").exists()
        assert not any("runs as the login user" in line for line in logs)
        # the run's model was read back over SFTP and stored
        assert completed.payload["model_version"]
        with trainer.app.state.runtime.db.session() as session:
            assert session.exec(select(ModelVersion).where(ModelVersion.run_id == run_id)).all()
        workspace = str(workdir / f"aidp-run-{run_id}")
        await ev.wait_for(lambda: not Path(workspace).exists(), what="workspace removed")
        # its uid goes back to the pool (the release removes the workspace first)
        await ev.wait_for(lambda: lease_of(workspace) is None, what="uid lease released")
    assert other.read_bytes() == b"another run's plaintext"
    assert workdir.stat().st_mode & 0o007 == 0  # the node workdir is not world-readable


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


# -- one uid per run, the environment through stdin (issue 11, SSH nodes) -----------------

RUN_UID_DIR = Path(ssh_runs.RUN_UID_DIR)
POOL_FIRST, POOL_COUNT = 4_000_000, 256  # node_base's defaults (aidp_run_uid_first/count)


def ensure_run_uid_pool() -> None:
    """The node's per-run uid pool, made as node_base makes it (the sshd hosts share this
    machine's filesystem): a root-only folder with the range and the leases."""
    (RUN_UID_DIR / "leases").mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(RUN_UID_DIR, 0o700)
    range_file = RUN_UID_DIR / "range"
    if not range_file.exists():
        range_file.write_text(f"{POOL_FIRST} {POOL_COUNT}\n")
        os.chmod(range_file, 0o600)


def lease_of(workspace: str) -> int | None:
    """The uid leased to ``workspace`` on the node (None: no lease)."""
    for lease in (RUN_UID_DIR / "leases").iterdir():
        held = lease / "workspace"
        if held.exists() and held.read_text().strip() == workspace:
            return int(lease.name)
    return None


#: Run as a run's uid: tries the other run's workspace, the login user's keys and the lease
#: folder, checks its secret arrived, leaves a file in /tmp, then stays alive a few seconds
#: (the test looks for the secret in every process's argv meanwhile).
PROBE = r"""
import json, os, sys, time
peer, wait, keys = sys.argv[1], sys.argv[2] == "wait", sys.argv[3:]
me = os.getuid()
deadline = time.time() + (60 if wait else 0)
owner = None
while time.time() < deadline:  # until the peer's workspace is handed to its own uid
    try:
        owner = os.stat(peer).st_uid
    except OSError:
        owner = None
    if owner not in (None, 0, me):
        break
    time.sleep(0.1)
attempts, escapes = [], []
def attempt(name, action):
    attempts.append(name)
    try:
        result = action()
    except OSError:
        return
    escapes.append(f"{name}: {str(result)[:80]}")
attempt("read peer", lambda: open(os.path.join(peer, "data", "private.txt")).read())
attempt("list peer", lambda: os.listdir(peer))
attempt("write peer", lambda: open(os.path.join(peer, "planted.txt"), "w").write("x"))
attempt("list workdir", lambda: os.listdir(os.path.dirname(peer)))
attempt("list leases", lambda: os.listdir("/var/lib/aidp/run-uids"))
attempt("read range", lambda: open("/var/lib/aidp/run-uids/range").read())
for key in keys:
    attempt(f"read {key}", lambda: open(key).read())
    attempt(f"list {os.path.dirname(key)}", lambda: os.listdir(os.path.dirname(key)))
with open(f"/tmp/aidp-probe-{me}", "w") as fh:
    fh.write("left behind")
secret = os.environ.get("AIDP_TEST_SECRET", "")
print("REPORT " + json.dumps({
    "uid": me, "gid": os.getgid(), "groups": os.getgroups(), "peer_owner": owner,
    "attempts": attempts, "escapes": escapes, "secret_ok": secret.startswith("s3cr3t-"),
    "home": os.environ.get("HOME"),
}), flush=True)
time.sleep(3 if wait else 0)
"""


async def _start_probe(
    executor: SSHExecutor,
    ws: str,
    peer: str,
    python: str,
    secret: str,
    keys: list[str],
    *,
    wait: bool = False,
) -> Any:
    """Start :data:`PROBE` in ``ws``; ``wait``: until ``peer`` belongs to a live run."""
    argv = [python, "-u", f"{ws}/src/probe.py", peer, "wait" if wait else "now", *keys]
    return await executor.start(argv, cwd=ws, env={"AIDP_TEST_SECRET": secret})


async def _report(proc: Any) -> dict[str, Any]:
    lines = [line.text async for line in proc.lines()]
    code = await proc.wait()
    reports = [json.loads(t.split(" ", 1)[1]) for t in lines if t.startswith("REPORT ")]
    assert code == 0 and len(reports) == 1, (code, lines[-20:])
    return dict(reports[0])


def _argv_of_every_process() -> tuple[str, int]:
    """Every process's command line on the node (this machine's pid namespace) and how many
    of them are probes."""
    texts = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            texts.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    probes = sum("probe.py" in t for t in texts)
    return "\n".join([*texts, listing]), probes


async def test_concurrent_runs_on_one_ssh_node_get_their_own_uids(
    tmp_path: Path,
    host: SshHost,
    client_key: Path,
    known_hosts: Path,
    run_user_node_paths: tuple[Path, str],
) -> None:
    ensure_run_user()
    ensure_run_uid_pool()
    workdir, python = run_user_node_paths
    node = ssh_node(host, workdir).model_copy(update={"python": python, "run_user": RUN_USER})
    keys = [str(host.authorized_keys), "/root/.ssh/authorized_keys"]
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    ws = {name: str(workdir / f"aidp-run-{uuid.uuid4()}") for name in "abcd"}
    execs = {
        name: SSHExecutor(node, client_keys=[str(client_key)], known_hosts=str(known_hosts))
        for name in ws
    }
    try:
        for name, path in ws.items():  # staged as the trainer stages: as the login user
            await execs[name].write_chunks(f"{path}/data/private.txt", _chunks(name.encode()))
            await execs[name].write_chunks(f"{path}/src/probe.py", _chunks(PROBE.encode()))

        # two runs at once: each tries the other's workspace while both live
        a, b = await asyncio.gather(
            _start_probe(execs["a"], ws["a"], ws["b"], python, secret, keys, wait=True),
            _start_probe(execs["b"], ws["b"], ws["a"], python, secret, keys, wait=True),
        )
        reading = asyncio.ensure_future(asyncio.gather(_report(a), _report(b)))
        seen_probes = 0
        while not reading.done():
            argv_text, probes = await asyncio.to_thread(_argv_of_every_process)
            assert secret not in argv_text
            seen_probes = max(seen_probes, probes)
            await asyncio.sleep(0.05)
        report_a, report_b = await reading
        assert seen_probes >= 2  # the argv scan ran while both runs lived
        for report, peer in ((report_a, report_b), (report_b, report_a)):
            assert POOL_FIRST <= report["uid"] < POOL_FIRST + POOL_COUNT, report
            assert report["gid"] == report["uid"] and report["groups"] == [], report
            assert report["peer_owner"] == peer["uid"], report  # tried once the peer's lived
            assert report["escapes"] == [], report["escapes"]
            assert len(report["attempts"]) == 10, report["attempts"]
            assert report["secret_ok"], "the secret did not reach the process"
        assert report_a["uid"] != report_b["uid"]
        assert report_a["home"] == f"{ws['a']}/home"
        assert not (Path(ws["b"]) / "planted.txt").exists()
        assert (Path(ws["a"]) / "data" / "private.txt").read_bytes() == b"a"
        uid_a = report_a["uid"]
        assert lease_of(ws["a"]) == uid_a and lease_of(ws["b"]) == report_b["uid"]
        # its processes gone, the workspace is the login user's again
        assert Path(ws["a"]).stat().st_uid == 0 and Path(ws["a"]).stat().st_mode & 0o077 == 0

        # removing the workspace releases its uid (and what it left in /tmp): a third run
        # gets it again
        assert Path(f"/tmp/aidp-probe-{uid_a}").exists()
        await execs["a"].remove_tree(ws["a"])
        assert not Path(ws["a"]).exists() and lease_of(ws["a"]) is None
        assert not Path(f"/tmp/aidp-probe-{uid_a}").exists()
        report_c = await _report(
            await _start_probe(execs["c"], ws["c"], ws["b"], python, secret, keys)
        )
        assert report_c["uid"] == uid_a and report_c["escapes"] == []

        # a stale lease (its workspace vanished without a release, nothing runs as it) is
        # recovered by the next run
        shutil.rmtree(ws["c"])
        assert lease_of(ws["c"]) == uid_a
        report_d = await _report(
            await _start_probe(execs["d"], ws["d"], ws["b"], python, secret, keys)
        )
        assert report_d["uid"] == uid_a and lease_of(ws["c"]) is None
        for name in ("b", "d"):
            await execs[name].remove_tree(ws[name])
            assert lease_of(ws[name]) is None
    finally:
        for name, executor in execs.items():
            if Path(ws[name]).exists():
                await executor.remove_tree(ws[name])
            await executor.close()


async def test_a_tenant_pth_file_never_runs_when_the_platform_uses_the_env_python(
    tmp_path: Path,
    host: SshHost,
    client_key: Path,
    known_hosts: Path,
    tiny_files: tuple[Path, Path],
) -> None:
    """A package in the run's environment may ship a ``.pth`` file (executed by ``site`` at
    interpreter start). The platform's own helper scripts run that interpreter outside the
    sandbox, as the login user: they must start it isolated, without ``site``."""
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    purelib = subprocess.run(
        [
            str(env / "bin" / "python"),
            "-c",
            "import sysconfig;print(sysconfig.get_paths()['purelib'])",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    marker = tmp_path / "pth-ran"
    Path(purelib, "evil.pth").write_text(
        f"import os; open({str(marker)!r}, 'w').write(str(os.getuid()))\n"
    )
    subprocess.run([str(env / "bin" / "python"), "-c", "pass"], check=True)
    assert marker.exists(), "the probe .pth does not run: the test proves nothing"
    marker.unlink()

    store = ArtifactStore(tmp_path / "store", InMemoryVault())
    key = put_dir(store, tiny_files[0], source="hf://tests/tiny-bert")
    node = ssh_node(host, tmp_path / "node").model_copy(
        update={"python": str(env / "bin" / "python")}
    )
    ws = str(tmp_path / "node" / "aidp-run-pth")
    executor = SSHExecutor(node, client_keys=[str(client_key)], known_hosts=str(known_hosts))
    try:
        await stage_manifest(executor=executor, store=store, key=key, workspace=ws, dest="model")
        await store_tree(
            executor=executor,
            store=store,
            root=f"{ws}/model",
            source="aidp://t",
            revision="1",
            meta={},
        )
        await ensure_inside(executor, f"{ws}/model", ws)
        await executor.free_port()
    finally:
        await executor.close()
    assert not marker.exists(), "a tenant's .pth ran with the platform's privileges"
