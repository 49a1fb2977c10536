"""shared.service.leases on SQLite; the same checks run on PostgreSQL in
tests/integration/shared/test_leases_postgres.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlmodel import Field, SQLModel, col

from shared.db import Database
from shared.service.leases import KeyLeases, RowLeases


class LeaseJob(SQLModel, table=True):
    __tablename__ = "leasetest_jobs"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    status: str = "pending"
    owner: str | None = None
    lease_until: datetime | None = None


class LeaseKey(SQLModel, table=True):
    __tablename__ = "leasetest_keys"

    key: str = Field(primary_key=True)
    holder: str
    expires_at: datetime


# test tables, not a service's: out of the shared metadata, which the migrations-vs-models
# check reads (the Table objects stay usable)
_TABLES = [LeaseJob.__table__, LeaseKey.__table__]  # type: ignore[attr-defined]
for _table in _TABLES:
    SQLModel.metadata.remove(_table)


def make_db(url: str) -> Database:
    db = Database(url)
    for table in _TABLES:
        table.create(db.engine, checkfirst=True)
    return db


def jobs(db: Database, n: int, status: str = "pending") -> list[uuid.UUID]:
    rows = [LeaseJob(status=status) for _ in range(n)]
    with db.session() as s:
        s.add_all(rows)
        s.commit()
        return [r.id for r in rows]


def row_leases(db: Database, instance: str, seconds: float = 60.0) -> RowLeases:
    return RowLeases(
        db,
        key=LeaseJob.id,
        holder=LeaseJob.owner,
        until=LeaseJob.lease_until,
        instance=instance,
        seconds=seconds,
        eligible=lambda: [col(LeaseJob.status) == "pending"],
    )


def owner(db: Database, job: uuid.UUID) -> str | None:
    with db.session() as s:
        row = s.get(LeaseJob, job)
        assert row is not None
        return row.owner


def check_claim_renew_release(db: Database) -> None:
    a, b = row_leases(db, "a"), row_leases(db, "b")
    (job,) = jobs(db, 1)
    assert a.claim(job)
    assert a.claim(job)  # own lease: renewed
    assert not b.claim(job)
    assert not b.renew(job)
    assert a.renew(job)
    assert owner(db, job) == "a"
    assert not b.release(job)
    assert a.release(job)
    assert owner(db, job) is None
    assert b.claim(job)


def check_steal_after_expiry(db: Database) -> None:
    a, b = row_leases(db, "a", seconds=0.5), row_leases(db, "b")
    (job,) = jobs(db, 1)
    assert a.claim(job)
    assert not b.claim(job)
    time.sleep(0.6)
    assert b.claim(job)
    assert owner(db, job) == "b"
    assert not a.renew(job)  # the stalled holder learns it lost the lease


def check_ineligible_rows_are_not_leased(db: Database) -> None:
    a = row_leases(db, "a")
    (done,) = jobs(db, 1, status="done")
    (job,) = jobs(db, 1)
    assert not a.claim(done)
    assert a.unheld() == [job]
    assert a.claim_many() == [job]


def check_claim_many(db: Database) -> None:
    a, b = row_leases(db, "a"), row_leases(db, "b")
    ids = jobs(db, 5)
    first = a.claim_many(limit=2)
    assert len(first) == 2
    rest = b.claim_many(skip={ids[0]})
    assert set(rest) == set(ids) - set(first) - {ids[0]}
    assert set(a.claim_many(skip=first)) == ({ids[0]} - set(first))


def check_key_leases(db: Database) -> None:
    a = KeyLeases(db, LeaseKey, instance="a", seconds=0.5)
    b = KeyLeases(db, LeaseKey, instance="b", seconds=60)
    assert a.claim("model@1")
    assert not b.claim("model@1")
    assert not a.claim("model@1")  # not reentrant
    assert b.claim("other")
    time.sleep(0.6)
    assert b.claim("model@1")  # stolen after expiry
    assert not a.renew("model@1")
    assert not a.release("model@1")
    assert b.renew("model@1")
    assert b.release("model@1")
    assert a.claim("model@1")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = make_db(f"sqlite:///{tmp_path / 'leases.db'}")
    yield database
    database.engine.dispose()


def test_claim_renew_release(db: Database) -> None:
    check_claim_renew_release(db)


def test_an_expired_lease_is_stolen_and_its_holder_learns_it(db: Database) -> None:
    check_steal_after_expiry(db)


def test_rows_that_are_not_eligible_are_never_leased(db: Database) -> None:
    check_ineligible_rows_are_not_leased(db)


def test_claim_many_splits_rows_between_replicas(db: Database) -> None:
    check_claim_many(db)


def test_key_leases_single_flight(db: Database) -> None:
    check_key_leases(db)
