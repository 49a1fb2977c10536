"""The run's state changes during training, each one transaction (row + at most one
event, :func:`services.trainer.runs.transition`). Blocking: called through ``run_sync``.

Every change checks that the run is still in the state the job expects (and, where it
matters, still leased by this instance), so a job that lost its run changes nothing.
"""

from __future__ import annotations

import logging
import posixpath
import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.trainer.models import Checkpoint, Deployment, Run
from services.trainer.registry import latest_checkpoint, register_model
from services.trainer.retention import record_created
from services.trainer.runs import ACTIVE, transition
from services.trainer.settings import TrainerSettings
from services.trainer.staging import StoredTree
from services.trainer.training.outcome import budget
from shared.errors import Conflict
from shared.events import NodeLost, TrainingCompleted, TrainingFailed, TrainingStarted
from shared.runtime import ServiceRuntime
from shared.spec import DeploySpec

__all__ = ["RunRecords"]

log = logging.getLogger(__name__)


class RunRecords:
    """The training state changes of one trainer instance's runs."""

    def __init__(self, runtime: ServiceRuntime, settings: TrainerSettings, instance: str) -> None:
        self.runtime = runtime
        self.settings = settings
        self.instance = instance

    def load(self, run_id: uuid.UUID) -> tuple[Run, Checkpoint | None]:
        """The run and its latest checkpoint (Conflict when the run is gone)."""
        with self.runtime.db.session() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise Conflict(f"run {run_id} vanished")
            return run, latest_checkpoint(session, run_id)

    def back_to_staging(self, run_id: uuid.UUID) -> bool:
        """A ``training`` run taken over (trainer crash or restart) is staged again."""
        with self.runtime.db.session() as session:
            run = session.get(Run, run_id)
            if run is None or run.state != "training" or run.owner != self.instance:
                return False
            transition(session, run, to="staging", event=None, stage=self.runtime.stage)
            session.commit()
        return True

    def to_training(
        self, run_id: uuid.UUID, started: TrainingStarted, pgids: dict[str, int]
    ) -> bool:
        """The processes started: ``training`` with ``TrainingStarted`` and their groups."""
        with self.runtime.db.session() as session:
            run = session.get(Run, run_id)
            if run is None or run.state != "staging" or run.owner != self.instance:
                return False
            transition(
                session,
                run,
                to="training",
                event=started,
                stage=self.runtime.stage,
                attempt=started.attempt,
                processes=pgids,
                workspace_cleaned=False,
            )
            session.commit()
        self.runtime.published()
        return True

    def to_replacing(
        self, run_id: uuid.UUID, lost: list[str], reason: str, launched: bool, larger: bool
    ) -> None:
        """``replacing`` with ``NodeLost`` (no job owns the run until ``NodesReplaced``),
        or ``failed`` when no launch is left."""
        with self.runtime.db.session() as session:
            run = session.get(Run, run_id)
            if run is None or run.state not in ACTIVE or run.owner != self.instance:
                return
            spent = budget(
                run.attempt, launched=launched, max_attempts=self.settings.trainer_max_attempts
            )
            attempts = spent.attempts
            if not spent.retry:
                limit = self.settings.trainer_max_attempts
                final = f"{reason}; no launches left ({attempts} of {limit})"
                transition(
                    session,
                    run,
                    to="failed",
                    stage=self.runtime.stage,
                    reason=final,
                    event=TrainingFailed(reason=final, exit_code=None, retryable=True),
                    owner=None,
                    lease_until=None,
                )
            else:
                ckpt = latest_checkpoint(session, run_id)
                event = NodeLost(
                    nodes=lost,
                    reason=reason,
                    attempt=max(1, attempts),
                    resume_step=ckpt.step if ckpt is not None else None,
                    larger=larger,
                )
                transition(
                    session,
                    run,
                    to="replacing",
                    stage=self.runtime.stage,
                    event=event,
                    reason=reason,
                    attempt=attempts,
                    processes=None,
                    owner=None,
                    lease_until=None,
                )
            session.commit()
        self.runtime.published()

    def retry_or_fail(
        self,
        run_id: uuid.UUID,
        reason: str,
        exit_code: int | None,
        retryable: bool,
        launched: bool = True,
    ) -> bool:
        """Back to ``staging`` for another launch, or ``failed`` for good. True = retry.

        ``launched`` False: the attempt failed before training started (it still counts).
        """
        with self.runtime.db.session() as session:
            run = session.get(Run, run_id)
            if run is None or run.state not in ACTIVE:
                return False
            spent = budget(
                run.attempt,
                launched=launched,
                max_attempts=self.settings.trainer_max_attempts,
                retryable=retryable,
            )
            if spent.retry:
                log.warning("run %s attempt %d: %s; retrying", run_id, spent.attempts, reason)
                transition(
                    session,
                    run,
                    to="staging",
                    event=None,
                    stage=self.runtime.stage,
                    reason=reason,
                    attempt=spent.attempts,
                )
                session.commit()
                return True
            self._to_failed(session, run, reason, exit_code, retryable)
            session.commit()
        self.runtime.published()
        return False

    def finish_failed(
        self, run_id: uuid.UUID, reason: str, exit_code: int | None, retryable: bool
    ) -> None:
        """``failed`` now, whatever the budget (``TrainingFailed``)."""
        with self.runtime.db.session() as session:
            run = session.get(Run, run_id)
            if run is None or run.state not in ACTIVE:
                return
            self._to_failed(session, run, reason, exit_code, retryable)
            session.commit()
        self.runtime.published()

    def _to_failed(
        self, session: Any, run: Run, reason: str, exit_code: int | None, retryable: bool
    ) -> None:
        """``failed`` with ``TrainingFailed``, the lease dropped (the caller commits)."""
        transition(
            session,
            run,
            to="failed",
            stage=self.runtime.stage,
            reason=reason,
            event=TrainingFailed(reason=reason, exit_code=exit_code, retryable=retryable),
            owner=None,
            lease_until=None,
        )

    def record_checkpoint(self, run_id: uuid.UUID, step: int, tree: StoredTree) -> None:
        """A stored checkpoint (a step stored before keeps its row; its blobs are counted)."""
        with self.runtime.db.session() as session:
            session.add(
                Checkpoint(run_id=run_id, step=step, manifest_key=tree.key, size_bytes=tree.size)
            )
            record_created(session, tree.created)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                with self.runtime.db.session() as again:  # the step was stored before
                    record_created(again, tree.created)
                    again.commit()

    def record_completion(
        self,
        run_id: uuid.UUID,
        tree: StoredTree,
        metrics: dict[str, float],
        deploy: DeploySpec,
        node_index: int,
        adapter: dict[str, Any] | None = None,
    ) -> uuid.UUID | None:
        """Register the model, ``succeeded`` with ``TrainingCompleted``; with
        ``deploy.enabled`` also ``deploying`` and a new deployment (``starting``) on the
        node that wrote the model, returned (None when the run does not deploy or is no
        longer training). The event says ``deploy``: the serving side starts the
        deployment when it consumes it (:mod:`services.trainer.handlers`)."""
        key = tree.key
        with self.runtime.db.session() as session:
            run = session.get(Run, run_id)
            if run is None or run.state != "training":
                return None
            record_created(session, tree.created)
            model = register_model(
                session,
                run=run,
                manifest_key=key,
                size_bytes=tree.size,
                metrics=metrics,
                adapter=adapter,
            )
            deploys = deploy.enabled and run.project_id is not None
            completed = TrainingCompleted(
                model_version=str(model.id), metrics=metrics, digest=key, deploy=deploys
            )
            transition(
                session,
                run,
                to="succeeded",
                stage=self.runtime.stage,
                event=completed,
                model_id=model.id,
                owner=None,
                lease_until=None,
            )
            deployment_id = None
            if deploys and run.project_id is not None:
                transition(session, run, to="deploying", event=None, stage=self.runtime.stage)
                node = (run.nodes or [])[node_index]
                deployment = Deployment(
                    project_id=run.project_id,
                    model_id=model.id,
                    run_id=run.run_id,
                    node=node,
                    workdir=posixpath.join(node["workdir"], f"aidp-run-{run.run_id}"),
                    replicas=deploy.replicas,
                    idle_timeout_s=deploy.idle_timeout_s,
                    keep_previous=deploy.keep_previous,
                    promote_on_ready=True,
                )
                session.add(deployment)
                deployment_id = deployment.id
            session.commit()
        self.runtime.published()
        return deployment_id

    def mark_cleaned(self, run_id: uuid.UUID) -> None:
        """The run's workspace was removed from its nodes."""
        with self.runtime.db.session() as session:
            run = session.get(Run, run_id)
            if run is not None:
                run.workspace_cleaned = True
                session.add(run)
                session.commit()
