"""Two runs that finish at once with identical files both register the same created blob.

A check-then-insert let the second transaction fail its commit with a duplicate key, which
crashed that run's training job and left the run "training" forever (seen in the broker
chaos test: two identical tiny projects trained with the same seed). On real PostgreSQL,
two concurrent transactions now both commit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlmodel import SQLModel, select

from services.trainer.models import CreatedBlob
from services.trainer.retention import record_created
from shared.db import Database


@pytest.fixture
def db(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url)
    SQLModel.metadata.create_all(database.engine, tables=[CreatedBlob.__table__])  # type: ignore[attr-defined]
    yield database
    database.dispose()


def test_concurrent_transactions_register_the_same_blob(db: Database) -> None:
    digest, other = "a" * 64, "b" * 64
    first_wrote = threading.Event()
    errors: list[BaseException] = []

    def second() -> None:
        try:
            first_wrote.wait(10)
            with db.session() as session:  # blocks on the first's row, then skips it
                record_created(session, [digest, other])
                session.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    with db.session() as session:
        record_created(session, [digest])
        session.flush()
        first_wrote.set()
        thread.join(0.5)  # the second transaction now waits on this one
        session.commit()
    thread.join(20)
    assert not errors, errors
    with db.session() as session:
        rows = sorted(session.exec(select(CreatedBlob.digest)).all())
    assert rows == [digest, other]
