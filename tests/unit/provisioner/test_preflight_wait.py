"""An LLM task's run waits for its pre-flight check before any node is created (issue 15):
DatasetValidated starts provisioning whichever arrives first, ValidationFailed creates
nothing, a cancel while waiting releases nothing."""

from __future__ import annotations

import asyncio
import uuid

from services.provisioner.drivers.fake import FakeCloud
from services.provisioner.models import RunNodes
from shared.events import (
    DatasetValidated,
    PreflightIssue,
    ProjectCreated,
    RunCancelled,
    ValidationFailed,
)
from tests.unit.provisioner.harness import Harness, spec_dict


def chat_spec() -> dict:
    spec = spec_dict(provider="idc")
    spec["task"] = "chat"
    spec["train"] = {"method": "lora", "args": {"lora_r": 4}}
    return spec


async def _state(h: Harness, run: uuid.UUID, want: str, timeout: float = 10.0) -> RunNodes:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with h.provisioner.runtime.db.session() as s:
            row = s.get(RunNodes, run)
        if row is not None and row.state == want:
            return row
        assert asyncio.get_running_loop().time() < deadline, row and row.state
        await asyncio.sleep(0.05)


PASSED = DatasetValidated(task="chat", rows_checked=48, method="lora")
FAILED = ValidationFailed(
    task="chat",
    reason="1 of 16 checked rows are malformed (row 5 of train.jsonl: roles not alternating)",
    rows_checked=16,
    error_rows=1,
    issues=[PreflightIssue(file="train.jsonl", row=5, problem="roles not alternating")],
)


async def test_the_run_waits_for_the_check_then_provisions(
    harness: Harness, cloud: FakeCloud
) -> None:
    project, run = uuid.uuid4(), uuid.uuid4()
    await harness.publish(
        ProjectCreated(owner_id=uuid.uuid4(), spec=chat_spec()), project_id=project, run_id=run
    )
    await _state(harness, run, "validating")
    await asyncio.sleep(0.3)
    assert not harness.of("ProvisioningProgress", run) and not cloud.nodes
    await harness.publish(PASSED, project_id=project, run_id=run)
    await harness.wait_for("NodesReady", run)
    assert len(cloud.nodes) == 1


async def test_a_check_seen_before_the_run_is_kept(harness: Harness, cloud: FakeCloud) -> None:
    project, run = uuid.uuid4(), uuid.uuid4()
    await harness.publish(PASSED, project_id=project, run_id=run)
    await asyncio.sleep(0.2)
    await harness.publish(
        ProjectCreated(owner_id=uuid.uuid4(), spec=chat_spec()), project_id=project, run_id=run
    )
    await harness.wait_for("NodesReady", run)


async def test_a_failed_check_creates_nothing(harness: Harness, cloud: FakeCloud) -> None:
    project, run = uuid.uuid4(), uuid.uuid4()
    await harness.publish(
        ProjectCreated(owner_id=uuid.uuid4(), spec=chat_spec()), project_id=project, run_id=run
    )
    await _state(harness, run, "validating")
    await harness.publish(FAILED, project_id=project, run_id=run)
    row = await _state(harness, run, "failed")
    assert row.failed_step == "preflight" and "row 5 of train.jsonl" in (row.error or "")
    await asyncio.sleep(0.3)
    assert not cloud.nodes and not harness.events  # no event at all: nothing to report


async def test_a_run_cancelled_while_waiting_is_released_without_work(
    harness: Harness, cloud: FakeCloud
) -> None:
    project, run = uuid.uuid4(), uuid.uuid4()
    await harness.publish(
        ProjectCreated(owner_id=uuid.uuid4(), spec=chat_spec()), project_id=project, run_id=run
    )
    await _state(harness, run, "validating")
    await harness.publish(RunCancelled(by=uuid.uuid4()), project_id=project, run_id=run)
    await _state(harness, run, "released")
    await harness.publish(PASSED, project_id=project, run_id=run)  # too late: nothing starts
    await asyncio.sleep(0.3)
    assert not cloud.nodes and not harness.of("NodesReady", run)
