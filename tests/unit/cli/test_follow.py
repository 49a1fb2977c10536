from __future__ import annotations

import io
import uuid

from rich.console import Console

from cli.follow import LiveRenderer, PlainRenderer, RunView, format_duration, progress_line
from shared.events import RunCancelled, TrainingFailed, TrainingProgress
from tests.unit.cli.events import DEPLOYMENT, RUN, env, happy_run


def _fold(events: list[dict], view: RunView | None = None) -> tuple[RunView, list[str]]:
    view = view or RunView(run_id=str(RUN))
    notes: list[str] = []
    for seq, e in enumerate(events, 1):
        notes += view.apply(e, seq)
    return view, notes


def test_happy_run_ends_deployed() -> None:
    view, notes = _fold(happy_run())
    assert view.status == "deployed" and view.ok and view.finished
    assert view.deployment_id == str(DEPLOYMENT)
    assert view.losses == [(10, 0.9), (20, 0.4)]
    assert view.step == view.total_steps == 20
    assert view.fetched and view.nodes_ready
    assert view.logs == ["epoch 1 done"]  # ANSI colour codes stripped
    assert list(view.fetch) == ["hf://a/b"]  # "@main" progress and the cached ref are one
    assert view.last_seq == len(happy_run())
    joined = "\n".join(notes)
    for expected in (
        "cached hf://a/b",
        "provisioning: packages",
        "nodes ready: local-0",
        "training started",
        "model v1 trained (accuracy=0.91)",
        "deployed at",
    ):
        assert expected in joined


def test_without_deploy_training_completed_is_success() -> None:
    view, _ = _fold(happy_run(deploy=False))
    assert view.status == "succeeded" and view.ok


def test_stage_order_preparing_then_training() -> None:
    events = happy_run()
    view, _ = _fold(events[:3])
    assert view.status == "preparing"
    assert "hf://a/b: 500.0 KB/1.0 MB" in progress_line(view)
    assert "provisioning packages 40%" in progress_line(view)
    view, _ = _fold(events[:8])
    assert view.status == "training"
    assert progress_line(view) == "step 10/20 loss 0.9000 12.5 samples/s ETA 30s"


def test_final_failure_and_retryable_failure() -> None:
    view, notes = _fold([env(TrainingFailed(reason="oom", retryable=True))])
    assert not view.finished and "retrying" in notes[0]
    view, notes = _fold([env(TrainingFailed(reason="bad script", exit_code=1))])
    assert view.status == "failed" and view.reason == "bad script" and not view.ok


def test_final_status_is_sticky() -> None:
    view, _ = _fold([env(RunCancelled()), env(TrainingProgress(step=5))])
    assert view.status == "cancelled"


def test_events_of_other_runs_are_ignored() -> None:
    view, notes = _fold([env(TrainingFailed(reason="x"), run_id=uuid.uuid4())])
    assert view.status == "queued" and notes == []


def test_plain_renderer_prints_milestones_logs_and_progress() -> None:
    out = io.StringIO()
    renderer = PlainRenderer(Console(file=out, width=200), every=0)
    view = RunView(run_id=str(RUN))
    for e in happy_run():
        notes = view.apply(e)
        renderer.update(view, notes, view.logs[-1:] if e["type"] == "TrainingLog" else [])
    text = out.getvalue()
    assert "• training started on 1 process(es)" in text
    assert "│ epoch 1 done" in text
    assert "step 10/20 loss 0.9000" in text
    assert "deployed at /api/deployments/" in text


def test_live_renderer_draws_bars() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160)
    renderer = LiveRenderer(console)
    view = RunView(run_id=str(RUN))
    for e in happy_run():
        renderer.update(view, view.apply(e), [])
    renderer.close()
    text = out.getvalue()
    assert "fetch hf://a/b" in text and "provision" in text and "train" in text
    assert "20/20" in text and "loss 0.4000" in text


def test_format_duration() -> None:
    assert [format_duration(x) for x in (None, 5, 65, 3700)] == ["?", "5s", "1m05s", "1h01m"]


def test_cached_revision_warning_is_printed_and_the_run_goes_on() -> None:
    from shared.events import CachedRevisionUsed

    warning = CachedRevisionUsed(
        source="hf://a/b@main",
        ref="main",
        resolved_revision="0123456789abcdef0123456789abcdef01234567",
        resolved_at="2026-11-30T12:00:00+00:00",
        reason="Could not reach HuggingFace at http://hub (ConnectError). Using the last …",
    )
    view, notes = _fold([env(warning)])
    assert view.status == "preparing" and not view.finished
    assert notes == [
        "warning: hf://a/b@main fetched at its cached revision 0123456789ab: "
        "Could not reach HuggingFace at http://hub (ConnectError). Using the last …"
    ]
