"""Moving the fetcher's store and references to keyed blob names, at start (idempotent).

First the store (:func:`shared.store_migration.migrate_store`: old blobs re-encrypted under
their keyed names; serialised across processes, resumable), then, once per database, every
reference in the transaction that records the step (``fetcher_store_naming``): artifact
rows (an URL's or upload's key, revision and digest are its content's name; the manifest key
maps to the rewritten manifest), their files and pins, aliases and uploads. Running it again
does nothing; a replica starting meanwhile waits for the marker row and skips.
"""

from __future__ import annotations

import logging

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from services.fetcher.models import Alias, Artifact, ArtifactFile, Lease, Pin, StoreNaming, Upload
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
        log.info("fetcher: blob references moved to keyed names")
    return mapped


def _map_references(session: Session, store: ArtifactStore) -> None:
    refs = ReferenceMap(store)
    arts = [
        (a.key, a.source, a.resolved_revision, a.digest, a.cache_key)
        for a in session.exec(select(Artifact)).all()
    ]
    session.expunge_all()  # rows are rewritten below with UPDATE statements
    for key, source, revision, digest, cache_key in arts:
        new_revision, new_digest = refs.artifact(source, revision, digest)
        new_key = f"{source}@{new_revision}"
        files = session.exec(
            select(ArtifactFile.path, ArtifactFile.digest).where(
                col(ArtifactFile.artifact_key) == key
            )
        ).all()
        for path, file_digest in files:
            session.execute(
                update(ArtifactFile)
                .where(col(ArtifactFile.artifact_key) == key, col(ArtifactFile.path) == path)
                .values(artifact_key=new_key, digest=refs.file(file_digest))
            )
        session.execute(
            update(Pin).where(col(Pin.artifact_key) == key).values(artifact_key=new_key)
        )
        session.execute(delete(Lease).where(col(Lease.key) == key))
        session.execute(
            update(Artifact)
            .where(col(Artifact.key) == key)
            .values(
                key=new_key,
                resolved_revision=new_revision,
                cache_key=refs.manifest(cache_key),
                digest=new_digest,
            )
        )
    for alias, digest in session.exec(select(Alias.alias, Alias.digest)).all():
        session.execute(
            update(Alias).where(col(Alias.alias) == alias).values(digest=refs.file(digest))
        )
    for upload_id, digest in session.exec(select(Upload.id, Upload.digest)).all():
        session.execute(
            update(Upload).where(col(Upload.id) == upload_id).values(digest=refs.file(digest))
        )
