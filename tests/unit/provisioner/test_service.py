"""The provisioner's job state machine with a fake driver and a fake env builder."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from services.provisioner.drivers.fake import FakeCloud
from services.provisioner.models import RunNodes
from shared.events import (
    ProjectCreated,
    ProjectDeleted,
    RunCancelled,
    RunRequested,
    TrainingCompleted,
    TrainingFailed,
)
from tests.support.service_auth import as_service
from tests.unit.provisioner.harness import FakeEnvBuilder, Harness, spec_dict


async def _create(h: Harness, spec: dict, *, nodes: int = 1) -> tuple[uuid.UUID, uuid.UUID]:
    project, run = uuid.uuid4(), uuid.uuid4()
    spec["resources"]["nodes"] = nodes
    await h.publish(
        ProjectCreated(owner_id=uuid.uuid4(), spec=spec), project_id=project, run_id=run
    )
    return project, run


async def test_project_created_ends_in_nodes_ready(harness: Harness, cloud: FakeCloud) -> None:
    project, run = await _create(harness, spec_dict(provider="idc"), nodes=2)
    ready = await harness.wait_for("NodesReady", run)
    nodes = ready.payload["nodes"]
    assert [n["name"] for n in nodes] == ["idc-0", "idc-1"]
    env = ready.payload["env"]
    assert env["torch_version"] == "2.13.0+cpu" and len(env["lock_hash"]) == 64
    assert nodes[0]["python"] == env["python"] and nodes[0]["workdir"]
    assert ready.project_id == project
    stages = [e.payload["stage"] for e in harness.of("ProvisioningProgress", run)]
    assert stages[:2] == ["lock", "nodes"] and "configure" in stages
    assert len(cloud.nodes) == 2

    assert harness.app is not None
    transport = httpx.ASGITransport(app=harness.app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://p", auth=as_service("provisioner")
    ) as client:
        body = (await client.get(f"/internal/runs/{run}/environment")).json()
        missing = await client.get(f"/internal/runs/{uuid.uuid4()}/environment")
    assert body["lock_hash"] == env["lock_hash"] and "six==1.0" in body["lock"]
    assert body["torch_version"] == "2.13.0+cpu"
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_same_spec_resolves_once_and_locks_are_identical(
    harness: Harness, builder: FakeEnvBuilder
) -> None:
    spec = spec_dict(provider="idc")
    project, run1 = await _create(harness, spec)
    await harness.wait_for("NodesReady", run1)
    run2 = uuid.uuid4()
    await harness.publish(RunRequested(spec=spec, run_number=2), project_id=project, run_id=run2)
    await harness.wait_for("NodesReady", run2)
    with harness.provisioner.runtime.db.session() as s:
        a, b = s.get(RunNodes, run1), s.get(RunNodes, run2)
        assert a is not None and b is not None
        assert a.lock == b.lock and a.lock_hash == b.lock_hash
        assert b.owner_id == a.owner_id  # a later run acts for the project's owner
    assert builder.resolved == 1


async def test_duplicate_delivery_creates_nodes_once(harness: Harness, cloud: FakeCloud) -> None:
    project, run = uuid.uuid4(), uuid.uuid4()
    from shared.events import new_event

    envelope = new_event(
        ProjectCreated(owner_id=uuid.uuid4(), spec=spec_dict(provider="idc")),
        project_id=project,
        run_id=run,
    )
    assert harness.bus is not None
    await harness.bus.publish(envelope)
    await harness.bus.publish(envelope)
    await harness.wait_for("NodesReady", run)
    await asyncio.sleep(0.2)
    assert len(harness.of("NodesReady", run)) == 1 and len(cloud.created) == 1


async def test_transient_errors_are_retried(harness: Harness, cloud: FakeCloud) -> None:
    cloud.transient_creates = 3
    _, run = await _create(harness, spec_dict(provider="idc"))
    await harness.wait_for("NodesReady", run)
    assert cloud.transient_creates == 0  # all three refusals were retried
    waits = [e for e in harness.of("ProvisioningProgress", run) if e.payload["stage"] == "waiting"]
    # The same wait reason is reported once, not once per try.
    assert len(waits) == 1 and "capacity" in waits[0].payload["message"]


async def test_create_failure_tears_down_created_nodes(harness: Harness, cloud: FakeCloud) -> None:
    cloud.fail_create = {1: "QuotaExceeded: instance quota of 1 reached"}
    _, run = await _create(harness, spec_dict(provider="idc"), nodes=2)
    failed = await harness.wait_for("NodesFailed", run)
    assert failed.payload["step"] == "nodes"
    assert "QuotaExceeded" in failed.payload["reason"] and failed.payload["retryable"] is False
    assert cloud.nodes == {} and cloud.terminated == [(run, 0)]
    assert harness.of("NodesReady", run) == []


async def test_configure_failure_reports_the_tool_message(
    harness: Harness, cloud: FakeCloud, builder: FakeEnvBuilder
) -> None:
    builder.fail_configure = "local-0: task 'Install' failed: No solution: sixx was not found"
    _, run = await _create(harness, spec_dict(provider="idc"))
    failed = await harness.wait_for("NodesFailed", run)
    assert failed.payload["step"] == "configure" and "sixx" in failed.payload["reason"]
    assert cloud.nodes == {}
    with harness.provisioner.runtime.db.session() as s:
        row = s.get(RunNodes, run)
        assert row is not None and row.state == "failed" and row.failed_step == "configure"


async def test_lock_failure_creates_nothing(
    harness: Harness, cloud: FakeCloud, builder: FakeEnvBuilder
) -> None:
    builder.fail_resolve = "Because sixx was not found in the package registry"
    _, run = await _create(harness, spec_dict(provider="idc"))
    failed = await harness.wait_for("NodesFailed", run)
    assert failed.payload["step"] == "lock" and "sixx" in failed.payload["reason"]
    assert cloud.created == []


async def test_unsupported_accelerator_is_refused_before_creating(
    harness: Harness, cloud: FakeCloud
) -> None:
    _, run = await _create(harness, spec_dict(provider="idc", accelerator="gaudi"))
    failed = await harness.wait_for("NodesFailed", run)
    assert failed.payload["step"] == "check" and "gaudi" in failed.payload["reason"]
    assert cloud.created == []


async def test_training_end_releases_unless_deployed(harness: Harness, cloud: FakeCloud) -> None:
    project, run = await _create(harness, spec_dict(provider="idc"))
    await harness.wait_for("NodesReady", run)
    await harness.publish(
        TrainingCompleted(model_version="1", digest="ab"), project_id=project, run_id=run
    )
    released = await harness.wait_for("NodesReleased", run)
    assert released.payload["nodes"] == ["idc-0"] and cloud.nodes == {}

    project2, run2 = await _create(harness, spec_dict(provider="idc", deploy=True))
    await harness.wait_for("NodesReady", run2)
    await harness.publish(
        TrainingCompleted(model_version="1", digest="ab"), project_id=project2, run_id=run2
    )
    await asyncio.sleep(0.3)
    assert harness.of("NodesReleased", run2) == [] and len(cloud.nodes) == 1
    await harness.publish(ProjectDeleted(), project_id=project2, run_id=None)
    await harness.wait_for("NodesReleased", run2)
    assert cloud.nodes == {}


async def test_training_completed_says_whether_the_nodes_serve(
    harness: Harness, cloud: FakeCloud
) -> None:
    # the event's deploy wins over the spec (no deployment was made: release)
    project, run = await _create(harness, spec_dict(provider="idc", deploy=True))
    await harness.wait_for("NodesReady", run)
    done = TrainingCompleted(model_version="1", digest="ab", deploy=False)
    await harness.publish(done, project_id=project, run_id=run)
    await harness.wait_for("NodesReleased", run)
    assert cloud.nodes == {}

    project2, run2 = await _create(harness, spec_dict(provider="idc"))
    await harness.wait_for("NodesReady", run2)
    done = TrainingCompleted(model_version="1", digest="ab", deploy=True)
    await harness.publish(done, project_id=project2, run_id=run2)
    await asyncio.sleep(0.3)
    assert harness.of("NodesReleased", run2) == [] and len(cloud.nodes) == 1


async def test_training_failed_releases(harness: Harness, cloud: FakeCloud) -> None:
    project, run = await _create(harness, spec_dict(provider="idc"))
    await harness.wait_for("NodesReady", run)
    await harness.publish(TrainingFailed(reason="oom"), project_id=project, run_id=run)
    await harness.wait_for("NodesReleased", run)
    assert cloud.nodes == {}


async def test_cancel_during_configure_releases_without_ready(
    harness: Harness, cloud: FakeCloud, builder: FakeEnvBuilder
) -> None:
    builder.block.clear()
    project, run = await _create(harness, spec_dict(provider="idc"), nodes=2)
    for _ in range(200):
        if len(cloud.nodes) == 2:
            break
        await asyncio.sleep(0.01)
    await harness.publish(RunCancelled(), project_id=project, run_id=run)
    released = await harness.wait_for("NodesReleased", run)
    builder.block.set()
    await asyncio.sleep(0.1)
    assert sorted(released.payload["nodes"]) == ["idc-0", "idc-1"]
    assert harness.of("NodesReady", run) == [] and cloud.nodes == {}


async def test_autostop_releases_idle_nodes(harness: Harness, cloud: FakeCloud) -> None:
    _, run = await _create(harness, spec_dict(provider="idc", autostop_minutes=1))
    await harness.wait_for("NodesReady", run)
    await harness.provisioner.sweep()
    assert harness.of("NodesReleased", run) == []  # not idle long enough yet
    with harness.provisioner.runtime.db.session() as s:
        row = s.get(RunNodes, run)
        assert row is not None
        row.last_active_at = datetime.now(UTC) - timedelta(minutes=2)
        s.add(row)
        s.commit()
    await harness.provisioner.sweep()
    await harness.wait_for("NodesReleased", run)
    assert cloud.nodes == {}


async def test_reaper_removes_nodes_of_ended_runs(harness: Harness, cloud: FakeCloud) -> None:
    _, run = await _create(harness, spec_dict(provider="idc"))
    await harness.wait_for("NodesReady", run)
    # A node the provisioner lost track of (e.g. created just before a crash):
    from services.provisioner.drivers.fake import FakeDriver
    from services.provisioner.service import Provisioner

    orphan_run = uuid.uuid4()
    ctx = Provisioner._context(harness.provisioner, _row(orphan_run))
    await FakeDriver(cloud).create_node(ctx, 0)
    removed = await harness.provisioner.reap()
    assert removed == [f"fake-{orphan_run}-0"]
    assert list(cloud.nodes) == [(run, 0)]  # the live run keeps its node


def _row(run_id: uuid.UUID) -> RunNodes:
    return RunNodes(
        run_id=run_id, project_id=uuid.uuid4(), provider="idc", spec=spec_dict(provider="idc")
    )


async def test_unfinished_jobs_resume_at_start(harness: Harness, cloud: FakeCloud) -> None:
    run = uuid.uuid4()
    row = _row(run)
    row.state = "provisioning"
    await harness.stop()
    with harness.provisioner.runtime.db.session() as s:
        s.add(row)
        s.commit()
    # The crashed attempt had created node 0 already: resuming must reuse it.
    from services.provisioner.drivers.fake import FakeDriver

    ctx = harness.provisioner._context(row)
    await FakeDriver(cloud, provider="idc").create_node(ctx, 0)
    await harness.start()
    await harness.wait_for("NodesReady", run)
    assert cloud.created == [(run, 0)]


async def test_local_driver_limits_concurrent_runs(tmp_path) -> None:
    from services.provisioner.drivers.base import RunContext
    from services.provisioner.drivers.local import LocalDriver
    from services.provisioner.settings import ProvisionerSettings
    from shared.errors import TransientError
    from shared.spec import ProjectSpec

    settings = ProvisionerSettings(data_dir=tmp_path, env_dir=tmp_path / "envs", local_max_runs=1)
    busy = {uuid.uuid4()}
    driver = LocalDriver(settings, runs_holding_node=lambda: busy)
    spec = ProjectSpec.model_validate(spec_dict(provider="local"))
    ctx = RunContext(uuid.uuid4(), uuid.uuid4(), None, spec, tmp_path / "state")
    try:
        await driver.create_node(ctx, 0)
    except TransientError as exc:
        assert "AIDP_LOCAL_MAX_RUNS=1" in exc.message
    else:
        raise AssertionError("a second local run must wait")
    busy.clear()
    node = await driver.create_node(ctx, 0)
    node = await driver.check_node(ctx, node)
    assert node.workdir == str(tmp_path / "workspaces" / str(ctx.run_id))
    assert node.extra["python3"]
    await driver.terminate_node(ctx, node)
    await driver.terminate_node(ctx, node)  # a missing node is not an error
    assert not (tmp_path / "workspaces" / str(ctx.run_id)).exists()


async def test_only_runs_with_nodes_and_no_deployment_hold_a_local_slot(harness: Harness) -> None:
    """Waiting runs hold nothing (or they would block each other forever) and nodes kept
    only to serve a deployment hold no training slot."""
    from services.provisioner.models import RunNodes

    def local_run(
        state: str, nodes: list[dict[str, int]], *, training: bool = False, serving: bool = False
    ) -> RunNodes:
        return RunNodes(
            run_id=uuid.uuid4(),
            project_id=uuid.uuid4(),
            provider="local",
            spec={},
            state=state,
            nodes=nodes,
            training=training,
            serving=serving,
        )

    provisioner = harness.provisioner
    with provisioner.runtime.db.session() as s:
        rows = {
            "training": local_run("ready", [{"index": 0}], training=True),
            "waiting": local_run("provisioning", []),
            "serving": local_run("ready", [{"index": 0}], serving=True),
            "released": local_run("released", [{"index": 0}]),
        }
        ids = {name: row.run_id for name, row in rows.items()}
        s.add_all(rows.values())
        s.commit()
    assert provisioner.run_ids_holding("local") == {ids["training"]}


async def test_distributed_mode_refuses_the_local_provider_unless_allowed(tmp_path) -> None:
    from services.provisioner.drivers.base import RunContext
    from services.provisioner.drivers.local import LocalDriver
    from services.provisioner.settings import ProvisionerSettings
    from shared.errors import ProviderError
    from shared.spec import ProjectSpec

    strict = {
        "data_dir": tmp_path,
        "env_dir": tmp_path / "envs",
        "mode": "distributed",
        "vault_addr": "http://127.0.0.1:1",
        "vault_token": "s.a-real-looking-token",
    }
    spec = ProjectSpec.model_validate(spec_dict(provider="local"))
    ctx = RunContext(uuid.uuid4(), uuid.uuid4(), None, spec, tmp_path / "state")
    refusing = LocalDriver(ProvisionerSettings(**strict), runs_holding_node=set)
    try:
        await refusing.create_node(ctx, 0)
    except ProviderError as exc:
        assert "AIDP_ALLOW_LOCAL_PROVIDER=true" in exc.message and not exc.retryable
    else:
        raise AssertionError("distributed mode must refuse provider local by default")
    assert not (tmp_path / "workspaces" / str(ctx.run_id)).exists()

    allowed = ProvisionerSettings(**strict, allow_local_provider=True)
    node = await LocalDriver(allowed, runs_holding_node=set).create_node(ctx, 0)
    assert node.workdir == str(tmp_path / "workspaces" / str(ctx.run_id))
