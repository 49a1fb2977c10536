"""Warm starts: a second single-process run on a local node starts in a spare sandbox
prepared ahead (services/trainer/warm.py) and trains exactly like a cold one."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from services.trainer.nodes import LocalExecutor, LocalSandbox, sandboxes_for
from shared.events import EnvInfo, NodeInfo, NodesReady, ProjectCreated
from tests.unit.trainer.conftest import PYTHON, Harness, text_spec

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
    from services.trainer.warm import WarmPool, available_memory_mb

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
