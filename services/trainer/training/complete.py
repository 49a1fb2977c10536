"""A completed attempt: store the trained model and register it.

The model the reporting node wrote under ``output/model`` is stored encrypted as one
manifest (a LoRA adapter gets the base model's files under ``base/``, see
:mod:`services.trainer.adapters`), the run goes ``succeeded`` with ``TrainingCompleted``
(and ``deploying`` with a new deployment when the spec deploys), the files the store
took are put back for a deployment to serve from, and the run's checkpoints are dropped
(``trainer_drop_checkpoints_on_register``).
"""

from __future__ import annotations

import asyncio
import posixpath
import uuid

from services.trainer.adapters import adapter_facts, with_base
from services.trainer.models import Run
from services.trainer.nodes.base import NodeExecutor
from services.trainer.retention import prune_checkpoints
from services.trainer.settings import TrainerSettings
from services.trainer.staging import restore_missing, store_tree, workspace_of
from services.trainer.training.outcome import Attempt
from services.trainer.training.records import RunRecords
from shared.db import run_sync
from shared.runtime import ServiceRuntime
from shared.spec import ProjectSpec
from shared.store import ArtifactStore

__all__ = ["complete"]


async def complete(
    *,
    runtime: ServiceRuntime,
    settings: TrainerSettings,
    store: ArtifactStore,
    records: RunRecords,
    run: Run,
    spec: ProjectSpec,
    execs: list[NodeExecutor],
    outcome: Attempt,
) -> uuid.UUID | None:
    """Store and register the model; the deployment created for it, if any. Raises
    DiskFull when the store cannot hold it."""
    index, metrics = outcome.completed or (0, {})
    executor = execs[index]
    ws = workspace_of(executor, run.run_id)
    root = posixpath.join(ws, "output", "model")
    tree = await store_tree(
        executor=executor,
        store=store,
        root=root,
        source=f"aidp://models/{run.project_id}",
        revision=str(run.run_id),
        meta={"kind": "model", "run_id": str(run.run_id), "task": spec.task},
    )
    stored = tree
    adapter = await asyncio.to_thread(adapter_facts, store, tree)
    base_key = next((a["cache_key"] for a in run.artifacts or [] if a["kind"] == "model"), None)
    if adapter and not adapter["merged"] and base_key:  # a LoRA adapter: + base/ (adapters.py)
        tree = await asyncio.to_thread(with_base, store, tree, base_key)
    clean = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    deployment_id = await run_sync(
        records.record_completion, run.run_id, tree, clean, spec.deploy, index, adapter
    )
    await restore_missing(executor=executor, store=store, root=root, tree=stored)
    if settings.trainer_drop_checkpoints_on_register:
        await run_sync(prune_checkpoints, runtime.db, store, run_id=run.run_id, keep=0)
    return deployment_id
