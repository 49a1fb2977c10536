"""What the end of one training attempt means: a pure decision over what it observed.

The monitor fills an :class:`Attempt` while the processes run; when they are gone the
runner asks :func:`needs_node_check` whether remote nodes must be asked again (a fresh SSH
connection: I/O, done by the runner), then :func:`classify` turns the observation, the
nodes found lost and the spec's ``retry_larger_on_oom`` into an :class:`Outcome`, and acts
on it. :func:`budget` is the launch budget behind every retry (``trainer_max_attempts``).

Order of the rules (first match wins): lease lost → abandoned; cancelled; a full store disk
→ failed (a retry meets the same disk); every process exited 0 → completed; a signalled or
silent attempt whose nodes do not answer → replace them (unless a sandbox limit killed
it); out of memory with ``retry_larger_on_oom`` → every node on the next larger choice; a
sandbox limit → failed, not retryable; killed by a signal → retry; an error in the script
→ failed, not retryable, with the exception line as the reason.
"""

from __future__ import annotations

import enum
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "Attempt",
    "Budget",
    "Outcome",
    "Verdict",
    "budget",
    "classify",
    "classify_launch_failure",
    "needs_node_check",
    "out_of_memory",
    "signalled",
]

#: torchrun's report of a worker killed by a signal, or the signal it received itself.
_SIGNALLED = re.compile(r"exitcode\s*:\s*-\d+|Signal \d+ \(SIG\w+\) received")
#: A directly started process killed by SIGKILL inside the sandbox's wrapper exits 137
#: (128 + 9), as torchrun reports ``exitcode: -9`` for its worker.
_KILLED = 128 + signal.SIGKILL
#: The line of a Python traceback that names the exception.
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*)$")
#: What an out-of-memory death leaves in the last lines of stderr (PyTorch, CUDA, Python,
#: TensorFlow's resource exhaustion).
_OOM = re.compile(
    r"OutOfMemoryError|CUDA out of memory|\bMemoryError\b|ResourceExhaustedError|out of memory",
    re.IGNORECASE,
)


@dataclass
class Attempt:
    """What one launch observed (filled in by the monitor while the processes run)."""

    #: exit code per node process, in node order; None: killed by a signal or cut off
    codes: list[int | None] = field(default_factory=list)
    #: (index of the node that reported it, metrics) of the ``completed`` message
    completed: tuple[int, dict[str, float]] | None = None
    cancelled: bool = False
    lost_lease: bool = False
    limit_hit: str | None = None  #: the sandbox limit that killed a process
    disk_full: str | None = None  #: a checkpoint could not be stored: the store's disk is full
    #: nodes that sent heartbeats and then no line for the node timeout
    silent: set[str] = field(default_factory=set)


class Verdict(enum.Enum):
    """What the runner does with the run after an attempt."""

    ABANDONED = "abandoned"  #: the lease was lost: another trainer owns the run now
    CANCELLED = "cancelled"  #: the run was cancelled: clean up
    COMPLETED = "completed"  #: register the model (and maybe deploy)
    FAILED = "failed"  #: fail now, whatever the budget (``TrainingFailed``)
    REPLACE = "replace"  #: ``NodeLost`` for ``nodes`` (``larger``: on the next choice)
    RETRY_OR_FAIL = "retry_or_fail"  #: back to ``staging`` within the budget, else failed


@dataclass(frozen=True)
class Outcome:
    """The decision, with what the run's state change and log need."""

    verdict: Verdict
    reason: str = ""
    exit_code: int | None = None
    retryable: bool = False
    #: the nodes to replace (``REPLACE``)
    nodes: tuple[str, ...] = ()
    #: replace every node with one of the run's next (larger) choice: out of memory
    larger: bool = False
    #: False when the attempt failed before training started (it still counts)
    launched: bool = True
    #: (node, line) for the run's log, sent before acting
    note: tuple[str, str] | None = None


@dataclass(frozen=True)
class Budget:
    """Where a run stands against ``trainer_max_attempts`` after an attempt."""

    attempts: int  #: launches counted so far, this one included
    retry: bool  #: another launch is allowed


def out_of_memory(limit_hit: str | None, tail: Sequence[str]) -> str | None:
    """The evidence that a training process ran out of memory, or None."""
    if limit_hit and "memory" in limit_hit.lower():
        return limit_hit
    return next((line.strip() for line in reversed(tail) if _OOM.search(line)), None)


def signalled(codes: Sequence[int | None], tail: Sequence[str]) -> bool:
    """A process was killed by a signal (no code, a negative one, 137) or torchrun says
    one of its workers was."""
    return any(c is None or c < 0 or c == _KILLED for c in codes) or any(
        _SIGNALLED.search(t) for t in tail
    )


def _terminal(attempt: Attempt) -> bool:
    """The attempt's outcome does not depend on its exit codes or nodes."""
    codes = attempt.codes
    return (
        attempt.lost_lease
        or attempt.cancelled
        or attempt.disk_full is not None
        or bool(codes and all(code == 0 for code in codes))
    )


def needs_node_check(attempt: Attempt, tail: Sequence[str]) -> bool:
    """Whether the remote nodes must be asked again before :func:`classify`: the attempt
    died by a signal or went silent, and no sandbox limit explains it."""
    if _terminal(attempt):
        return False
    return (signalled(attempt.codes, tail) or bool(attempt.silent)) and not attempt.limit_hit


def classify(
    attempt: Attempt,
    tail: Sequence[str],
    *,
    lost: Sequence[str] = (),
    node_names: Sequence[str] = (),
    retry_larger_on_oom: bool = False,
) -> Outcome:
    """Decide what the attempt means. ``tail``: the last stderr lines of the run;
    ``lost``: the nodes that did not answer (asked when :func:`needs_node_check` said so);
    ``node_names``: the run's nodes, in order."""
    if attempt.lost_lease:
        return Outcome(Verdict.ABANDONED)
    if attempt.cancelled:
        return Outcome(Verdict.CANCELLED)
    if attempt.disk_full:  # a retry would meet the same full disk
        return Outcome(Verdict.FAILED, reason=attempt.disk_full)
    codes = attempt.codes
    if codes and all(code == 0 for code in codes):
        return Outcome(Verdict.COMPLETED)
    killed = signalled(codes, tail)
    exit_code = next((c for c in codes if c not in (0, None)), None)
    if lost and (killed or attempt.silent) and not attempt.limit_hit:
        how = "it went silent" if set(lost) <= attempt.silent else "it does not answer"
        reason = f"node {', '.join(lost)} lost during training: {how}"
        return Outcome(
            Verdict.REPLACE,
            reason=reason,
            nodes=tuple(lost),
            note=(lost[0], f"aidp: {reason}; asking for a replacement"),
        )
    oom = out_of_memory(attempt.limit_hit, tail)
    if oom is not None and retry_larger_on_oom:
        reason = f"training ran out of memory ({oom[:300]})"
        return Outcome(
            Verdict.REPLACE,
            reason=reason,
            nodes=tuple(node_names),
            larger=True,
            note=(node_names[0], f"aidp: {reason}; retrying on a larger choice")
            if node_names
            else None,
        )
    if attempt.limit_hit:  # the same limit would stop a retry too
        reason = f"the sandbox stopped the training process: it hit {attempt.limit_hit}"
        return Outcome(Verdict.RETRY_OR_FAIL, reason=reason, exit_code=exit_code)
    if killed:
        reason = f"training process was killed or its node was lost (exit {exit_code})"
        return Outcome(Verdict.RETRY_OR_FAIL, reason=reason, exit_code=exit_code, retryable=True)
    error = next(
        (
            m.group(1)
            for t in reversed(tail)
            if (m := _EXCEPTION.match(t.strip())) and "ChildFailedError" not in t
        ),
        None,
    )
    detail = error or (tail[-1] if tail else "no output")
    reason = f"training failed (exit {exit_code}): {detail}"
    return Outcome(Verdict.RETRY_OR_FAIL, reason=reason, exit_code=exit_code)


def classify_launch_failure(error: str, *, lost: Sequence[str] = ()) -> Outcome:
    """Staging or starting the processes failed (``error``: the exception's text): replace
    the nodes that do not answer, else retry within the budget. The attempt counts though
    training never started."""
    reason = f"launch failed: {error}"
    if lost:
        return Outcome(Verdict.REPLACE, reason=reason, nodes=tuple(lost), launched=False)
    return Outcome(Verdict.RETRY_OR_FAIL, reason=reason, retryable=True, launched=False)


def budget(attempt: int, *, launched: bool, max_attempts: int, retryable: bool = True) -> Budget:
    """The launch budget after an attempt: ``attempt`` is the run's recorded count (the
    launch that started training recorded itself; one that failed before did not, so it is
    counted here). Another launch is allowed when retryable and under ``max_attempts``."""
    attempts = attempt + (0 if launched else 1)
    return Budget(attempts=attempts, retry=retryable and attempts < max_attempts)
