"""Storing the checkpoints a training process reports (``checkpoint`` messages).

A checkpoint's folder (``checkpoints/step-N``, checked to stay inside the workspace) is
stored encrypted as one manifest, recorded, restored where the store took files, removed
from the node, and older checkpoints beyond ``trainer_keep_checkpoints`` are pruned.
"""

from __future__ import annotations

import posixpath

from services.trainer.checkpoint_paths import ensure_inside
from services.trainer.models import Run
from services.trainer.nodes.base import NodeExecutor
from services.trainer.retention import prune_checkpoints
from services.trainer.settings import TrainerSettings
from services.trainer.staging import restore_missing, store_tree, workspace_of
from services.trainer.training.records import RunRecords
from shared.db import run_sync
from shared.runtime import ServiceRuntime
from shared.store import ArtifactStore

__all__ = ["store_checkpoint"]


async def store_checkpoint(
    *,
    runtime: ServiceRuntime,
    settings: TrainerSettings,
    store: ArtifactStore,
    records: RunRecords,
    run: Run,
    executor: NodeExecutor,
    step: int,
    path: str,
) -> None:
    """Store the checkpoint of ``step`` at ``path`` (relative to the workspace).

    Raises DiskFull when the store's disk is full and ProviderError when the path leaves
    ``checkpoints/`` on the node or the node fails."""
    ws = workspace_of(executor, run.run_id)
    root = posixpath.join(ws, path)
    await ensure_inside(executor, root, posixpath.join(ws, "checkpoints"))
    tree = await store_tree(
        executor=executor,
        store=store,
        root=root,
        source=f"aidp://checkpoints/{run.run_id}",
        revision=f"step-{step}",
        meta={"kind": "checkpoint", "run_id": str(run.run_id), "step": step},
    )
    await run_sync(records.record_checkpoint, run.run_id, step, tree)
    await restore_missing(executor=executor, store=store, root=root, tree=tree)
    await executor.remove_tree(root)
    await run_sync(
        prune_checkpoints,
        runtime.db,
        store,
        run_id=run.run_id,
        keep=settings.trainer_keep_checkpoints,
    )
