"""The run owner rule in one place (shared/events.run_owner): the event names the owner;
an older RunRequested without ``owner_id`` falls back to who asked, then to None (the
consumer keeps the previous run's owner)."""

from __future__ import annotations

import uuid

from shared.events import ProjectCreated, RunRequested, run_owner


def test_project_created_names_its_creator() -> None:
    creator = uuid.uuid4()
    assert run_owner(ProjectCreated(owner_id=creator, spec={})) == creator


def test_run_requested_names_the_owner_the_gateway_chose() -> None:
    owner, asker = uuid.uuid4(), uuid.uuid4()
    event = RunRequested(spec={}, run_number=2, requested_by=asker, owner_id=owner)
    assert run_owner(event) == owner


def test_an_older_run_requested_falls_back_to_who_asked_then_to_none() -> None:
    asker = uuid.uuid4()
    assert run_owner(RunRequested(spec={}, run_number=2, requested_by=asker)) == asker
    assert run_owner(RunRequested(spec={}, run_number=2)) is None
    old_body = RunRequested.model_validate({"spec": {}, "run_number": 3})
    assert old_body.owner_id is None and run_owner(old_body) is None
