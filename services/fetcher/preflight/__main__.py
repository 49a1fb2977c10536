"""``python -I -m services.fetcher.preflight``: the check's child process. A request on
stdin (a line of JSON with the spec, then the inputs of :mod:`.wire`), the event on stdout."""

from __future__ import annotations

import json
import resource
import sys

from services.fetcher.preflight.evaluate import evaluate
from services.fetcher.preflight.limits import MEMORY, TIMEOUT
from services.fetcher.preflight.wire import decode
from shared.spec import ProjectSpec


def _limit() -> None:
    """The child's own limits, set before it reads anything (no preexec_fn: the fetcher
    runs checks from worker threads)."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
    resource.setrlimit(resource.RLIMIT_CPU, (TIMEOUT, TIMEOUT))


def _child() -> None:
    """Read the request, run the check, write its event."""
    _limit()
    raw = sys.stdin.buffer.read()
    head, _, body = raw.partition(b"\n")
    spec = ProjectSpec.model_validate(json.loads(head)["spec"])
    event = evaluate(spec, decode(body))
    sys.stdout.write(
        json.dumps({"type": type(event).__name__, "payload": event.model_dump(mode="json")})
    )


if __name__ == "__main__":
    _child()
