"""The run sandbox against a hostile custom script, on two local nodes of one run.

Real bubblewrap, real uids, the machine's real RabbitMQ and PostgreSQL ports: the script
tries every escape of the penetration test (tests/support/hostile.py) and the run must
still finish — with every attempt refused.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hostile import hostile_spec, parse_report, victim_dir
from tests.unit.trainer.conftest import Harness

pytestmark = pytest.mark.slow


@pytest.fixture
def listeners(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """A TCP service on the host's loopback (a gateway stand-in) and a Unix socket (another
    user's model server stand-in); both accept anything."""
    tcp = socket.create_server(("127.0.0.1", 0))
    path = str(tmp_path / "other-model.sock")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(path)
    os.chmod(path, 0o777)  # even a world-writable socket must be out of reach
    unix.listen()
    try:
        yield tcp.getsockname()[1], path
    finally:
        tcp.close()
        unix.close()


def plant_platform_secrets(tmp: Path) -> dict[str, Path]:
    """What a default ``aidp up`` keeps beside a run: vault init material, databases and
    another run's plaintext workspace (made world-readable: permissions alone must not be
    what stops the script)."""
    data = tmp / "data"
    files = {
        "init": data / "openbao" / "init.json",
        "db": tmp / "trainer.db",
        "other_ws": tmp / "nodes" / "other-run" / "aidp-run-x" / "data" / "private.csv",
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text("secret")
        os.chmod(path, 0o644)
    for folder in (data, data / "openbao", tmp / "nodes" / "other-run"):
        os.chmod(folder, 0o755)
    return files


async def test_hostile_script_escapes_nothing_and_still_finishes(
    trainer: Harness, listeners: tuple[int, str]
) -> None:
    tcp_port, other_socket = listeners
    planted = plant_platform_secrets(trainer.tmp)
    victim = victim_dir(trainer.tmp)
    escaped = trainer.tmp / f"escaped-{uuid.uuid4().hex[:6]}.txt"
    os.environ["AIDP_TEST_CANARY"] = "platform-environment-canary"
    targets = {
        "read": [str(p) for p in planted.values()],
        "list": [str(trainer.tmp / "data"), str(trainer.tmp / "nodes"), "/root", "/home"],
        "tcp": [["127.0.0.1", tcp_port], ["127.0.0.1", 5432], ["127.0.0.1", 5672]],
        "unix": [other_socket],
        "write": [str(escaped), str(planted["init"])],
        "pids": [os.getpid()],
        "checkpoint_victims": [str(victim)],
    }
    spec = hostile_spec(targets)
    spec["model"] = "hf://tests/tiny-bert"
    run_id = await trainer.start_run(spec=spec, nodes=2)
    try:
        completed = await trainer.events.first("TrainingCompleted", run_id, timeout=180)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; log tail: {trainer.events.logs(run_id)[-40:]}") from None
    logs = trainer.events.logs(run_id)

    report = parse_report(logs)
    assert report["escapes"] == [], report["escapes"]
    assert len(report["attempts"]) >= 15, report["attempts"]
    assert report["uid"] not in (0, os.getuid()) and report["gid"] != 0
    assert completed.payload["metrics"] == {"escapes": 0.0}
    assert any("HOSTILE-WORLD 2" in line for line in logs), "the ranks did not rendezvous"

    # nothing reached the host, nothing of the host was stored or deleted
    assert not escaped.exists()
    assert planted["init"].read_text() == "secret"
    assert (victim / "precious.txt").read_text() == "must survive"
    assert any("checkpoint of step 1000 refused" in line for line in logs), logs[-30:]
    assert any("checkpoint of step 2000 refused" in line for line in logs), logs[-30:]
    assert any("checkpoint of step 3000 not stored" in line for line in logs), logs[-30:]
    assert not any("platform-environment-canary" in line for line in logs)


async def test_sandbox_workspace_belongs_to_the_run_uid(trainer: Harness) -> None:
    script = """
        import os, aidp_progress as aidp
        (aidp.output_dir()).mkdir(parents=True, exist_ok=True)
        (aidp.output_dir() / "who.txt").write_text(str(os.getuid()))
        print("HOME=" + os.environ["HOME"] + " USER=" + os.environ.get("USER", ""))
        aidp.completed({})
    """
    spec = hostile_spec({})
    spec["model"] = "hf://tests/tiny-bert"
    spec["train"]["script"] = __import__("textwrap").dedent(script)
    run_id = await trainer.start_run(spec=spec)
    await trainer.events.first("TrainingCompleted", run_id, timeout=120)
    line = next(x for x in trainer.events.logs(run_id) if x.startswith("HOME="))
    assert "/home USER=aidp-run" in line


def test_trainer_refuses_local_nodes_in_distributed_mode_unless_allowed(tmp_path: Path) -> None:
    from services.trainer.nodes.factory import node_executor
    from services.trainer.nodes.local import LocalExecutor
    from services.trainer.settings import TrainerSettings
    from shared.errors import ProviderError
    from shared.events import NodeInfo

    strict = {
        "data_dir": tmp_path,
        "mode": "distributed",
        "vault_addr": "http://127.0.0.1:1",
        "vault_token": "s.a-real-looking-token",
    }
    node = NodeInfo(name="local-0", address="127.0.0.1", workdir=str(tmp_path))
    with pytest.raises(ProviderError, match="AIDP_ALLOW_LOCAL_PROVIDER"):
        node_executor(node, TrainerSettings(**strict), tenant=uuid.uuid4())
    allowed = TrainerSettings(**strict, allow_local_provider=True)
    executor = node_executor(node, allowed, tenant=uuid.uuid4())
    assert isinstance(executor, LocalExecutor) and executor.sandbox is not None


async def test_a_run_over_its_memory_limit_fails_and_says_so(
    tmp_path: Path, tiny_files: tuple[Path, Path]
) -> None:
    from tests.unit.trainer.conftest import running_trainer

    script = """
        import aidp_progress as aidp
        hog = []
        for _ in range(64):  # 4 GiB, touched page by page
            hog.append(bytearray(64 * 1024 * 1024))
        aidp.completed({})
    """
    spec = hostile_spec({})
    spec["model"] = "hf://tests/tiny-bert"
    spec["train"]["script"] = __import__("textwrap").dedent(script)
    async with running_trainer(tmp_path, tiny_files, sandbox_memory_mb=700) as trainer:
        run_id = await trainer.start_run(spec=spec)
        failed = await trainer.events.first("TrainingFailed", run_id, timeout=180)
    assert "memory limit (700 MB" in failed.payload["reason"], failed.payload["reason"]
