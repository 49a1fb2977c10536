"""Warm starts: a second single-process run on a local node starts in a spare sandbox
prepared ahead (services/trainer/warm.py) and trains exactly like a cold one."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.trainer.nodes.local import LocalExecutor, LocalSandbox, sandboxes_for
from shared.events import EnvInfo, NodeInfo, NodesReady, ProjectCreated
from tests.unit.trainer.conftest import PYTHON, Harness, running_trainer, text_spec

pytestmark = pytest.mark.slow


async def _run_on(trainer: Harness, node_name: str, spec: dict[str, object]) -> uuid.UUID:
    """Start a run on the (fixed) local node ``node_name``: every run shares its workdir."""
    run_id, project_id = uuid.uuid4(), uuid.uuid4()
    ready = NodesReady(
        nodes=[trainer.node(node_name)],
        env=EnvInfo(lock_hash="c" * 64, python=PYTHON, torch_version="2.13.0"),
    )
    for message in (ProjectCreated(owner_id=uuid.uuid4(), spec=spec), ready, trainer.artifacts()):
        await trainer.publish(message, run_id=run_id, project_id=project_id)
    return run_id


@pytest.fixture
async def trainer(tmp_path: Path, tiny_files: tuple[Path, Path]) -> AsyncIterator[Harness]:
    async with running_trainer(tmp_path, tiny_files, trainer_warm_workers=1) as harness:
        yield harness


async def test_second_run_starts_warm_and_trains_like_a_cold_one(trainer: Harness) -> None:
    jobs = trainer.app.state.trainer.jobs
    pool = jobs.warm
    spec = text_spec(args={"epochs": 1}, checkpoint_every=4)
    ev = trainer.events

    cold = await _run_on(trainer, "warm-node", spec)
    await ev.first("TrainingCompleted", cold, timeout=180)
    assert pool.claimed == 0

    node = trainer.node("warm-node")
    local = LocalExecutor(
        node, sandbox=LocalSandbox(sandboxes_for(jobs.settings.sandbox_policy()), tenant="x")
    )
    await ev.wait_for(lambda: pool.ready(local, PYTHON) == 1, timeout=180, what="a ready spare")
    spare_root = Path(node.workdir).parent / ".aidp-warm"
    spare_folders = [p for p in os.listdir(spare_root) if p.startswith("aidp-warm-")]
    assert len(spare_folders) == 1

    warm = await _run_on(trainer, "warm-node", spec)
    completed = await ev.first("TrainingCompleted", warm, timeout=180)
    assert pool.claimed == 1
    # the spare's folder became the run's workspace; a new spare is being prepared
    assert not (spare_root / spare_folders[0]).exists()
    assert (Path(node.workdir) / f"aidp-run-{warm}").is_dir()
    # same steps, same progress and checkpoints as the cold run
    steps = [e.payload["step"] for e in ev.of("TrainingProgress", warm)]
    cold_steps = [e.payload["step"] for e in ev.of("TrainingProgress", cold)]
    assert steps[-1] == cold_steps[-1] and steps == sorted(steps), (steps, cold_steps)
    assert completed.payload["model_version"]
    # checkpoints (every 4 steps) were announced and stored as in the cold run: a refused
    # or unstored one would say so in the log
    logs = " ".join(str(e.payload) for e in ev.of("TrainingLog", warm))
    assert "aidp: checkpoint" not in logs and "Traceback" not in logs, logs[-2000:]
    assert ev.of("TrainingStarted", warm)[0].payload["world_size"] == 1


async def test_no_spare_under_memory_pressure_and_only_eligible_launches(tmp_path: Path) -> None:
    from services.trainer.settings import TrainerSettings
    from services.trainer.warm import WarmPool
    from services.trainer.warm_boot import available_memory_mb

    settings = TrainerSettings(data_dir=tmp_path / "data")
    node = NodeInfo(name="n", address="127.0.0.1", workdir=str(tmp_path), python=PYTHON)
    local = LocalExecutor(
        node, sandbox=LocalSandbox(sandboxes_for(settings.sandbox_policy()), tenant="t")
    )
    # more memory demanded than the host has: nothing is started, nothing is claimed
    pool = WarmPool(size=2, min_available_mb=available_memory_mb() + (1 << 20))
    pool.replenish(local, PYTHON)
    assert pool.count() == 0 and not pool._tasks
    assert await pool.claim(local, PYTHON, str(tmp_path / "aidp-run-x")) is None
    assert not (tmp_path.parent / ".aidp-warm").exists()
    await pool.close()

    on = WarmPool(size=1, min_available_mb=0)
    assert on.eligible(local, task="text-classification", nnodes=1, nproc=1)
    assert not on.eligible(local, task="custom", nnodes=1, nproc=1)
    assert not on.eligible(local, task="causal-lm", nnodes=2, nproc=1)
    assert not on.eligible(local, task="causal-lm", nnodes=1, nproc=2)
    assert not on.eligible(LocalExecutor(node), task="causal-lm", nnodes=1, nproc=1)
    off = WarmPool(size=0, min_available_mb=0)
    assert not off.eligible(local, task="text-classification", nnodes=1, nproc=1)


def _uid_processes(uid: int) -> list[int]:
    """Pids running as ``uid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            uids = next(line for line in status.splitlines() if line.startswith("Uid:"))
            if int(uids.split()[1]) == uid:
                found.append(int(entry))
    return found


async def test_spares_hold_the_memory_limit_and_die_whole_on_cancel(tmp_path: Path) -> None:
    """Pool level, real sandboxes: two spares (distinct uids); one claimed by a script that
    goes over the memory limit (reported as the cold path reports it), one cancelled by
    killing its process group (nothing of its uid survives). A claimed process sees the
    run's environment only and no input."""
    import signal

    from services.trainer.settings import TrainerSettings
    from services.trainer.warm import WarmPool

    settings = TrainerSettings(data_dir=tmp_path / "data", sandbox_memory_mb=700)
    workdir = tmp_path / "nodes" / "n"
    workdir.mkdir(parents=True)
    node = NodeInfo(name="n", address="127.0.0.1", workdir=str(workdir), python=PYTHON)
    local = LocalExecutor(
        node, sandbox=LocalSandbox(sandboxes_for(settings.sandbox_policy()), tenant="t")
    )
    pool = WarmPool(size=2, min_available_mb=0)
    try:
        pool.replenish(local, PYTHON)
        for _ in range(900):
            if pool.ready(local, PYTHON) == 2:
                break
            await asyncio.sleep(0.2)
        assert pool.ready(local, PYTHON) == 2

        hog_ws = str(workdir / "aidp-run-hog")
        hog = await pool.claim(local, PYTHON, hog_ws)
        assert hog is not None and Path(hog_ws, "src").is_dir()
        Path(hog_ws, "src", "hog.py").write_text(
            "import os, sys\n"
            "assert sys.stdin.read() == ''\n"
            "assert 'AIDP_WARM_PRELOAD' not in os.environ and os.environ['RUN_ONLY'] == 'yes'\n"
            "assert 'LD_PRELOAD' not in os.environ and '' not in sys.path\n"
            "print('env ok', flush=True)\n"
            "hog = [bytearray(64 << 20) for _ in range(64)]\n"
        )
        proc = await pool.start(
            hog,
            workspace=hog_ws,
            script=f"{hog.folder}/src/hog.py",
            env={"RUN_ONLY": "yes", "LD_PRELOAD": "/x.so"},
        )
        lines = [line.text async for line in proc.lines()]
        code = await proc.wait()
        assert any(line == "env ok" for line in lines), lines[-20:]
        assert code != 0 and proc.limit_hit and "700 MB" in proc.limit_hit, (code, lines[-5:])

        sleep_ws = str(workdir / "aidp-run-sleep")
        sleeper = await pool.claim(local, PYTHON, sleep_ws)
        assert sleeper is not None and sleeper.spec.uid != hog.spec.uid
        Path(sleep_ws, "src", "sleep.py").write_text(
            "import subprocess, time\n"
            "subprocess.Popen(['sleep', '600'])\n"
            "print('sleeping', flush=True)\n"
            "time.sleep(600)\n"
        )
        proc = await pool.start(
            sleeper, workspace=sleep_ws, script=f"{sleeper.folder}/src/sleep.py", env={}
        )
        async for line in proc.lines():
            if line.text == "sleeping":
                break
        assert _uid_processes(sleeper.spec.uid)
        await local.kill_group(proc.pgid, signal.SIGKILL)
        assert await asyncio.wait_for(proc.wait(), 30) == -signal.SIGKILL
        for _ in range(50):
            if not _uid_processes(sleeper.spec.uid):
                break
            await asyncio.sleep(0.1)
        assert not _uid_processes(sleeper.spec.uid)
    finally:
        await pool.close()
    assert not list((tmp_path / "nodes" / ".aidp-warm").iterdir())


def _sandboxed_node(tmp_path: Path) -> tuple[Path, LocalExecutor]:
    """A local node's workdir and its sandboxed executor (tenant ``t``)."""
    from services.trainer.settings import TrainerSettings

    settings = TrainerSettings(data_dir=tmp_path / "data")
    workdir = tmp_path / "nodes" / "n"
    workdir.mkdir(parents=True)
    node = NodeInfo(name="n", address="127.0.0.1", workdir=str(workdir), python=PYTHON)
    sandbox = LocalSandbox(sandboxes_for(settings.sandbox_policy()), tenant="t")
    return workdir, LocalExecutor(node, sandbox=sandbox)


async def test_a_spare_that_died_is_never_claimed_and_is_cleaned_up(tmp_path: Path) -> None:
    import signal

    from services.trainer.warm import WarmPool

    workdir, local = _sandboxed_node(tmp_path)
    pool = WarmPool(size=1, min_available_mb=0)
    try:
        pool.replenish(local, PYTHON)
        for _ in range(900):
            if pool.ready(local, PYTHON) == 1:
                break
            await asyncio.sleep(0.2)
        (spare,) = pool._spares[next(iter(pool._spares))]
        os.killpg(spare.proc.pid, signal.SIGKILL)
        await spare.proc.wait()
        assert await pool.claim(local, PYTHON, str(workdir / "aidp-run-x")) is None
        assert not (workdir / "aidp-run-x").exists()
        for _ in range(50):
            if not Path(spare.folder).exists():
                break
            await asyncio.sleep(0.1)
        assert not Path(spare.folder).exists() and pool.count() == 0
    finally:
        await pool.close()


async def test_a_spare_released_while_importing_is_not_reported_as_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from services.trainer.warm import WarmPool

    workdir, local = _sandboxed_node(tmp_path)
    pool = WarmPool(size=1, min_available_mb=0)
    try:
        pool.replenish(local, PYTHON)
        for _ in range(300):
            if pool._spares:
                break
            await asyncio.sleep(0.05)
        (spare,) = pool._spares[next(iter(pool._spares))]
        assert not spare.ready.done()  # still importing torch
        pool.release_all()  # memory pressure
        await asyncio.wait_for(asyncio.shield(spare.ready), 30)
        for _ in range(50):
            if not Path(spare.folder).exists():
                break
            await asyncio.sleep(0.1)
        assert spare.ready.result() is False and not Path(spare.folder).exists()
        assert "did not become ready" not in caplog.text
    finally:
        await pool.close()
