"""The stored locks: one per resolution input, so a spec is resolved only once."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from services.provisioner.envs.builder import LockResult
from services.provisioner.models import EnvLock
from shared.db import Database

__all__ = ["LockStore"]


class LockStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def load(self, input_key: str) -> LockResult | None:
        with self.db.session() as s:
            row = s.get(EnvLock, input_key)
            if row is None:
                return None
            return LockResult(input_key=row.input_key, lock_hash=row.lock_hash, text=row.lock)

    def save(self, lock: LockResult) -> None:
        """Keep the first lock stored for a key (a concurrent second resolution is dropped).

        Two replicas (or two runs of one) may resolve the same input at once and both find
        no row; the slower insert then violates the primary key, which means "already
        stored", not an error."""
        with self.db.session() as s:
            if s.get(EnvLock, lock.input_key) is not None:
                return
            s.add(EnvLock(input_key=lock.input_key, lock_hash=lock.lock_hash, lock=lock.text))
            try:
                s.commit()
            except IntegrityError:
                s.rollback()
