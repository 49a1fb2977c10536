"""shared.service.states: enums with a transition table."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pytest

from shared.service.states import InvalidTransition, Transitions


class Light(StrEnum):
    RED = "red"
    GREEN = "green"
    OFF = "off"


LIGHT = Transitions(Light, {Light.RED: {Light.GREEN, Light.OFF}, Light.GREEN: {Light.RED}})


@dataclass
class Lamp:
    state: str = "red"


def test_allowed_moves_follow_the_table_for_strings_and_members() -> None:
    assert LIGHT.allowed("red", "green") and LIGHT.allowed(Light.GREEN, Light.RED)
    assert not LIGHT.allowed("green", "off")
    assert not LIGHT.allowed("off", "red")  # not a key: terminal
    assert LIGHT.terminal("off") and not LIGHT.terminal("red")


def test_transition_sets_the_stored_string_or_raises() -> None:
    lamp = Lamp()
    assert LIGHT.transition(lamp, "green") is Light.GREEN
    assert lamp.state == "green" and type(lamp.state) is str
    with pytest.raises(InvalidTransition, match="green → off"):
        LIGHT.transition(lamp, Light.OFF)
    assert lamp.state == "green"


def test_unknown_states_are_refused() -> None:
    with pytest.raises(ValueError):
        LIGHT.allowed("red", "blue")
    with pytest.raises(TypeError):
        Transitions(Light, {Light.RED: {"green"}})  # type: ignore[dict-item, misc]


def test_service_tables_keep_the_stored_values() -> None:
    from services.fetcher.models import FETCH_JOB, FetchJobState
    from services.provisioner.models import NODES, STATES, RunState

    assert tuple(RunState) == STATES
    assert set(NODES.table) | {s for t in NODES.table.values() for s in t} == set(RunState)
    assert NODES.allowed("ready", "replacing") and not NODES.allowed("released", "ready")
    assert [s.value for s in FetchJobState] == ["pending", "done", "failed", "cancelled"]
    assert FETCH_JOB.terminal("done") and FETCH_JOB.allowed("pending", "cancelled")
