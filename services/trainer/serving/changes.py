"""A deployment's state changes that emit an event or move the live alias (one
transaction each; blocking, called through a worker thread).

``running`` (first start: ``ModelDeployed``; a deployment to promote becomes live and
returns the deployments it supersedes), a counted restart or ``failed``
(``DeploymentFailed``), ``stopped`` or deleted (``DeploymentStopped`` when it served), made
ready to start again, promoted at once.
"""

from __future__ import annotations

import posixpath
import uuid
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from services.trainer.models import Deployment, ModelVersion, Run
from services.trainer.runs import transition
from services.trainer.serving import live
from services.trainer.serving.records import DeploymentRecords
from services.trainer.serving.views import LIVE
from services.trainer.settings import TrainerSettings
from shared.errors import NotFound
from shared.events import (
    DeploymentFailed,
    DeploymentScaled,
    DeploymentStopped,
    EventPayload,
    ModelDeployed,
    new_event,
)
from shared.runtime import ServiceRuntime
from shared.service.clock import utcnow

__all__ = ["DeploymentChanges"]


class DeploymentChanges:
    """Event-bearing changes of deployment rows."""

    def __init__(
        self, runtime: ServiceRuntime, settings: TrainerSettings, records: DeploymentRecords
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.records = records

    def mark_running(self, dep_id: uuid.UUID, model_version: str) -> list[uuid.UUID]:
        """``running``; the first start emits ``ModelDeployed``; a deployment to promote
        becomes live. Returns the project's deployments it supersedes (to stop)."""
        superseded: list[uuid.UUID] = []
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is None or dep.status not in LIVE:
                return []
            first, woken = dep.status == "starting", dep.status == "waking"
            dep.status, dep.reason, dep.updated_at = "running", None, utcnow()
            dep.endpoint = f"{self.settings.trainer_public_prefix}/deployments/{dep.id}/predict"
            session.add(dep)
            if first:
                event = ModelDeployed(
                    deployment_id=dep.id, endpoint=dep.endpoint, model_version=model_version
                )
                run = session.get(Run, dep.run_id) if dep.run_id else None
                if run is not None and run.state == "deploying":
                    transition(session, run, to="deployed", event=event, stage=self.runtime.stage)
                else:
                    self._emit(session, dep, event)
            elif woken:
                self._emit(
                    session,
                    dep,
                    DeploymentScaled(
                        deployment_id=dep.id, replicas=dep.replicas, reason="started again"
                    ),
                )
            if dep.promote_on_ready:
                superseded = self._go_live(session, dep)
            session.commit()
        self.runtime.published()
        return superseded

    def scale_to_zero(self, dep_id: uuid.UUID, reason: str) -> bool:
        """``running`` → ``idle`` (compare and set) with ``DeploymentScaled`` (0 replicas) in
        the same transaction; False when it was no longer running."""
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is None or dep.status != "running":
                return False
            moved = session.execute(
                update(Deployment)
                .where(col(Deployment.id) == dep_id, col(Deployment.status) == "running")
                .values(status="idle", reason=reason, updated_at=utcnow())
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                return False
            event = DeploymentScaled(deployment_id=dep_id, replicas=0, reason=reason)
            self._emit(session, dep, event)
            session.commit()
        self.runtime.published()
        return True

    def _go_live(self, session: Any, dep: Deployment) -> list[uuid.UUID]:
        """Point the project's alias at ``dep`` (in the caller's transaction); returns the
        project's other serving deployments unless ``dep.keep_previous``."""
        live.set_live(
            session,
            dep=dep,
            stage=self.runtime.stage,
            run_id=self._run_of(session, dep),
            rollback=dep.rollback,
        )
        dep.promote_on_ready, dep.rollback = False, False
        session.add(dep)
        if dep.keep_previous:
            return []
        others = session.exec(
            select(Deployment.id).where(
                Deployment.project_id == dep.project_id,
                Deployment.id != dep.id,
                col(Deployment.status).in_((*LIVE, "idle")),
            )
        ).all()
        return list(others)

    def _emit(self, session: Any, dep: Deployment, event: EventPayload) -> None:
        self.runtime.stage(
            session,
            new_event(event, project_id=dep.project_id, run_id=self._run_of(session, dep)),
        )

    @staticmethod
    def _run_of(session: Any, dep: Deployment) -> uuid.UUID | None:
        model = session.get(ModelVersion, dep.model_id)
        return model.run_id if model is not None else dep.run_id

    def count_restart(self, dep_id: uuid.UUID, reason: str) -> bool:
        """Record a crash; True when another start is allowed, else the deployment fails."""
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is None or dep.status not in LIVE:
                return False
            if dep.restarts < self.settings.trainer_serving_restarts:
                dep.restarts += 1
                dep.reason = reason
                if dep.status == "running":  # predict answers 409 until it is back
                    dep.status = "restarting"
                dep.updated_at = utcnow()
                session.add(dep)
                session.commit()
                return True
        self.fail(dep_id, reason)
        return False

    def fail(self, dep_id: uuid.UUID, reason: str) -> None:
        """``failed`` with ``DeploymentFailed`` (its run, if deploying: ``deploy_failed``)."""
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is None or dep.status in ("failed", "stopped"):
                return
            dep.status, dep.reason, dep.updated_at = "failed", reason, utcnow()
            dep.promote_on_ready = False
            session.add(dep)
            event = DeploymentFailed(reason=reason, deployment_id=dep.id)
            run = session.get(Run, dep.run_id) if dep.run_id else None
            if run is not None and run.state == "deploying":
                transition(session, run, to="deploy_failed", event=event, stage=self.runtime.stage)
            else:
                self._emit(session, dep, event)
            session.commit()
        self.runtime.published()

    def record_stop(
        self, dep_id: uuid.UUID, *, reason: str, by: str | None, delete: bool
    ) -> Deployment:
        """``stopped`` (or the row deleted) with one ``DeploymentStopped`` when it served."""
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is None:
                raise NotFound(f"deployment {dep_id} not found")
            serving = dep.status in (*LIVE, "idle")
            on_run_nodes = (
                dep.run_id is not None
                and posixpath.basename(dep.workdir or "").startswith("aidp-run-")
                and reason != "nodes released"
            )
            dep.status, dep.reason, dep.updated_at = "stopped", reason, utcnow()
            dep.promote_on_ready = dep.rollback = False
            session.add(dep)
            if serving or delete:
                self._emit(
                    session,
                    dep,
                    DeploymentStopped(
                        deployment_id=dep.id, reason=reason, by=by, on_run_nodes=on_run_nodes
                    ),
                )
            session.flush()
            session.expunge(dep)
            if delete:
                live.forget(session, dep=dep)
                row = session.get(Deployment, dep_id)
                if row is not None:
                    session.delete(row)
            session.commit()
        self.runtime.published()
        return dep

    def prepare_start(
        self,
        dep_id: uuid.UUID,
        *,
        promote: bool,
        keep_previous: bool | None,
        rollback: bool,
    ) -> tuple[Deployment, bool, bool]:
        """Ready a deployment to serve: a stopped or failed one goes back to ``starting``
        (on the trainer's machine when it served from its run's nodes: those are released
        once it stopped), an idle one to ``waking``. Returns (deployment, whether a watcher
        must be started, whether it moved to the trainer's machine)."""
        moved = False
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is None:
                raise NotFound(f"deployment {dep_id} not found")
            if keep_previous is not None:
                dep.keep_previous = keep_previous
            if promote:
                dep.promote_on_ready, dep.rollback = True, rollback
            needs_watch = False
            if dep.status in ("stopped", "failed"):
                if posixpath.basename(dep.workdir or "").startswith("aidp-run-"):
                    node = self.records.trainer_node()
                    dep.node = node
                    dep.workdir = posixpath.join(node["workdir"], f"aidp-deploy-{dep.id}")
                    dep.run_id = None
                    moved = True
                dep.status, dep.reason, dep.restarts = "starting", None, 0
                dep.pid, dep.port, dep.procs = None, None, None
                needs_watch = True
            elif dep.status == "idle":
                dep.status, dep.reason = "waking", None
                needs_watch = True
            dep.updated_at = utcnow()
            session.add(dep)
            session.commit()
            session.refresh(dep)
            return dep, needs_watch, moved

    def promote_now(
        self, dep_id: uuid.UUID, *, keep_previous: bool | None, rollback: bool
    ) -> list[uuid.UUID]:
        """Make a serving deployment live at once; the deployments it supersedes."""
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is None:
                raise NotFound(f"deployment {dep_id} not found")
            if keep_previous is not None:
                dep.keep_previous = keep_previous
            dep.rollback = rollback
            superseded = self._go_live(session, dep)
            session.commit()
        self.runtime.published()
        return superseded
