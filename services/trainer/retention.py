"""Checkpoint retention: keep the latest K checkpoints of a run, delete what nobody needs.

A checkpoint is a manifest in the shared, content-addressed store; its blobs can be shared
(with other checkpoints, a registered model, a fetched artifact). Pruning therefore deletes
a blob only when

1. the trainer created it (``trainer_blobs``: it was not in the store before the trainer
   stored a checkpoint or a model — so a fetched artifact's blob is never touched), and
2. no manifest the trainer still holds (any run's remaining checkpoints, any registered
   model) references it.

The checkpoint rows go first (one commit), the blobs after: a crash in between leaks
unreferenced blobs, it never leaves a checkpoint pointing at a deleted blob. Within one
process pruning is serialised by a lock; a replica storing a checkpoint while another
prunes re-stores any shared blob that vanished (:func:`staging.restore_missing`).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable

from sqlalchemy import delete
from sqlmodel import Session, col, select

from services.trainer.models import Checkpoint, CreatedBlob, ModelVersion
from shared.db import Database
from shared.errors import NotFound
from shared.service.clock import utcnow
from shared.store import ArtifactStore

__all__ = ["prune_checkpoints", "record_created"]

log = logging.getLogger(__name__)

_LOCK = threading.Lock()


def record_created(session: Session, digests: Iterable[str]) -> None:
    """Remember blobs the trainer created (caller commits).

    Idempotent across concurrent transactions: two runs that finish at once with identical
    files (same data, same seed) both "create" the same blob, and a check-then-insert would
    fail the second commit with a duplicate key and crash its job. ``ON CONFLICT DO NOTHING``
    (PostgreSQL and SQLite) keeps the first row."""
    wanted = sorted(set(digests))
    if not wanted:
        return
    dialect = session.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):
        for digest in wanted:
            if session.get(CreatedBlob, digest) is None:
                session.add(CreatedBlob(digest=digest))
        return
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    rows = [{"digest": d, "created_at": utcnow()} for d in wanted]
    statement = insert(CreatedBlob).values(rows).on_conflict_do_nothing(index_elements=["digest"])
    session.execute(statement)


def _digests(store: ArtifactStore, key: str) -> set[str]:
    """The manifest's own key and its files' digests (empty if the manifest is gone)."""
    try:
        return {key, *(f.digest for f in store.get_manifest(key).files)}
    except NotFound:
        log.warning("manifest %s is missing from the store", key)
        return {key}


def prune_checkpoints(
    db: Database, store: ArtifactStore, *, run_id: uuid.UUID, keep: int
) -> tuple[int, int]:
    """Drop all but the ``keep`` latest checkpoints of ``run_id`` (0: all of them).

    Returns (checkpoints dropped, blobs deleted). Blocking: call it in a worker thread.
    """
    with _LOCK:
        with db.session() as session:
            rows = session.exec(
                select(Checkpoint)
                .where(Checkpoint.run_id == run_id)
                .order_by(col(Checkpoint.step).desc())
            ).all()
            dropped = list(rows[keep:])
            if not dropped:
                return 0, 0
            for row in dropped:
                session.delete(row)
            session.flush()
            kept = session.exec(select(Checkpoint.manifest_key)).all()
            models = session.exec(select(ModelVersion.manifest_key)).all()
            referenced: set[str] = set()
            for key in {*kept, *models}:
                referenced |= _digests(store, key)
            candidates: set[str] = set()
            for row in dropped:
                candidates |= _digests(store, row.manifest_key)
            candidates -= referenced
            owned = (
                set(
                    session.exec(
                        select(CreatedBlob.digest).where(col(CreatedBlob.digest).in_(candidates))
                    ).all()
                )
                if candidates
                else set()
            )
            if owned:
                session.execute(delete(CreatedBlob).where(col(CreatedBlob.digest).in_(owned)))
            session.commit()
        for digest in owned:
            store.delete(digest)
    log.info(
        "run %s: dropped %d checkpoint(s), deleted %d blob(s)", run_id, len(dropped), len(owned)
    )
    return len(dropped), len(owned)
