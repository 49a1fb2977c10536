"""The CLI's lines for a run's pre-flight check (issue 15): what `aidp status`/`--follow`
print, and that a failed check ends the run's view as failed."""

from __future__ import annotations

from cli.runview import RunView
from tests.unit.shared.event_examples import EXAMPLES


def _envelope(kind: str) -> dict[str, object]:
    return {"type": kind, "version": 1, "payload": EXAMPLES[kind]}


def test_a_passed_check_prints_counts_method_estimate_and_flagged_rows() -> None:
    view = RunView()
    lines = view.apply(_envelope("DatasetValidated"))
    assert lines[0].startswith("pre-flight check passed: 1000 rows checked of 5210")
    assert "method lora" in lines[0] and "~326 steps" in lines[0] and "~14 min" in lines[0]
    assert "row 17 of train.jsonl: 1931 tokens" in lines[1] and lines[1].endswith("(warning)")
    assert view.status == "preparing" and not view.finished


def test_a_failed_check_prints_the_rows_and_fails_the_run() -> None:
    view = RunView()
    lines = view.apply(_envelope("ValidationFailed"))
    assert lines[0].startswith("pre-flight check failed: 2 of 1000 rows are malformed")
    assert lines[1] == "  row 7 of train.jsonl: roles not alternating: user then user"
    assert view.status == "failed" and view.finished and not view.ok
