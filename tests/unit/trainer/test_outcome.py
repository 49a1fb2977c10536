"""The outcome classifier of a training attempt: every rule, pure (no processes)."""

from __future__ import annotations

import pytest

from services.trainer.training.outcome import (
    Attempt,
    Outcome,
    Verdict,
    budget,
    classify,
    classify_launch_failure,
    needs_node_check,
    out_of_memory,
    signalled,
)

NODES = ("node-0", "node-1")


def decide(attempt: Attempt, tail: list[str] | None = None, **kw: object) -> Outcome:
    return classify(attempt, tail or [], node_names=NODES, **kw)  # type: ignore[arg-type]


def test_lost_lease_wins_over_everything() -> None:
    attempt = Attempt(codes=[0], lost_lease=True, cancelled=True, disk_full="full")
    assert decide(attempt) == Outcome(Verdict.ABANDONED)
    assert not needs_node_check(attempt, [])


def test_cancelled_before_disk_full_and_codes() -> None:
    attempt = Attempt(codes=[None], cancelled=True, disk_full="full", silent={"node-0"})
    assert decide(attempt).verdict is Verdict.CANCELLED
    assert not needs_node_check(attempt, [])


def test_disk_full_fails_without_retry() -> None:
    attempt = Attempt(codes=[-9], disk_full="checkpoint of step 3 not stored: disk full")
    outcome = decide(attempt)
    assert outcome.verdict is Verdict.FAILED
    assert outcome.reason == "checkpoint of step 3 not stored: disk full"
    assert outcome.retryable is False and outcome.exit_code is None
    assert not needs_node_check(attempt, [])


def test_every_exit_zero_is_completed() -> None:
    attempt = Attempt(codes=[0, 0], completed=(0, {"loss": 0.1}))
    assert decide(attempt, ["Signal 15 (SIGTERM) received"]) == Outcome(Verdict.COMPLETED)
    assert not needs_node_check(attempt, ["Signal 15 (SIGTERM) received"])


def test_no_codes_is_not_completed() -> None:
    outcome = decide(Attempt(codes=[]))
    assert outcome.verdict is Verdict.RETRY_OR_FAIL
    assert outcome.reason == "training failed (exit None): no output"
    assert outcome.retryable is False


@pytest.mark.parametrize(
    ("codes", "tail"),
    [
        ([None], []),
        ([-9], []),
        ([137], []),
        ([1], ["torch.distributed.elastic...: exitcode  : -9"]),
        ([1], ["Signal 15 (SIGTERM) received by PID 12"]),
    ],
)
def test_signalled_attempts(codes: list[int | None], tail: list[str]) -> None:
    assert signalled(codes, tail)
    assert needs_node_check(Attempt(codes=codes), tail)


def test_plain_error_exit_is_not_signalled() -> None:
    assert not signalled([1, 0], ["ValueError: boom"])
    assert not needs_node_check(Attempt(codes=[1]), ["ValueError: boom"])


def test_silent_node_needs_a_check_even_with_clean_codes_missing() -> None:
    assert needs_node_check(Attempt(codes=[1, 1], silent={"node-1"}), [])


def test_limit_hit_needs_no_node_check() -> None:
    assert not needs_node_check(Attempt(codes=[-9], limit_hit="its memory limit"), [])


def test_signalled_with_lost_nodes_replaces_them() -> None:
    outcome = decide(Attempt(codes=[-9, None]), lost=["node-1"])
    assert outcome.verdict is Verdict.REPLACE
    assert outcome.nodes == ("node-1",) and not outcome.larger and outcome.launched
    assert outcome.reason == "node node-1 lost during training: it does not answer"
    assert outcome.note == (
        "node-1",
        "aidp: node node-1 lost during training: it does not answer; asking for a replacement",
    )


def test_silent_lost_nodes_say_they_went_silent() -> None:
    outcome = decide(Attempt(codes=[None, None], silent={"node-0", "node-1"}), lost=NODES)
    assert outcome.verdict is Verdict.REPLACE
    assert outcome.reason == "node node-0, node-1 lost during training: it went silent"
    assert outcome.note is not None and outcome.note[0] == "node-0"


def test_partly_silent_lost_nodes_do_not_answer() -> None:
    outcome = decide(Attempt(codes=[None, None], silent={"node-0"}), lost=NODES)
    assert outcome.reason.endswith("it does not answer")


def test_lost_nodes_ignored_when_a_limit_explains_the_death() -> None:
    outcome = decide(Attempt(codes=[137], limit_hit="its process limit"), lost=["node-0"])
    assert outcome.verdict is Verdict.RETRY_OR_FAIL and not outcome.retryable


def test_lost_nodes_ignored_for_a_plain_error() -> None:
    outcome = decide(Attempt(codes=[1]), ["KeyError: 'x'"], lost=["node-0"])
    assert outcome.verdict is Verdict.RETRY_OR_FAIL
    assert outcome.reason == "training failed (exit 1): KeyError: 'x'"


def test_signalled_with_every_node_answering_retries() -> None:
    outcome = decide(Attempt(codes=[0, -9]))
    assert outcome.verdict is Verdict.RETRY_OR_FAIL and outcome.retryable
    assert outcome.exit_code == -9
    assert outcome.reason == "training process was killed or its node was lost (exit -9)"


def test_killed_without_exit_code_reports_none() -> None:
    outcome = decide(Attempt(codes=[None]))
    assert outcome.retryable and outcome.exit_code is None
    assert outcome.reason.endswith("(exit None)")


def test_out_of_memory_with_retry_larger_moves_every_node() -> None:
    tail = ["step 3", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB"]
    outcome = decide(Attempt(codes=[1]), tail, retry_larger_on_oom=True)
    assert outcome.verdict is Verdict.REPLACE and outcome.larger
    assert outcome.nodes == NODES
    assert outcome.reason == f"training ran out of memory ({tail[-1]})"
    assert outcome.note == ("node-0", f"aidp: {outcome.reason}; retrying on a larger choice")


def test_out_of_memory_evidence_is_cut_to_300_characters() -> None:
    line = "MemoryError: " + "x" * 400
    outcome = decide(Attempt(codes=[1]), [line], retry_larger_on_oom=True)
    assert outcome.reason == f"training ran out of memory ({line[:300]})"


def test_memory_limit_of_the_sandbox_counts_as_out_of_memory() -> None:
    attempt = Attempt(codes=[137], limit_hit="its memory limit (4096 MB)")
    outcome = decide(attempt, retry_larger_on_oom=True)
    assert outcome.verdict is Verdict.REPLACE and outcome.larger
    assert "its memory limit (4096 MB)" in outcome.reason


def test_out_of_memory_without_retry_larger_fails_as_an_error() -> None:
    outcome = decide(Attempt(codes=[1]), ["MemoryError"])
    assert outcome.verdict is Verdict.RETRY_OR_FAIL and not outcome.retryable
    assert outcome.reason == "training failed (exit 1): MemoryError"


def test_out_of_memory_note_without_node_names() -> None:
    outcome = classify(Attempt(codes=[1]), ["MemoryError"], retry_larger_on_oom=True)
    assert outcome.verdict is Verdict.REPLACE and outcome.note is None and outcome.nodes == ()


def test_sandbox_limit_fails_without_retry() -> None:
    outcome = decide(Attempt(codes=[137], limit_hit="its process limit"))
    assert outcome.verdict is Verdict.RETRY_OR_FAIL
    assert outcome.retryable is False and outcome.exit_code == 137
    assert outcome.reason == "the sandbox stopped the training process: it hit its process limit"


def test_script_error_takes_the_last_exception_line() -> None:
    tail = [
        "Traceback (most recent call last):",
        "ValueError: first",
        "RuntimeError: boom at step 1",
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: train.py FAILED",
        "  extra context",
    ]
    outcome = decide(Attempt(codes=[1]), tail)
    assert outcome.verdict is Verdict.RETRY_OR_FAIL and not outcome.retryable
    assert outcome.reason == "training failed (exit 1): RuntimeError: boom at step 1"
    assert outcome.exit_code == 1


def test_script_error_without_exception_uses_the_last_line() -> None:
    outcome = decide(Attempt(codes=[2]), ["something odd", "bye"])
    assert outcome.reason == "training failed (exit 2): bye"


def test_script_error_without_output() -> None:
    assert decide(Attempt(codes=[3])).reason == "training failed (exit 3): no output"


def test_first_nonzero_code_is_the_exit_code() -> None:
    assert decide(Attempt(codes=[0, None, 4, 5])).exit_code == 4


@pytest.mark.parametrize(
    ("limit", "tail", "expected"),
    [
        ("its memory limit", [], "its memory limit"),
        ("its process limit", ["fine"], None),
        (None, ["a", "  CUDA out of memory. Tried  "], "CUDA out of memory. Tried"),
        (
            None,
            ["tensorflow...ResourceExhaustedError: OOM"],
            "tensorflow...ResourceExhaustedError: OOM",
        ),
        (None, ["MemoryErrorX is not a match"], None),
        (None, ["Out Of Memory"], "Out Of Memory"),
        (None, ["MemoryError: one", "MemoryError: two"], "MemoryError: two"),
    ],
)
def test_out_of_memory_evidence(limit: str | None, tail: list[str], expected: str | None) -> None:
    assert out_of_memory(limit, tail) == expected


def test_launch_failure_with_lost_nodes_replaces_them_unlaunched() -> None:
    outcome = classify_launch_failure("connection lost", lost=["node-1"])
    assert outcome == Outcome(
        Verdict.REPLACE, reason="launch failed: connection lost", nodes=("node-1",), launched=False
    )


def test_launch_failure_otherwise_retries_unlaunched() -> None:
    outcome = classify_launch_failure("no space")
    assert outcome == Outcome(
        Verdict.RETRY_OR_FAIL, reason="launch failed: no space", retryable=True, launched=False
    )


@pytest.mark.parametrize(
    ("attempt", "launched", "retryable", "attempts", "retry"),
    [
        (1, True, True, 1, True),
        (2, True, True, 2, True),
        (3, True, True, 3, False),
        (2, False, True, 3, False),
        (1, False, True, 2, True),
        (0, False, True, 1, True),
        (1, True, False, 1, False),
    ],
)
def test_budget(attempt: int, launched: bool, retryable: bool, attempts: int, retry: bool) -> None:
    result = budget(attempt, launched=launched, max_attempts=3, retryable=retryable)
    assert (result.attempts, result.retry) == (attempts, retry)
