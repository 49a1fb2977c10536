"""The trainer checks a user's host against the key the provisioner pinned for the run's
owner (:func:`services.trainer.nodes.factory.pinned_known_hosts`)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from services.trainer.models import Deployment, ModelVersion, Run
from services.trainer.nodes.factory import node_executor, pinned_known_hosts
from services.trainer.nodes.ssh import SSHExecutor
from services.trainer.settings import TrainerSettings
from shared.events import NodeInfo
from shared.nodes import HostKeyPolicy


def _node(provider: str) -> NodeInfo:
    return NodeInfo(
        name=f"{provider}-0",
        address="10.0.0.5",
        ssh_user="root",
        provider=provider,
        workdir="/home/root/.aidp-node/runs/r",
    )


def test_a_users_host_is_checked_against_the_owners_pinned_file(tmp_path: Path) -> None:
    owner = uuid.uuid4()
    settings = TrainerSettings(data_dir=tmp_path)
    expected = tmp_path / "known_hosts" / str(owner)
    assert pinned_known_hosts(_node("ssh"), settings, owner) == str(expected)
    executor = node_executor(_node("ssh"), settings, tenant=uuid.uuid4(), owner=str(owner))
    assert isinstance(executor, SSHExecutor)
    assert executor.access.known_hosts == str(expected)
    assert executor.access.host_keys is HostKeyPolicy.PINNED  # the trainer never records
    shared = TrainerSettings(data_dir=tmp_path, known_hosts_dir=tmp_path / "kh")
    assert pinned_known_hosts(_node("ssh"), shared, owner) == str(tmp_path / "kh" / str(owner))
    # a run without an owner (an older producer): the provisioner's file for none
    assert pinned_known_hosts(_node("ssh"), settings, None) == str(
        tmp_path / "known_hosts" / "platform"
    )


def test_other_providers_and_the_deprecated_override(tmp_path: Path) -> None:
    owner = uuid.uuid4()
    settings = TrainerSettings(data_dir=tmp_path)
    assert pinned_known_hosts(_node("idc"), settings, owner) is None  # ~/.ssh/known_hosts
    one_file = tmp_path / "all_nodes"
    override = TrainerSettings(data_dir=tmp_path, trainer_known_hosts=one_file)
    for provider in ("ssh", "idc"):
        assert pinned_known_hosts(_node(provider), override, owner) == str(one_file)


async def test_a_deployment_on_a_users_host_checks_its_runs_owners_key(trainer: Any) -> None:
    """Deployments made through the API carry no run id: the owner is the one of the run
    that trained the model."""
    owner, run_id = uuid.uuid4(), uuid.uuid4()
    state = trainer.app.state.trainer
    with state.runtime.db.session() as session:
        session.add(Run(run_id=run_id, owner_id=str(owner)))
        model = ModelVersion(
            project_id=uuid.uuid4(), run_id=run_id, version=1, task="t", manifest_key="k"
        )
        session.add(model)
        session.commit()
        model_id = model.id
    servers = state.deployments.servers
    pinned = state.settings.resolved_known_hosts_dir() / str(owner)
    for dep_run in (None, run_id):
        dep = Deployment(
            project_id=uuid.uuid4(),
            model_id=model_id,
            run_id=dep_run,
            node=_node("ssh").model_dump(),
        )
        executor = await servers.executor(dep)
        try:
            assert isinstance(executor, SSHExecutor)
            assert executor.access.known_hosts == str(pinned)
        finally:
            await executor.close()
            servers.drop_executor(dep.id)
