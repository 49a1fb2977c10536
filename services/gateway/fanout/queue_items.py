"""What a connection's send queue holds, and the subscriptions they belong to.

A queue item is a control message, a catch-up from the log, one live frame (only for a
subscription that coalesces progress), or a run of frames shared by every connection."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from services.gateway.eventlog import Frame
from services.gateway.fanout.frames import FrameRun

__all__ = ["CatchUp", "Control", "Item", "Live", "QueuedRun", "Subscription"]


@dataclass(eq=False)
class Subscription:
    """One client's subscription to one project."""

    project_id: uuid.UUID
    last_sent: int
    pending: list[Frame] | None = field(default_factory=list)  # live frames during setup
    coalesce: bool = False  # keep only the latest queued TrainingProgress of each run
    progress: dict[uuid.UUID, Live] = field(default_factory=dict)  # run -> queued entry


@dataclass(frozen=True)
class Control:
    text: str


@dataclass(frozen=True)
class CatchUp:
    sub: Subscription
    until: int


class Live:
    """A live frame in a connection's queue; ``superseded`` once a newer progress of the
    same run is queued behind it (coalescing): it is then skipped, its seq accounted for."""

    __slots__ = ("frame", "sub", "superseded")

    def __init__(self, sub: Subscription, frame: Frame) -> None:
        self.sub = sub
        self.frame = frame
        self.superseded = False


@dataclass(frozen=True)
class QueuedRun:
    sub: Subscription
    run: FrameRun


Item = Control | CatchUp | Live | QueuedRun
