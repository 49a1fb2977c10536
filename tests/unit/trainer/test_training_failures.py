"""Custom scripts, failures, cancel, crash-resume and multi-node on the memory bus."""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.events import NodesFailed, RunCancelled
from tests.unit.trainer.conftest import Harness, text_spec

pytestmark = pytest.mark.slow


def custom_spec(script: str, **train: Any) -> dict[str, Any]:
    return {
        "name": "custom",
        "model": "hf://tests/tiny-bert",
        "task": "custom",
        "train": {"entrypoint": "train.py", "script": textwrap.dedent(script), **train},
    }


def processes_under(path: Path) -> list[int]:
    """Pids whose command line mentions ``path`` (the run's workspace)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(int(entry))
    return found


PROGRESS_SCRIPT = """
    import time
    import aidp_progress as aidp

    total = int(aidp.train_args().get("steps", 10))
    reporter = aidp.Reporter(total_steps=total, samples_per_step=4, min_interval=0)
    for step in range(aidp.resume_step() + 1, total + 1):
        time.sleep(float(aidp.train_args().get("sleep", 0.01)))
        reporter.step(step, loss=1.0 / step, epoch=step / total, learning_rate=0.1)
    (aidp.output_dir() / "weights.txt").write_text("trained")
    aidp.completed({"final_loss": 1.0 / total})
"""


async def test_custom_script_progress_through_helper_module(trainer: Harness) -> None:
    run_id = await trainer.start_run(spec=custom_spec(PROGRESS_SCRIPT, args={"steps": 10}))
    completed = await trainer.events.first("TrainingCompleted", run_id)
    steps = [e.payload["step"] for e in trainer.events.of("TrainingProgress", run_id)]
    assert steps[-1] == 10 and steps == sorted(steps)
    assert completed.payload["metrics"] == {"final_loss": 0.1}
    assert completed.payload["deploy"] is False  # no deploy section: nothing to start
    last = trainer.events.of("TrainingProgress", run_id)[-1].payload
    assert last["samples_per_sec"] > 0 and last["learning_rate"] == 0.1


async def test_custom_script_that_raises_fails_with_traceback(trainer: Harness) -> None:
    script = """
        import aidp_progress as aidp
        aidp.report(1, total_steps=5, loss=0.5)
        def explode():
            raise ValueError("boom at step 1")
        explode()
    """
    run_id = await trainer.start_run(spec=custom_spec(script))
    failed = await trainer.events.first("TrainingFailed", run_id)
    assert "ValueError: boom at step 1" in failed.payload["reason"]
    assert failed.payload["retryable"] is False and failed.payload["exit_code"] not in (0, None)
    await trainer.events.wait_for(
        lambda: any("Traceback" in line for line in trainer.events.logs(run_id))
    )
    assert len(trainer.events.of("TrainingStarted", run_id)) == 1  # not retried


async def test_cancel_stops_training_within_seconds(trainer: Harness) -> None:
    spec = custom_spec(PROGRESS_SCRIPT, args={"steps": 100000, "sleep": 0.05})
    run_id = await trainer.start_run(spec=spec)
    await trainer.events.first("TrainingProgress", run_id)
    workspace = Path(trainer.tmp / "nodes").glob(f"*/aidp-run-{run_id}")
    ws = next(iter(workspace))
    assert processes_under(ws)
    project_id = trainer.events.of("TrainingStarted", run_id)[0].project_id
    assert project_id is not None
    await trainer.publish(RunCancelled(), run_id=run_id, project_id=project_id)
    loop = asyncio.get_running_loop()
    began = loop.time()
    while processes_under(ws) or ws.exists():
        assert loop.time() - began < 15, "training still running 15 s after cancel"
        await asyncio.sleep(0.2)
    assert not trainer.events.of("TrainingCompleted", run_id)
    assert not trainer.events.of("TrainingFailed", run_id)


async def test_killed_training_resumes_from_checkpoint(trainer: Harness) -> None:
    spec = text_spec(args={"max_steps": 400, "batch_size": 4}, checkpoint_every=20)
    run_id = await trainer.start_run(spec=spec)
    ev = trainer.events
    await ev.wait_for(
        lambda: any(e.payload["step"] >= 70 for e in ev.of("TrainingProgress", run_id)),
        what="step 70",
    )
    ws = next(iter(Path(trainer.tmp / "nodes").glob(f"*/aidp-run-{run_id}")))
    workers = [
        pid
        for pid in processes_under(ws)
        if b"text_classification.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
        and b"torch.distributed.run" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert workers, "no training worker found"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    second = await ev.wait_for(
        lambda: [e for e in ev.of("TrainingStarted", run_id) if e.payload["attempt"] == 2],
        what="second attempt",
    )
    resumed = second[0].payload["resumed_from_step"]
    assert resumed is not None and resumed >= 20
    await ev.first("TrainingCompleted", run_id, timeout=180)
    after = [
        e.payload["step"]
        for e in ev.items
        if e.type == "TrainingProgress"
        and e.run_id == run_id
        and e.occurred_at > second[0].occurred_at
    ]
    assert after and after[0] > resumed, (resumed, after[:3])
    assert after[-1] == 400
    # checkpoints were pruned to the latest ones while training, then dropped on registration
    from sqlmodel import select

    from services.trainer.models import Checkpoint, CreatedBlob

    def checkpoints_left() -> int:
        with trainer.app.state.runtime.db.session() as session:
            return len(session.exec(select(Checkpoint).where(Checkpoint.run_id == run_id)).all())

    await ev.wait_for(lambda: checkpoints_left() == 0, timeout=30, what="checkpoints dropped")
    with trainer.app.state.runtime.db.session() as session:
        created = session.exec(select(CreatedBlob.digest)).all()
    assert created and all(trainer.store.has(d) for d in created)  # the model's blobs only


async def test_two_local_nodes_train_with_world_size_two(trainer: Harness) -> None:
    script = """
        import torch, torch.distributed as dist
        import aidp_progress as aidp
        dist.init_process_group("gloo")
        total = torch.tensor([dist.get_rank() + 1.0])
        dist.all_reduce(total)
        aidp.report(1, total_steps=1, loss=float(total), samples=dist.get_world_size())
        if aidp.is_main_process():
            (aidp.output_dir() / "sum.txt").write_text(str(float(total)))
        dist.barrier()
        dist.destroy_process_group()
        aidp.completed({"world": float(total)})
    """
    run_id = await trainer.start_run(spec=custom_spec(script), nodes=2)
    started = await trainer.events.first("TrainingStarted", run_id)
    assert started.payload["world_size"] == 2 and len(started.payload["nodes"]) == 2
    completed = await trainer.events.first("TrainingCompleted", run_id, timeout=120)
    assert completed.payload["metrics"] == {"world": 3.0}  # ranks 1 + 2


async def test_nodes_failed_fails_the_run_and_duplicates_are_ignored(trainer: Harness) -> None:
    run_id, project_id = uuid.uuid4(), uuid.uuid4()
    envelope = await trainer.publish(
        NodesFailed(reason="no capacity"), run_id=run_id, project_id=project_id
    )
    failed = await trainer.events.first("TrainingFailed", run_id, timeout=10)
    assert failed.payload["reason"] == "provisioning failed: no capacity"
    await trainer.bus.publish(envelope)  # a redelivery
    await asyncio.sleep(0.5)
    assert len(trainer.events.of("TrainingFailed", run_id)) == 1


async def test_trainer_restart_resumes_the_run_from_its_checkpoint(
    tmp_path: Path, tiny_files: tuple[Path, Path]
) -> None:
    from shared.secrets import InMemoryVault
    from tests.unit.trainer.conftest import Events, running_trainer

    vault, events = InMemoryVault(), Events()
    spec = text_spec(args={"max_steps": 300, "batch_size": 4}, checkpoint_every=20)
    async with running_trainer(tmp_path, tiny_files, vault=vault, events=events) as first:
        run_id = await first.start_run(spec=spec)
        await events.wait_for(
            lambda: any(e.payload["step"] >= 50 for e in events.of("TrainingProgress", run_id)),
            what="step 50",
        )
    # the first trainer is gone (its processes too); a new one takes the run over
    async with running_trainer(tmp_path, tiny_files, vault=vault, events=events):
        second = await events.wait_for(
            lambda: [e for e in events.of("TrainingStarted", run_id) if e.payload["attempt"] == 2],
            what="attempt 2",
        )
        assert (second[0].payload["resumed_from_step"] or 0) >= 20
        await events.first("TrainingCompleted", run_id, timeout=180)
