"""The trainer's live parts, created once the runtime is connected (store keys, bus)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence

from services.trainer.naming import migrate_to_keyed_names
from services.trainer.serving.manager import DeploymentManager
from services.trainer.settings import TrainerSettings
from services.trainer.training.runner import JobRunner
from shared.runtime import ServiceRuntime
from shared.store import ArtifactStore

__all__ = ["TrainerState"]

log = logging.getLogger(__name__)


class TrainerState:
    """Job runner + deployment manager of one trainer instance."""

    def __init__(self, runtime: ServiceRuntime, settings: TrainerSettings) -> None:
        self.runtime = runtime
        self.settings = settings
        self._jobs: JobRunner | None = None
        self._deployments: DeploymentManager | None = None
        self.deploy_supervisor: asyncio.Task[None] | None = None

    @property
    def jobs(self) -> JobRunner:
        if self._jobs is None:
            raise RuntimeError("trainer not started")
        return self._jobs

    @property
    def deployments(self) -> DeploymentManager:
        if self._deployments is None:
            raise RuntimeError("trainer not started")
        return self._deployments

    async def build(self) -> None:
        """Build the store on the connected key service (moved to keyed blob names if it
        is not yet), the job runner and the deployment manager (the first phase of the
        start: before any event is delivered, see :mod:`shared.service.app`)."""
        store = ArtifactStore(
            self.settings.resolved_store_dir(),
            self.runtime.keys,
            key_name=self.settings.transit_key,
            min_free_bytes=self.settings.store_min_free_bytes,
        )
        await asyncio.to_thread(migrate_to_keyed_names, self.runtime.db, store)
        self._jobs = JobRunner(self.runtime, self.settings, store)
        self._deployments = DeploymentManager(self.runtime, self.settings, store)

    def start(self) -> None:
        """Resume jobs and deployments: their supervisors run until the service stops."""
        self.runtime.spawn(self.jobs.supervise(), name="supervisor")
        self.deploy_supervisor = self.runtime.spawn(
            self.deployments.supervise(), name="deployments"
        )

    async def stop(self) -> None:
        if self._deployments is not None:
            await self._deployments.close()

    async def start_deployments(self, deployment_ids: Sequence[uuid.UUID]) -> None:
        """Training completed with ``deploy``: start the deployments created with it
        (those this instance already watches are left alone: a redelivered event or the
        supervisor's adoption must not restart their servers)."""
        for dep_id in deployment_ids:
            self.deployments.start_unwatched(dep_id)

    def kick(self) -> None:
        if self._jobs is not None:
            self._jobs.kick()

    async def after_release(
        self, run_id: uuid.UUID | None, deployments: Sequence[uuid.UUID]
    ) -> None:
        """Nodes released: stop their deployments and remove the run's workspace."""
        if run_id is None or self._jobs is None:
            return
        for dep_id in deployments:
            await self.deployments.stop(dep_id, reason="nodes released")
        if run_id not in self.jobs.jobs:
            self.runtime.spawn(self._cleanup(run_id), name=f"cleanup-{run_id}")

    async def _cleanup(self, run_id: uuid.UUID) -> None:
        try:
            await self.jobs.cleanup(run_id)
        except Exception:
            log.exception("cleanup of run %s failed", run_id)
        await asyncio.sleep(0)
