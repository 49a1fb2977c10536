"""State enums with a transition table (issue 17 item 1).

A service's states are a :class:`enum.StrEnum` (the values are the strings stored in its
tables and carried by its events, so a member compares and serialises as that string) and
a :class:`Transitions` table saying which moves are allowed::

    class JobState(StrEnum):
        PENDING = "pending"
        DONE = "done"

    JOB = Transitions(JobState, {JobState.PENDING: {JobState.DONE}})
    JOB.allowed("pending", "done")          # True
    JOB.transition(row, JobState.DONE)      # sets row.state, or raises InvalidTransition

States absent from the table's keys are terminal (no move out of them). A move the table
does not list raises :class:`InvalidTransition` — a bug in the caller, never retried (it
is a ``ValueError``: an event handler raising it dead-letters its message).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Generic, TypeVar

__all__ = ["InvalidTransition", "Transitions"]

S = TypeVar("S", bound=StrEnum)


class InvalidTransition(ValueError):
    """A state change the transition table does not allow."""

    def __init__(self, machine: str, source: str, target: str) -> None:
        super().__init__(f"{machine}: {source!s} → {target!s} is not an allowed transition")
        self.source, self.target = source, target


class Transitions(Generic[S]):
    """The allowed moves between the members of ``states``."""

    def __init__(self, states: type[S], table: Mapping[S, Iterable[S]]) -> None:
        self.states = states
        self.table: dict[S, frozenset[S]] = {s: frozenset(t) for s, t in table.items()}
        for source, targets in self.table.items():
            for state in (source, *targets):
                if not isinstance(state, states):
                    raise TypeError(f"{state!r} is not a {states.__name__}")

    def state(self, value: str) -> S:
        """The member whose value is ``value`` (ValueError for an unknown string)."""
        return self.states(value)

    def terminal(self, state: str) -> bool:
        """Whether no move leads out of ``state``."""
        return not self.table.get(self.state(state))

    def allowed(self, source: str, target: str) -> bool:
        """Whether ``source → target`` is in the table (strings or members)."""
        return self.state(target) in self.table.get(self.state(source), frozenset())

    def check(self, source: str, target: str) -> S:
        """``target`` as a member; raises :class:`InvalidTransition` unless allowed."""
        if not self.allowed(source, target):
            raise InvalidTransition(self.states.__name__, source, target)
        return self.state(target)

    def transition(self, obj: object, target: str, *, attr: str = "state") -> S:
        """Set ``obj.<attr>`` to ``target`` after checking the move from its current value."""
        new = self.check(getattr(obj, attr), target)
        setattr(obj, attr, new.value)
        return new
