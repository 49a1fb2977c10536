"""The watch lease of a deployment: which trainer replica watches its servers.

Each live deployment is watched by exactly one replica, the holder of its lease
(``owner``/``lease_until`` in ``trainer_deployments``, renewed every third of
``trainer_lease_seconds``). Only the holder restarts a crashed server; when a replica dies
or stops, its leases expire (or are released) and another replica's supervisor adopts the
running servers (health check) or restarts them.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, update
from sqlmodel import col, select

from services.trainer.models import Deployment, now
from services.trainer.serving.views import LIVE
from services.trainer.settings import TrainerSettings
from shared.db import Database

__all__ = ["DeploymentLeases"]


class DeploymentLeases:
    """Take, extend and release deployments' watch leases for one trainer instance."""

    def __init__(self, db: Database, settings: TrainerSettings, instance: str) -> None:
        self.db = db
        self.settings = settings
        self.instance = instance

    def _free(self) -> Any:
        """Rows whose lease is free, expired or this instance's."""
        return or_(
            col(Deployment.owner).is_(None),
            col(Deployment.lease_until) < now(),
            col(Deployment.owner) == self.instance,
        )

    def unwatched(self) -> list[uuid.UUID]:
        """Live deployments nobody else watches."""
        with self.db.session() as session:
            return list(
                session.exec(
                    select(Deployment.id).where(col(Deployment.status).in_(LIVE), self._free())
                ).all()
            )

    def serving_here(self) -> list[Deployment]:
        """The live deployments this instance serves (or that nobody watches)."""
        with self.db.session() as session:
            return list(
                session.exec(
                    select(Deployment).where(col(Deployment.status).in_(LIVE), self._free())
                ).all()
            )

    def claim(self, dep_id: uuid.UUID) -> bool:
        """Take (or extend) the lease; False while another replica holds a live one."""
        with self.db.session() as session:
            result = session.execute(
                update(Deployment)
                .where(
                    col(Deployment.id) == dep_id,
                    col(Deployment.status).in_(LIVE),
                    self._free(),
                )
                .values(
                    owner=self.instance,
                    lease_until=now() + timedelta(seconds=self.settings.trainer_lease_seconds),
                )
            )
            session.commit()
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def release(self, dep_id: uuid.UUID) -> None:
        """Give the lease up (the watcher ended)."""
        with self.db.session() as session:
            session.execute(
                update(Deployment)
                .where(col(Deployment.id) == dep_id, col(Deployment.owner) == self.instance)
                .values(owner=None, lease_until=None)
            )
            session.commit()
