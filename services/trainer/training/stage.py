"""Staging a run's workspace on its nodes before a launch.

Each node gets ``src/`` (task scripts, ``aidp_progress.py``, a custom script under
``src/user/``), ``model/`` and ``data/`` from the run's cached artifacts and, when the run
resumes, ``resume/`` from its latest checkpoint (all hard links into ``cache/blobs``: a
relaunch transfers nothing already there). ``resume/`` and ``checkpoints/`` of an earlier
attempt are removed first. Process groups an earlier attempt (or a crashed trainer) left
are killed before anything is staged.
"""

from __future__ import annotations

import asyncio
import posixpath
import signal

from services.trainer.models import Checkpoint, Run
from services.trainer.nodes.base import NodeExecutor
from services.trainer.staging import stage_manifest, stage_sources, workspace_of
from shared.spec import ProjectSpec
from shared.store import ArtifactStore

__all__ = ["kill_previous", "stage_run"]


async def kill_previous(run: Run, execs: list[NodeExecutor]) -> None:
    """Stop process groups a previous attempt (or a crashed trainer) left running."""
    recorded = run.processes or {}
    for executor in execs:
        pgid = recorded.get(executor.node.name)
        if pgid:
            await executor.kill_group(int(pgid), signal.SIGKILL)


async def stage_run(
    *,
    store: ArtifactStore,
    run: Run,
    spec: ProjectSpec,
    execs: list[NodeExecutor],
    ckpt: Checkpoint | None,
) -> None:
    """Stage the run's workspace on every node at once."""
    by_kind = {a["kind"]: a for a in run.artifacts or []}
    extra: dict[str, str] = {}
    if spec.task == "custom":
        script = spec.train.script or ""
        extra[posixpath.join("src", "user", spec.train.entrypoint or "train.py")] = script

    async def stage(executor: NodeExecutor) -> None:
        ws = workspace_of(executor, run.run_id)
        await executor.remove_tree(posixpath.join(ws, "resume"))
        await executor.remove_tree(posixpath.join(ws, "checkpoints"))
        await stage_sources(executor=executor, workspace=ws, extra=extra)
        for kind, dest in (("model", "model"), ("dataset", "data")):
            if kind in by_kind:
                await stage_manifest(
                    executor=executor,
                    store=store,
                    key=by_kind[kind]["cache_key"],
                    workspace=ws,
                    dest=dest,
                )
        if ckpt is not None:
            await stage_manifest(
                executor=executor, store=store, key=ckpt.manifest_key, workspace=ws, dest="resume"
            )

    await asyncio.gather(*(stage(e) for e in execs))
