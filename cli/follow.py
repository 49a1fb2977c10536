"""Live progress of a run from the WebSocket event stream (docs/design.md §6).

:func:`follow_run` ties a :class:`~cli.sdk.Client` stream to a renderer until the run ends.
The state lives in :mod:`cli.runview`, the drawing in :mod:`cli.render` (re-exported here).
"""

from __future__ import annotations

import time

from cli.render import LiveRenderer, PlainRenderer, Renderer, progress_line
from cli.runview import FINAL_STATUSES, RunView, format_duration
from cli.sdk import AidpError, Client

__all__ = [
    "FINAL_STATUSES",
    "LiveRenderer",
    "PlainRenderer",
    "Renderer",
    "RunView",
    "follow_run",
    "format_duration",
    "progress_line",
]

_FAILURES = (
    "ArtifactsFailed",
    "ValidationFailed",
    "NodesFailed",
    "TrainingFailed",
    "DeploymentFailed",
)


def follow_run(
    client: Client,
    *,
    project_id: str,
    run_id: str,
    renderer: Renderer,
    view: RunView | None = None,
    poll_every: float = 5.0,
) -> RunView:
    """Stream a run's events into ``renderer`` until it reaches a final status.

    The server's run status (``GET /api/runs/{id}``) is authoritative: it is read when the
    stream is quiet or an event looks final, so a missed or retried event cannot hang us.
    """
    view = view or RunView(run_id=run_id)
    seen_logs = len(view.logs)
    last_poll = 0.0
    try:
        for message in client.stream_events(project_id, idle_timeout=poll_every):
            if message.get("type") == "event":
                envelope = message.get("event") or {}
                notes = view.apply(envelope, message.get("seq"))
                renderer.update(view, notes, view.logs[seen_logs:])
                seen_logs = len(view.logs)
                final_hint = envelope.get("type") in (
                    *_FAILURES,
                    "ModelDeployed",
                    "RunCancelled",
                    "TrainingCompleted",
                )
            else:
                final_hint = True
            if view.finished or final_hint or time.monotonic() - last_poll > poll_every:
                last_poll = time.monotonic()
                status = _server_status(client, run_id)
                if status in FINAL_STATUSES:
                    view.status = status
                    _fill_outcome(client, run_id, view)
                    break
    finally:
        renderer.close()
    return view


def _server_status(client: Client, run_id: str) -> str | None:
    try:
        return client.get_run(run_id).get("status")
    except AidpError:
        return None


def _fill_outcome(client: Client, run_id: str, view: RunView) -> None:
    """Complete the view from the run resource (reason, deployment) when events lacked them."""
    try:
        run = client.get_run(run_id)
    except AidpError:
        return
    view.reason = view.reason or run.get("reason") or run.get("error")
    view.deployment_id = view.deployment_id or run.get("deployment_id")
    view.endpoint = view.endpoint or run.get("endpoint")
