"""The per-user active-run limit holds under concurrency on PostgreSQL: a second start
whose transaction overlaps the first's waits for it, then counts its run (issue 13's limit;
before the per-user transaction lock both passed)."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import create_engine
from sqlmodel import Session

from services.gateway.models import Run
from services.gateway.runlimits import TooManyActiveRuns, check_active_runs

pytestmark = pytest.mark.integration


def test_two_overlapping_starts_of_one_user_do_not_both_pass_the_limit(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    Run.__table__.create(engine)  # type: ignore[attr-defined]
    user = uuid.uuid4()
    second: list[BaseException | None] = []
    second_checking = threading.Event()

    def second_start() -> None:
        with Session(engine) as session:
            second_checking.set()
            try:
                check_active_runs(session, user, limit=1)
                second.append(None)
            except TooManyActiveRuns as exc:
                second.append(exc)

    try:
        with Session(engine) as first:
            check_active_runs(first, user, limit=1)  # passes: no active run yet
            first.add(Run(project_id=uuid.uuid4(), number=1, spec={}, requested_by=user))
            first.flush()
            racer = threading.Thread(target=second_start)
            racer.start()
            second_checking.wait(10)
            racer.join(1.0)
            assert racer.is_alive(), "the second check did not wait for the first start"
            first.commit()
        racer.join(30)
        assert len(second) == 1 and isinstance(second[0], TooManyActiveRuns), second
        assert "the limit is 1 per user" in str(second[0])

        with Session(engine) as other_user:  # another user is not held up by this one
            check_active_runs(other_user, uuid.uuid4(), limit=1)
    finally:
        engine.dispose()
