"""shared.service.leases on PostgreSQL: the unit checks, plus concurrent batch claims
(``FOR UPDATE SKIP LOCKED``) that never hand one row to two replicas."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from shared.db import Database
from tests.unit.shared.test_service_leases import (
    check_claim_many,
    check_claim_renew_release,
    check_ineligible_rows_are_not_leased,
    check_key_leases,
    check_steal_after_expiry,
    jobs,
    make_db,
    row_leases,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    database = make_db(postgres_url)
    yield database
    database.engine.dispose()


@pytest.mark.parametrize(
    "check",
    [
        check_claim_renew_release,
        check_steal_after_expiry,
        check_ineligible_rows_are_not_leased,
        check_claim_many,
        check_key_leases,
    ],
)
def test_lease_semantics_on_postgres(pg: Database, check) -> None:  # type: ignore[no-untyped-def]
    check(pg)


def test_concurrent_batch_claims_never_share_a_row(pg: Database) -> None:
    ids = set(jobs(pg, 40))
    won: dict[str, list[object]] = {}
    start = threading.Barrier(4)

    def replica(name: str) -> None:
        leases = row_leases(pg, name)
        start.wait()
        mine: list[object] = []
        for _ in range(20):
            mine += leases.claim_many(skip=mine, limit=4)
        won[name] = mine

    threads = [threading.Thread(target=replica, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [k for keys in won.values() for k in keys]
    assert len(claimed) == len(set(claimed)) == len(ids)
    assert set(claimed) == ids
