"""shared.service.inbox: claim, apply, commit, publish — once per event."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, func, select

from shared.errors import InvalidInput
from shared.events import (
    Envelope,
    ProjectDeleted,
    RunCancelled,
    new_event,
)
from shared.outbox import InboxRow, OutboxRow
from shared.runtime import ServiceRuntime
from shared.secrets import InMemoryVault
from shared.service.inbox import Inbox
from shared.settings import BaseServiceSettings


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[ServiceRuntime]:
    settings = BaseServiceSettings(
        service_name="svc", data_dir=tmp_path, bus_url=f"memory://inbox-{tmp_path.name}"
    )
    vault = InMemoryVault()
    rt = ServiceRuntime(settings, vault=(vault, vault))
    rt.db.migrate(service="svc")
    yield rt
    rt.db.engine.dispose()


def count(runtime: ServiceRuntime, table: type) -> int:
    with runtime.db.session() as s:
        return int(s.exec(select(func.count()).select_from(table)).one())


async def test_an_event_is_applied_committed_and_published_once(runtime: ServiceRuntime) -> None:
    inbox = Inbox(runtime)
    applied: list[Envelope] = []
    after: list[tuple[str, Envelope]] = []

    async def then(result: str, envelope: Envelope) -> None:
        after.append((result, envelope))

    @inbox.handles(RunCancelled, then=then)
    def cancel(session: Session, event: RunCancelled, envelope: Envelope) -> str:
        assert isinstance(event, RunCancelled)
        applied.append(envelope)
        runtime.stage(session, new_event(ProjectDeleted(), cause=envelope))
        return "cancelled"

    handler = inbox.handlers()["RunCancelled"]
    envelope = new_event(RunCancelled())
    await handler(envelope)
    await handler(envelope)  # redelivered: nothing happens again
    assert applied == [envelope]
    assert after == [("cancelled", envelope)]
    assert count(runtime, OutboxRow) == 1
    assert count(runtime, InboxRow) == 1


async def test_a_failing_function_rolls_the_claim_back_so_a_redelivery_applies_it(
    runtime: ServiceRuntime,
) -> None:
    inbox = Inbox(runtime)
    calls: list[int] = []

    @inbox.handles(RunCancelled)
    def flaky(session: Session, event: RunCancelled, envelope: Envelope) -> None:
        calls.append(1)
        runtime.stage(session, new_event(ProjectDeleted(), cause=envelope))
        if len(calls) == 1:
            raise OSError("database hiccup")

    envelope = new_event(RunCancelled())
    with pytest.raises(OSError):
        await inbox.handlers()["RunCancelled"](envelope)
    assert count(runtime, InboxRow) == 0 and count(runtime, OutboxRow) == 0
    await inbox.handlers()["RunCancelled"](envelope)
    assert len(calls) == 2
    assert count(runtime, InboxRow) == 1 and count(runtime, OutboxRow) == 1


async def test_an_envelope_of_another_type_is_invalid_input(runtime: ServiceRuntime) -> None:
    inbox = Inbox(runtime)

    @inbox.handles(RunCancelled)
    def cancel(session: Session, event: RunCancelled, envelope: Envelope) -> None:
        raise AssertionError("not called")

    with pytest.raises(InvalidInput):
        await inbox.handlers()["RunCancelled"](new_event(ProjectDeleted()))
    assert count(runtime, InboxRow) == 0


def test_one_handler_per_event_type(runtime: ServiceRuntime) -> None:
    inbox = Inbox(runtime)

    @inbox.handles(RunCancelled, ProjectDeleted)
    def first(session: Session, event: object, envelope: Envelope) -> None:
        return None

    assert set(inbox.handlers()) == {"RunCancelled", "ProjectDeleted"}
    with pytest.raises(ValueError, match="already has a handler"):
        inbox.handles(RunCancelled)(first)
    with pytest.raises(ValueError):
        inbox.handles()
