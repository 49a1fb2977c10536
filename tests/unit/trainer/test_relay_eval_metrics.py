"""The progress throttle keeps evaluation figures (issue 16 item 5): a progress carrying
eval metrics that a later step replaces before it is sent passes them on."""

from __future__ import annotations

import uuid
from typing import Any

from services.trainer.relay import EventRelay


def _relay() -> EventRelay:
    return EventRelay(
        None,  # type: ignore[arg-type]  # no flush happens in this test
        run_id=uuid.uuid4(),
        project_id=uuid.uuid4(),
        progress_interval=60.0,
        flush_seconds=60.0,
    )


def _progress(step: int, **metrics: float) -> dict[str, Any]:
    return {"event": "progress", "step": step, "total_steps": 10, "loss": 0.5, "metrics": metrics}


def test_eval_metrics_survive_a_replaced_progress() -> None:
    relay = _relay()
    relay.progress(_progress(4, eval_loss=0.7, eval_accuracy=0.6))
    relay.progress(_progress(5))
    payloads, step = relay._due(force=True)
    (sent,) = payloads
    assert step == 5 and sent.metrics == {"eval_loss": 0.7, "eval_accuracy": 0.6}  # type: ignore[attr-defined]
    # sent once: the next step carries none
    relay.progress(_progress(6))
    (sent,) = relay._due(force=True)[0]
    assert sent.metrics == {}  # type: ignore[attr-defined]


def test_newer_figures_win() -> None:
    relay = _relay()
    relay.progress(_progress(2, eval_loss=0.9))
    relay.progress(_progress(4, eval_loss=0.6))
    (sent,) = relay._due(force=True)[0]
    assert sent.metrics == {"eval_loss": 0.6}  # type: ignore[attr-defined]
