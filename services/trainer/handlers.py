"""Event handlers of the trainer service: thin, they call the service logic.

Each handler claims the event in the inbox, records its effect and commits; the message is
acked right after. Training and deployments run in background tasks. The trainer consumes
its own ``TrainingCompleted``: when it says ``deploy``, the serving side starts the
deployment created with it (training and serving are joined by the event, not a call).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from services.trainer import service
from services.trainer.app_state import TrainerState
from shared.db import run_sync
from shared.events import (
    ArtifactsCached,
    ArtifactsFailed,
    Envelope,
    NodesFailed,
    NodesReady,
    NodesReleased,
    NodesReplaced,
    TrainingCompleted,
    ValidationFailed,
    parse_payload,
)
from shared.outbox import claim_inbox
from shared.runtime import EventHandler, ServiceRuntime

__all__ = ["build_handlers"]


def build_handlers(runtime: ServiceRuntime, state: TrainerState) -> dict[str, EventHandler]:
    """Event type -> handler; the service queue is bound to exactly these types."""

    # One handler's transaction at a time: the inputs of a run arrive as separate events
    # (spec, nodes, artifacts) and each checks whether the others are already recorded;
    # two at once would each miss the other's uncommitted row and the run would never start.
    serial = asyncio.Lock()

    def handler(
        effect: Callable[[Any, Envelope, Any], Any],
    ) -> Callable[[Envelope], Awaitable[None]]:
        return _handler(runtime, effect, serial)

    ids = lambda e: {"run_id": e.run_id, "project_id": e.project_id}  # noqa: E731

    def on_spec(s: Any, e: Envelope, p: Any) -> Any:
        owner = getattr(p, "owner_id", None) or getattr(p, "requested_by", None)
        owner_id = str(owner) if owner is not None else None
        if service.record_spec(s, spec=p.spec, owner_id=owner_id, stage=runtime.stage, **ids(e)):
            return _kick(state)
        return None

    def on_nodes(s: Any, e: Envelope, p: Any) -> Any:
        return _kick_if(state, service.record_nodes(s, payload=p, stage=runtime.stage, **ids(e)))

    def on_artifacts(s: Any, e: Envelope, p: Any) -> Any:
        return _kick_if(
            state, service.record_artifacts(s, payload=p, stage=runtime.stage, **ids(e))
        )

    def on_failed(s: Any, e: Envelope, p: Any) -> Any:
        service.fail_inputs(s, payload=p, stage=runtime.stage, **ids(e))
        return None

    def on_cancel(s: Any, e: Envelope, p: Any) -> Any:
        service.cancel_run(s, stage=runtime.stage, **ids(e))
        return None

    def on_completed(s: Any, e: Envelope, p: Any) -> Any:
        """Training completed with ``deploy``: start its deployment (once: the inbox drops
        a redelivery, and a deployment already watched here is left alone)."""
        deployments = service.deployments_to_start(s, run_id=e.run_id, payload=p)  # type: ignore[arg-type]
        return state.start_deployments(deployments) if deployments else None

    def on_released(s: Any, e: Envelope, p: Any) -> Any:
        deployments = service.release_nodes(s, run_id=e.run_id, nodes=p.nodes)  # type: ignore[arg-type]
        return state.after_release(e.run_id, deployments)

    return {
        "ProjectCreated": handler(on_spec),
        "RunRequested": handler(on_spec),
        NodesReady.event_type(): handler(on_nodes),
        NodesReplaced.event_type(): handler(
            lambda s, e, p: _kick_if(
                state, service.record_replacement(s, payload=p, stage=runtime.stage, **ids(e))
            )
        ),
        ArtifactsCached.event_type(): handler(on_artifacts),
        NodesFailed.event_type(): handler(on_failed),
        ArtifactsFailed.event_type(): handler(on_failed),
        ValidationFailed.event_type(): handler(on_failed),
        "RunCancelled": handler(on_cancel),
        NodesReleased.event_type(): handler(on_released),
        TrainingCompleted.event_type(): handler(on_completed),
    }


async def _kick(state: TrainerState) -> None:
    state.kick()


def _kick_if(state: TrainerState, changed: bool) -> Any:
    return _kick(state) if changed else None


def _handler(
    runtime: ServiceRuntime, effect: Callable[[Any, Envelope, Any], Any], serial: asyncio.Lock
) -> Callable[[Envelope], Awaitable[None]]:
    """An event handler: inbox claim + ``effect`` in one transaction (a worker thread,
    one at a time under ``serial``), then what ``effect`` returned is awaited (background
    work, outside the lock)."""

    def record(envelope: Envelope, payload: Any) -> tuple[bool, Any]:
        """Claim and record in one transaction: (claimed, what to await after)."""
        with runtime.db.session() as session:
            if not claim_inbox(session, envelope, service=runtime.name):
                return False, None
            after = effect(session, envelope, payload)
            session.commit()
        return True, after

    async def handle(envelope: Envelope) -> None:
        if envelope.run_id is None:
            return
        payload = parse_payload(envelope)
        async with serial:
            claimed, after = await run_sync(record, envelope, payload)
        if not claimed:
            return
        runtime.published()
        if after is not None:
            await after

    return handle
