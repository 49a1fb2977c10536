"""Submit → first ``TrainingProgress`` for a single-process local run, warm beside cold.

Each round runs the same tiny text-classification job twice on a trainer (memory bus,
SQLite, the real sandbox): once on a node nobody used before (a fresh interpreter in a
fresh sandbox: the cold start) and once on a node whose spare sandbox is ready
(services/trainer/warm.py). "Submit" is the moment the run's last input event (artifacts
cached) is published. Three rounds; min/median/max printed. Target: warm median < 1.5 s.
"""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path

import pytest

from services.trainer.nodes.local import LocalExecutor, LocalSandbox, sandboxes_for
from shared.events import EnvInfo, NodesReady, ProjectCreated
from tests.unit.trainer.conftest import (
    PYTHON,
    Harness,
    running_trainer,
    text_spec,
    tiny_files,  # noqa: F401 - the fixture
)

pytestmark = pytest.mark.bench

ROUNDS = 3


async def _submit_to_progress(trainer: Harness, node_name: str) -> tuple[float, float]:
    """Seconds from submit to TrainingStarted (the platform's part: staging, launch) and
    to the first TrainingProgress."""
    spec = text_spec(args={"epochs": 1, "max_steps": 3}, checkpoint_every=100)
    run_id, project_id = uuid.uuid4(), uuid.uuid4()
    ready = NodesReady(
        nodes=[trainer.node(node_name)],
        env=EnvInfo(lock_hash="c" * 64, python=PYTHON, torch_version="2.13.0"),
    )
    await trainer.publish(ProjectCreated(owner_id=uuid.uuid4(), spec=spec), run_id=run_id,
                          project_id=project_id)  # fmt: skip
    await trainer.publish(ready, run_id=run_id, project_id=project_id)
    start = time.perf_counter()
    await trainer.publish(trainer.artifacts(), run_id=run_id, project_id=project_id)
    await trainer.events.first("TrainingStarted", run_id, timeout=300)
    started = time.perf_counter() - start
    await trainer.events.first("TrainingProgress", run_id, timeout=300)
    elapsed = time.perf_counter() - start
    await trainer.events.first("TrainingCompleted", run_id, timeout=300)
    return started, elapsed


def _summary(values: list[float]) -> str:
    return f"{min(values):.2f}/{statistics.median(values):.2f}/{max(values):.2f} s"


async def test_warm_start_first_progress(
    tmp_path: Path,
    tiny_files: tuple[Path, Path],  # noqa: F811 - the imported fixture
) -> None:
    async with running_trainer(tmp_path, tiny_files, trainer_warm_workers=1) as trainer:
        jobs = trainer.app.state.trainer.jobs
        pool = jobs.warm
        node = trainer.node("bench-warm")
        local = LocalExecutor(
            node, sandbox=LocalSandbox(sandboxes_for(jobs.settings.sandbox_policy()), tenant="x")
        )
        await _submit_to_progress(trainer, "bench-warm")  # seeds the spare of that node
        cold, warm, cold_started, warm_started = [], [], [], []
        for round_no in range(ROUNDS):
            pool.size = 0  # a cold start, and no spare for that node competing for CPU
            started, elapsed = await _submit_to_progress(trainer, f"bench-cold-{round_no}")
            cold_started.append(started)
            cold.append(elapsed)
            pool.size = 1
            await trainer.events.wait_for(
                lambda: pool.ready(local, PYTHON) >= 1, timeout=300, what="a ready spare"
            )
            claimed = pool.claimed
            started, elapsed = await _submit_to_progress(trainer, "bench-warm")
            warm_started.append(started)
            warm.append(elapsed)
            assert pool.claimed == claimed + 1, "the warm run did not use the spare"
        print(f"\nsubmit -> first TrainingProgress, cold (fresh interpreter): {_summary(cold)}")
        print(f"submit -> first TrainingProgress, warm (spare sandbox):     {_summary(warm)}")
        print(f"  of which submit -> TrainingStarted: cold {_summary(cold_started)},"
              f" warm {_summary(warm_started)}")  # fmt: skip
        ratios = [w / c for w, c in zip(warm, cold, strict=True)]
        print(f"warm / cold: {_summary(ratios).replace(' s', '')}")
        assert statistics.median(warm) < 1.5, warm
