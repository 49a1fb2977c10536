"""The model registry: trained models stored encrypted, as numbered versions with lineage."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from services.trainer.models import Checkpoint, ModelVersion, Run
from shared.errors import NotFound
from shared.spec import ProjectSpec

__all__ = ["latest_checkpoint", "lineage_of", "model_view", "register_model", "get_model"]


def lineage_of(run: Run, adapter: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where a run's model came from: sources and revisions, environment, spec hash; for a
    LoRA run the method and the adapter (rank, alpha, dropout, target modules, merged, and
    its base: the model source and revision it was trained on)."""
    spec = ProjectSpec.model_validate(run.spec or {})
    by_kind = {a["kind"]: a for a in run.artifacts or []}

    def source(kind: str) -> dict[str, Any] | None:
        art = by_kind.get(kind)
        if art is None:
            return None
        return {
            "source": art["source"],
            "revision": art["resolved_revision"],
            "digest": art["digest"],
        }

    env = run.env or {}
    return {
        "model": source("model"),
        "dataset": source("dataset"),
        "env_lock_hash": env.get("lock_hash"),
        "torch_version": env.get("torch_version"),
        "framework": spec.environment.framework,
        **(
            {"tensorflow_version": env["tensorflow_version"]}
            if env.get("tensorflow_version")
            else {}
        ),
        **({"keras_version": env["keras_version"]} if env.get("keras_version") else {}),
        "spec_hash": run.spec_hash,
        "task": spec.task,
        "train_args": spec.train.args,
        "method": (adapter or {}).get("method") or "full",
        **({"adapter": {**adapter, "base": source("model")}} if adapter else {}),
    }


def register_model(
    session: Session,
    *,
    run: Run,
    manifest_key: str,
    size_bytes: int,
    metrics: dict[str, float],
    adapter: dict[str, Any] | None = None,
) -> ModelVersion:
    """Add the next version of the run's project's model (caller commits)."""
    if run.project_id is None:
        raise NotFound(f"run {run.run_id} has no project")
    current = session.exec(
        select(func.max(ModelVersion.version)).where(ModelVersion.project_id == run.project_id)
    ).one()
    spec = ProjectSpec.model_validate(run.spec or {})
    model = ModelVersion(
        project_id=run.project_id,
        run_id=run.run_id,
        version=(current or 0) + 1,
        task=spec.task,
        manifest_key=manifest_key,
        size_bytes=size_bytes,
        metrics=metrics,
        lineage=lineage_of(run, adapter),
    )
    session.add(model)
    return model


def get_model(session: Session, model_id: uuid.UUID) -> ModelVersion:
    model = session.get(ModelVersion, model_id)
    if model is None:
        raise NotFound(f"model {model_id} not found")
    return model


def model_view(model: ModelVersion) -> dict[str, Any]:
    """The internal API's JSON shape of a model version."""
    return {
        "id": str(model.id),
        "project_id": str(model.project_id),
        "run_id": str(model.run_id),
        "version": model.version,
        "task": model.task,
        "method": (model.lineage or {}).get("method", "full"),
        "digest": model.manifest_key,
        "size_bytes": model.size_bytes,
        "metrics": model.metrics,
        "lineage": model.lineage,
        "created_at": model.created_at.isoformat(),
    }


def latest_checkpoint(session: Session, run_id: uuid.UUID) -> Checkpoint | None:
    return session.exec(
        select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(col(Checkpoint.step).desc())
    ).first()
