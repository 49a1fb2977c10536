"""Relaying a training process's output as events, batched to keep outbox writes cheap.

Protocol lines (``@@aidp@@ {json}``, see ``progress_client.py``) are parsed by the job;
this module turns progress messages and plain log lines into ``TrainingProgress`` (at most
one per ``progress_interval``; the newest is kept and the last one is always sent) and
``TrainingLog`` batches (per node and stream), written to the outbox in one transaction
per flush. Every line and progress message first passes through the run's
:class:`~services.trainer.redaction.Redactor` (its secret values become
``[redacted:NAME]``), and so does the stderr tail a failure reason is taken from.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from typing import Any

from services.trainer.models import Run
from services.trainer.progress_client import MARKER
from services.trainer.redaction import Redactor
from shared.db import run_sync
from shared.events import EventPayload, TrainingLog, TrainingProgress, new_event
from shared.runtime import ServiceRuntime

__all__ = ["PLATFORM_NODE", "EventRelay", "parse_marker"]

_MAX_LINE = 4000
_MAX_BATCH = 500
#: ``node`` of the lines the platform itself adds to a run's log.
PLATFORM_NODE = "aidp"


def parse_marker(text: str) -> dict[str, Any] | None:
    """The protocol message on a stdout line, or None for an ordinary line."""
    if not text.startswith(MARKER):
        return None
    try:
        value = json.loads(text[len(MARKER) :])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class EventRelay:
    """Buffers one run's progress and logs and flushes them through the outbox."""

    def __init__(
        self,
        runtime: ServiceRuntime,
        *,
        run_id: uuid.UUID,
        project_id: uuid.UUID | None,
        progress_interval: float,
        flush_seconds: float,
        redactor: Redactor | None = None,
    ) -> None:
        self.runtime = runtime
        self.redactor = redactor or Redactor()
        self.run_id = run_id
        self.project_id = project_id
        self.progress_interval = progress_interval
        self.flush_seconds = flush_seconds
        self._logs: dict[tuple[str, str], list[str]] = {}
        self._progress: TrainingProgress | None = None
        self._progress_sent_at = 0.0
        self._last_step: int | None = None
        self.first_step: int | None = None
        self.stderr_tail: deque[str] = deque(maxlen=60)
        self.events_written = 0
        self._lock = asyncio.Lock()

    def log(self, node: str, stream: str, text: str) -> None:
        text = self.redactor.redact(text)  # before truncation: no secret is cut in two
        if stream == "stderr":
            self.stderr_tail.append(text)
        self._logs.setdefault((node, stream), []).append(text[:_MAX_LINE])

    def note(self, text: str) -> None:
        """A line of the platform's own in the run's log (not part of the stderr tail)."""
        self._logs.setdefault((PLATFORM_NODE, "stderr"), []).append(
            self.redactor.redact(text)[:_MAX_LINE]
        )

    def redact(self, message: dict[str, Any]) -> dict[str, Any]:
        """A protocol message with its secret values redacted (keys included)."""
        return self.redactor.redact_obj(message)  # type: ignore[no-any-return]

    def progress(self, message: dict[str, Any]) -> None:
        message = self.redact(message)
        fields = {k: v for k, v in message.items() if k != "event" and v is not None}
        try:
            progress = TrainingProgress.model_validate(fields)
        except ValueError:
            return
        if self.first_step is None:
            self.first_step = progress.step
        pending = self._progress
        if pending is not None and pending.metrics and not progress.metrics:
            # evaluation figures (reported on one step) survive the throttle: a later step
            # that replaces the pending progress carries them
            progress = progress.model_copy(update={"metrics": pending.metrics})
        self._progress = progress

    def _due(self, force: bool) -> tuple[list[EventPayload], int | None]:
        payloads: list[EventPayload] = []
        for (node, stream), lines in self._logs.items():
            for start in range(0, len(lines), _MAX_BATCH):
                payloads.append(
                    TrainingLog(node=node, stream=stream, lines=lines[start : start + _MAX_BATCH])  # type: ignore[arg-type]
                )
        self._logs = {}
        step = None
        clock = time.monotonic()
        if self._progress is not None and (
            force or clock - self._progress_sent_at >= self.progress_interval
        ):
            payloads.append(self._progress)
            step = self._progress.step
            self._progress, self._progress_sent_at = None, clock
        return payloads, step

    async def flush(self, *, force: bool = False) -> None:
        """Write what is due in one transaction (``force``: the pending progress too)."""
        async with self._lock:
            payloads, step = self._due(force)
            if not payloads:
                return
            await run_sync(self._write, payloads, step)
            self.runtime.published()
            self.events_written += len(payloads)

    def _write(self, payloads: list[EventPayload], step: int | None) -> None:
        with self.runtime.db.session() as session:
            for payload in payloads:
                self.runtime.stage(
                    session, new_event(payload, project_id=self.project_id, run_id=self.run_id)
                )
            if step is not None:
                run = session.get(Run, self.run_id)
                if run is not None:
                    run.last_step = step
                    session.add(run)
            session.commit()

    async def run(self) -> None:
        """Flush periodically until cancelled (then flush everything)."""
        tick = min(self.flush_seconds, max(self.progress_interval, 0.05))
        try:
            while True:
                await asyncio.sleep(tick)
                await self.flush()
        finally:
            await asyncio.shield(self.flush(force=True))
