"""A deployment's rows: creation, the API's reads and plain changes (no event; those
with one are in :mod:`.changes`). Blocking: called through a worker thread."""

from __future__ import annotations

import posixpath
import uuid
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from services.trainer.models import Deployment, ModelVersion, Run
from services.trainer.serving import live
from services.trainer.serving.views import deployment_view
from services.trainer.settings import TrainerSettings
from shared.errors import NotFound
from shared.events import NodeInfo
from shared.runtime import ServiceRuntime
from shared.service.clock import utcnow

__all__ = ["DeploymentRecords"]


class DeploymentRecords:
    """The deployment rows of one trainer instance's manager."""

    def __init__(self, runtime: ServiceRuntime, settings: TrainerSettings) -> None:
        self.runtime = runtime
        self.settings = settings

    # -- creating and reading ------------------------------------------------------------

    def trainer_node(self) -> dict[str, Any]:
        """The trainer's own machine as a node (deployments that outlive their run's)."""
        return NodeInfo(
            name="trainer-local",
            address="127.0.0.1",
            provider="local",
            workdir=str(self.settings.serving_root()),
            python=self.settings.trainer_serving_python,
        ).model_dump()

    def create(
        self,
        *,
        model_id: uuid.UUID,
        replicas: int = 1,
        idle_timeout_s: int | None = None,
        keep_previous: bool = False,
        promote: bool = True,
    ) -> Deployment:
        """A new deployment of a model (route deploy): on its run's first node while that
        node is held, else on the trainer's machine."""
        with self.runtime.db.session() as session:
            model = session.get(ModelVersion, model_id)
            if model is None:
                raise NotFound(f"model {model_id} not found")
            run = session.get(Run, model.run_id)
            dep_id = uuid.uuid4()
            if run is not None and run.nodes and not run.nodes_released:
                node = dict(run.nodes[0])
            else:
                node = self.trainer_node()
            dep = Deployment(
                id=dep_id,
                project_id=model.project_id,
                model_id=model.id,
                run_id=None,
                node=node,
                workdir=posixpath.join(node["workdir"], f"aidp-deploy-{dep_id}"),
                replicas=replicas,
                idle_timeout_s=idle_timeout_s,
                keep_previous=keep_previous,
                promote_on_ready=promote,
            )
            session.add(dep)
            session.commit()
            return dep

    def run_owner(self, dep: Deployment) -> str | None:
        """The owner of the run that trained the deployment's model: its node's host key is
        checked against the key pinned for that user (None: no such run any more)."""
        with self.runtime.db.session() as session:
            run_id = (
                dep.run_id
                or session.exec(
                    select(ModelVersion.run_id).where(ModelVersion.id == dep.model_id)
                ).first()
            )
            run = session.get(Run, run_id) if run_id is not None else None
            return run.owner_id if run is not None else None

    def load(self, dep_id: uuid.UUID) -> tuple[Deployment, ModelVersion]:
        """The deployment and its model version (NotFound when either is gone)."""
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is None:
                raise NotFound(f"deployment {dep_id} not found")
            model = session.get(ModelVersion, dep.model_id)
            if model is None:
                raise NotFound(f"model {dep.model_id} not found")
            return dep, model

    def get(self, dep_id: uuid.UUID) -> Deployment:
        return self.load(dep_id)[0]

    def view(self, dep_id: uuid.UUID) -> dict[str, Any]:
        """The API view of one deployment (its model version, whether it is live)."""
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is None:
                raise NotFound(f"deployment {dep_id} not found")
            model = session.get(ModelVersion, dep.model_id)
            return deployment_view(
                dep,
                version=model.version if model is not None else None,
                live_id=live.live_of(session, dep.project_id),
            )

    def list_views(self, project_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
        """The deployments of these projects, newest first."""
        if not project_ids:
            return []
        with self.runtime.db.session() as session:
            rows = session.exec(
                select(Deployment, ModelVersion.version)
                .join(ModelVersion, col(ModelVersion.id) == col(Deployment.model_id), isouter=True)
                .where(col(Deployment.project_id).in_(project_ids))
                .order_by(col(Deployment.created_at).desc())
            ).all()
            lives = {pid: live.live_of(session, pid) for pid in {d.project_id for d, _ in rows}}
            return [deployment_view(d, version=v, live_id=lives.get(d.project_id)) for d, v in rows]

    def endpoint_view(self, project_id: uuid.UUID) -> dict[str, Any]:
        """The project's live alias: the live deployment, the one roll back returns to."""
        with self.runtime.db.session() as session:
            live_id = live.live_of(session, project_id)
            previous = live.previous_of(session, project_id)
        return {
            "project_id": str(project_id),
            "deployment_id": str(live_id) if live_id else None,
            "previous_deployment_id": str(previous) if previous else None,
            "deployment": self.view(live_id) if live_id else None,
        }

    def previous_of(self, project_id: uuid.UUID) -> uuid.UUID | None:
        """The deployment roll back returns to."""
        with self.runtime.db.session() as session:
            return live.previous_of(session, project_id)

    # -- plain changes -------------------------------------------------------------------

    def update(self, dep_id: uuid.UUID, **changes: Any) -> None:
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is not None:
                for k, v in changes.items():
                    setattr(dep, k, v)
                dep.updated_at = utcnow()
                session.add(dep)
                session.commit()

    def move(self, dep_id: uuid.UUID, sources: tuple[str, ...], to: str, **changes: Any) -> bool:
        """``status`` from one of ``sources`` to ``to`` (compare and set); True if it moved."""
        with self.runtime.db.session() as session:
            result = session.execute(
                update(Deployment)
                .where(col(Deployment.id) == dep_id, col(Deployment.status).in_(sources))
                .values(status=to, updated_at=utcnow(), **changes)
            )
            session.commit()
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def touch(self, dep_id: uuid.UUID) -> None:
        """Record a request (``last_request_at``: any replica's traffic keeps it awake)."""
        with self.runtime.db.session() as session:
            session.execute(
                update(Deployment)
                .where(col(Deployment.id) == dep_id)
                .values(last_request_at=utcnow())
            )
            session.commit()
