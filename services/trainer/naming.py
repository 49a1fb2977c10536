"""Moving the trainer's store and references to keyed blob names, at start (idempotent).

First the store (:func:`shared.store_migration.migrate_store`, shared with the fetcher:
whichever starts first does it, the other finds it done), then, once per database, every
reference in the transaction that records the step (``trainer_store_naming``): checkpoint
and model manifests (rewritten with their files' keyed names), the blobs the trainer
created (retention), the artifacts of each run and a model's lineage. Running it again does
nothing; a replica starting meanwhile waits for the marker row and skips.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy import update
from sqlmodel import Session, col, select

from services.trainer.models import Checkpoint, CreatedBlob, ModelVersion, Run, StoreNaming
from shared.db import Database
from shared.store import ArtifactStore
from shared.store_migration import ReferenceMap, migrate_store, once

__all__ = ["STEP", "migrate_to_keyed_names"]

log = logging.getLogger(__name__)

STEP = "keyed-blob-names"


def migrate_to_keyed_names(db: Database, store: ArtifactStore) -> bool:
    """Migrate the store, then this database's references; True if references were mapped."""
    migrate_store(store)
    mapped = once(db, StoreNaming, STEP, lambda session: _map_references(session, store))
    if mapped:
        log.info("trainer: blob references moved to keyed names")
    return mapped


def _map_references(session: Session, store: ArtifactStore) -> None:
    refs = ReferenceMap(store)
    manifests: set[str] = set()
    for row_id, key in session.exec(select(Checkpoint.id, Checkpoint.manifest_key)).all():
        manifests.add(key)
        session.execute(
            update(Checkpoint)
            .where(col(Checkpoint.id) == row_id)
            .values(manifest_key=refs.manifest(key))
        )
    models = session.exec(
        select(ModelVersion.id, ModelVersion.manifest_key, ModelVersion.lineage)
    ).all()
    for model_id, key, lineage in models:
        manifests.add(key)
        session.execute(
            update(ModelVersion)
            .where(col(ModelVersion.id) == model_id)
            .values(manifest_key=refs.manifest(key), lineage=_lineage(refs, lineage or {}))
        )
    for (digest,) in session.execute(select(CreatedBlob.digest)).all():
        new = refs.manifest(digest) if digest in manifests else refs.file(digest)
        session.execute(
            update(CreatedBlob).where(col(CreatedBlob.digest) == digest).values(digest=new)
        )
    for run_id, artifacts in session.exec(select(Run.run_id, Run.artifacts)).all():
        if artifacts:
            mapped = [refs.artifact_ref(a, "resolved_revision") for a in artifacts]
            session.execute(update(Run).where(col(Run.run_id) == run_id).values(artifacts=mapped))


def _lineage(refs: ReferenceMap, lineage: Mapping[str, object]) -> dict[str, object]:
    out = dict(lineage)
    for kind in ("model", "dataset"):
        entry = out.get(kind)
        if isinstance(entry, dict):
            out[kind] = refs.artifact_ref(entry, "revision")
    return out
