"""Event contract tests: golden JSON per (type, version), upcasting, tolerant reading.

``AIDP_UPDATE_GOLDEN=1`` writes the golden files that are missing (from
``event_examples.EXAMPLES``); ``AIDP_UPDATE_GOLDEN=force`` rewrites all of them — only do
that for a version that was never released.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shared import events
from shared.events import (
    EVENT_TYPES,
    Envelope,
    EventPayload,
    ProjectCreated,
    RunCancelled,
    UnknownEventError,
    new_event,
    parse_payload,
)
from tests.unit.shared.event_examples import EXAMPLES

GOLDEN = Path(__file__).parent / "golden"
_NAME = re.compile(r"^(?P<type>[A-Za-z]+)\.v(?P<version>\d+)\.json$")


def golden_path(event_type: str, version: int) -> Path:
    return GOLDEN / f"{event_type}.v{version}.json"


def goldens() -> list[Any]:
    """One pytest param (type, version, path) per golden file."""
    found = []
    for path in sorted(GOLDEN.glob("*.json")):
        match = _NAME.match(path.name)
        if match:
            found.append(pytest.param(match["type"], int(match["version"]), path, id=path.stem))
    return found


def _update_goldens() -> None:
    mode = os.environ.get("AIDP_UPDATE_GOLDEN", "")
    if not mode:
        return
    GOLDEN.mkdir(exist_ok=True)
    for event_type, cls in EVENT_TYPES.items():
        path = golden_path(event_type, cls.__version__)
        if path.exists() and mode != "force":
            continue
        if event_type not in EXAMPLES:
            raise AssertionError(f"add an example payload for {event_type} to event_examples.py")
        payload = cls.model_validate(EXAMPLES[event_type]).model_dump(mode="json")
        path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


_update_goldens()


def required_fields(model: type[Any]) -> set[str]:
    """Names of the fields ``model`` requires (no default)."""
    return {name for name, field in model.model_fields.items() if field.is_required()}


def _nested(
    cls: type[EventPayload], golden: dict[str, Any]
) -> list[tuple[str, type[Any], dict[str, Any]]]:
    """(dotted path, model class, golden object) for each nested model value in ``golden``."""
    found = []
    for name, field in cls.model_fields.items():
        value = golden.get(name)
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        inner = next((a for a in (annotation, *args) if hasattr(a, "model_fields")), None)
        if inner is None:
            continue
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict):
                found.append((f"{name}.", inner, item))
    return found


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_event_has_a_golden_for_its_current_version(event_type: str) -> None:
    version = EVENT_TYPES[event_type].__version__
    assert golden_path(event_type, version).exists(), (
        f"no golden for {event_type} v{version}: add an example to "
        "tests/unit/shared/event_examples.py and run with AIDP_UPDATE_GOLDEN=1"
    )


@pytest.mark.parametrize(("event_type", "version", "path"), goldens())
def test_a_golden_payload_still_parses_as_the_current_class(
    event_type: str, version: int, path: Path
) -> None:
    payload = json.loads(path.read_text())
    envelope = Envelope(type=event_type, version=version, payload=payload)
    parsed = parse_payload(envelope)  # upcasts older versions
    assert isinstance(parsed, EVENT_TYPES[event_type])


# Older versions reach the current class through their upcaster (checked above).
@pytest.mark.parametrize(
    ("event_type", "version", "path"),
    [g for g in goldens() if g.values[1] == EVENT_TYPES[g.values[0]].__version__],
)
def test_fields_added_since_a_golden_have_defaults(
    event_type: str, version: int, path: Path
) -> None:
    cls = EVENT_TYPES[event_type]
    golden = json.loads(path.read_text())
    missing = sorted(required_fields(cls) - set(golden))
    for prefix, model, value in _nested(cls, golden):
        missing += sorted(prefix + name for name in required_fields(model) - set(value))
    assert not missing, (
        f"{event_type} v{version}: field(s) {', '.join(missing)} were added without a default; "
        "old producers do not send them. Give them defaults, or declare a new version "
        "with an upcaster."
    )


def test_the_golden_check_names_a_new_required_field() -> None:
    class Widened(ProjectCreated):
        region: str  # no default: old producers would break consumers

    golden = json.loads(golden_path("ProjectCreated", 1).read_text())
    assert required_fields(Widened) - set(golden) == {"region"}


def test_an_upcaster_turns_an_old_payload_into_the_current_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class WidgetRenamed(EventPayload):
        __version__ = 2
        title: str  # was "name" in v1

    monkeypatch.setitem(EVENT_TYPES, "WidgetRenamed", WidgetRenamed)
    monkeypatch.setattr(events, "_UPCASTERS", dict(events._UPCASTERS))

    @events.upcaster("WidgetRenamed", 1)
    def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
        data = dict(data)
        data["title"] = data.pop("name")
        return data

    old = Envelope(type="WidgetRenamed", version=1, payload={"name": "old shape"})
    assert parse_payload(old) == WidgetRenamed(title="old shape")
    current = Envelope(type="WidgetRenamed", version=2, payload={"title": "new"})
    assert parse_payload(current) == WidgetRenamed(title="new")
    with pytest.raises(UnknownEventError, match="newer"):
        parse_payload(Envelope(type="WidgetRenamed", version=3, payload={}))
    monkeypatch.setattr(events, "_UPCASTERS", {})
    with pytest.raises(UnknownEventError, match="no upcaster"):
        parse_payload(old)


def test_an_unknown_type_is_refused() -> None:
    with pytest.raises(UnknownEventError, match="unknown event type"):
        parse_payload(Envelope(type="SomethingHappened", payload={}))


def test_unknown_fields_are_ignored_in_payloads_and_envelopes() -> None:
    payload = {**EXAMPLES["ProjectCreated"], "added_by_a_newer_producer": {"x": 1}}
    envelope = new_event(RunCancelled()).model_dump(mode="json")
    envelope.update(type="ProjectCreated", payload=payload, future_header="ignored")
    parsed = parse_payload(Envelope.model_validate(envelope))
    assert isinstance(parsed, ProjectCreated)
    assert not hasattr(parsed, "added_by_a_newer_producer")


def test_a_bad_field_is_a_validation_error() -> None:
    bad = Envelope(type="TrainingProgress", payload={"step": "not a number"})
    with pytest.raises(ValidationError):
        parse_payload(bad)


def test_new_event_links_correlation_and_causation() -> None:
    project, run = uuid.uuid4(), uuid.uuid4()
    first = new_event(
        ProjectCreated(owner_id=uuid.uuid4(), spec={}), project_id=project, run_id=run
    )
    assert first.correlation_id == first.id and first.causation_id is None
    second = new_event(RunCancelled(), cause=first)
    assert (second.project_id, second.run_id) == (project, run)
    assert second.correlation_id == first.id
    assert second.causation_id == first.id
    third = new_event(RunCancelled(), cause=second)
    assert third.correlation_id == first.id and third.causation_id == second.id


def test_an_envelope_survives_the_wire() -> None:
    sent = new_event(ProjectCreated.model_validate(EXAMPLES["ProjectCreated"]))
    assert Envelope.from_bytes(sent.to_bytes()) == sent
    assert sent.type == "ProjectCreated" and sent.version == 1
