"""Typed inbox handlers: claim the event, apply it, commit, publish — in one place.

A service declares its event handlers as *domain functions* on an :class:`Inbox`::

    inbox = Inbox(runtime)

    @inbox.handles(RunCancelled, then=stop_job)
    def cancel_job(session: Session, event: RunCancelled, envelope: Envelope) -> bool:
        ...  # database work only; runtime.stage(session, ...) for events to publish

    runtime.on(inbox.handlers())

For each delivery the generated bus handler:

1. parses the envelope into its newest payload class and checks it is one the function
   declared (anything else is :class:`~shared.errors.InvalidInput`: dead-lettered);
2. in one database session, off the event loop (:func:`shared.db.run_sync`): claims the
   envelope in the inbox (:func:`shared.outbox.claim_inbox`), calls the function, commits —
   the claim, the state change and the staged outbox events commit together or not at all.
   One unit at a time per service process: the functions check then write (a run's state,
   its pending job), which is only safe when two deliveries about the same run cannot
   interleave — as when they ran on the loop, before the async rule;
3. wakes the outbox relay (``runtime.published()``) so the staged events go out now;
4. awaits ``then(result, envelope)``, if given: the effects outside the database (start or
   cancel a background job) that must follow the commit.

A redelivered envelope finds its claim and does nothing: neither the function nor
``then`` runs, and the message is acked. An exception in the function rolls everything
back (the claim too), so the redelivery applies the event again; what happens to the
message follows :func:`shared.errors.delivery_action`. ``then`` runs at most once per
event: if the process dies between the commit and ``then``, the service's own recovery
(resuming pending jobs at start) takes over, as it did before this kit.

Services whose handlers batch several deliveries into one transaction (the gateway's
event log writer, group commit) keep their own inbox claim; the semantics are the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlmodel import Session

from shared.db import run_sync
from shared.errors import InvalidInput
from shared.events import Envelope, EventPayload, parse_payload
from shared.outbox import claim_inbox
from shared.runtime import EventHandler, ServiceRuntime

__all__ = ["Apply", "Inbox", "Then"]

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

#: The domain function: (session, typed event, envelope) -> result handed to ``then``.
Apply = Callable[[Session, Any, Envelope], Any]
#: The effects after the commit: (the function's result, envelope).
Then = Callable[[Any, Envelope], Awaitable[None]]


class _Seen:
    """Marker: the envelope was handled before (the inbox claim failed)."""


_SEEN = _Seen()


class Inbox:
    """The typed event handlers of one service (see the module docstring)."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime
        self._handlers: dict[str, EventHandler] = {}
        self._one_at_a_time = asyncio.Lock()  # see step 2 of the module docstring

    def handles(self, *types: type[EventPayload], then: Then | None = None) -> Callable[[F], F]:
        """Register the decorated domain function for the events ``types``."""
        if not types:
            raise ValueError("handles() needs at least one event class")

        def register(apply: F) -> F:
            handler = self._handler(types, apply, then)
            for cls in types:
                name = cls.event_type()
                if name in self._handlers:
                    raise ValueError(f"{name} already has a handler")
                self._handlers[name] = handler
            return apply

        return register

    def handlers(self) -> dict[str, EventHandler]:
        """Event type -> bus handler, for ``runtime.on`` (the queue binds these types)."""
        return dict(self._handlers)

    def _handler(
        self, types: tuple[type[EventPayload], ...], apply: Apply, then: Then | None
    ) -> EventHandler:
        async def handle(envelope: Envelope) -> None:
            event = parse_payload(envelope)
            if not isinstance(event, types):
                raise InvalidInput(f"unexpected event {envelope.type} for {apply.__name__}")
            async with self._one_at_a_time:
                result = await run_sync(self._unit, apply, event, envelope)
            if isinstance(result, _Seen):
                return
            self.runtime.published()
            if then is not None:
                await then(result, envelope)

        handle.__name__ = f"on_{apply.__name__}"
        return handle

    def _unit(self, apply: Apply, event: EventPayload, envelope: Envelope) -> Any:
        """Claim, apply, commit: one unit of database work (runs in a worker thread)."""
        with self.runtime.db.session() as session:
            if not claim_inbox(session, envelope, service=self.runtime.name):
                return _SEEN
            result = apply(session, event, envelope)
            session.commit()
        return result
