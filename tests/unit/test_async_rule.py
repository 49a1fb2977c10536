"""The async rule (issue 17 item 4, :mod:`shared.db.offload`): no blocking database call
on the event loop.

An AST scan of ``services/`` and ``shared/``. A *blocking database call* is

- opening a sync session or connection: ``Session(...)``, a method call on a value typed
  ``Session`` / ``Connection`` (``.execute``, ``.commit``, ``.get``, ...), ``engine.connect()``
  / ``.begin()`` / ``.raw_connection()``, ``<...>.db.session()``;
- calling a plain (``def``) function or method whose body makes one, directly or through
  further plain calls.

Calls are followed only where the callee is known — ``self.method``, module functions,
imports (also re-exports), nested ``def`` s, and attributes and variables whose type the
code states (annotations, ``self.x = Cls(...)``, ``self.x = param``, return annotations,
``with ... as``) — so an unknown callee is never guessed at. Every ``async def`` body
(without its nested ``def`` s and lambdas, which run where they are sent: ``run_sync``,
``to_thread``) must make none. Nor may it send a *unit of database work* — a plain
function whose own body opens or uses a session — to ``asyncio.to_thread`` or
``run_in_executor``: that is ``run_sync``'s job (longer work that only records something
through another function stays on ``to_thread``). A callback (``Callable`` attribute or
parameter) is not followed. A flagged line may end with ``# async-rule: ok <reason>``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.async_scan import ESCAPE, Index, sources, violations

ROOT = Path(__file__).resolve().parents[2]


# -- the check ----------------------------------------------------------------------------


def test_no_blocking_database_call_in_async_code() -> None:
    found = violations(Index(sources(ROOT)))
    assert not found, (
        "blocking database calls on the event loop (move the work into a plain function and"
        " `await run_sync(fn, ...)`, from shared.db; see shared/db/offload.py):\n"
        + "\n".join(found)
    )


def test_escapes_say_why() -> None:
    bare = [
        f"{path}:{number}"
        for path, text in sources(ROOT).values()
        for number, line in enumerate(text.splitlines(), 1)
        if ESCAPE in line and not line.split(ESCAPE, 1)[1].strip()
    ]
    assert not bare, f"`{ESCAPE}` without a reason: {bare}"


_SAMPLE = """
from sqlmodel import Session, select
from shared.db import Database, run_sync


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db

    def save(self, x) -> None:
        with self.db.session() as s:
            s.add(x)
            s.commit()

    def save_twice(self, x) -> None:
        self.save(x)

    def pure(self) -> int:
        return 1


class Service:
    def __init__(self, db: Database) -> None:
        self.store = Store(db)
        self.db = db

    async def bad_with(self) -> None:
        with self.db.session() as s:
            s.exec(select(1))

    async def bad_call(self, x) -> None:
        self.store.save_twice(x)

    async def bad_nested_call(self, x) -> None:
        def work() -> None:
            self.store.save(x)

        work()

    async def bad_session_param(self, session: Session) -> None:
        session.commit()

    async def good(self, x) -> None:
        def work() -> None:
            self.store.save(x)

        await run_sync(work)
        await run_sync(self.store.save_twice, x)
        await run_sync(lambda: self.store.save(x))
        self.store.pure()

    async def bad_hop(self, x) -> None:
        await asyncio.to_thread(self.store.save, x)

    async def good_hop(self) -> None:
        await asyncio.to_thread(self.store.pure)

    async def excused(self, x) -> None:
        self.store.save(x)  # async-rule: ok a test of the escape
"""


def test_the_scan_finds_what_it_should() -> None:
    """The scan itself: each blocking form is found, each offloaded one is not."""
    scanned = sources(ROOT)
    scanned["sample"] = (Path("sample.py"), _SAMPLE)
    text = _SAMPLE.splitlines()
    found = {
        (line.split(": async ")[1].split("()")[0], text[int(line.split(":")[1]) - 1].strip())
        for line in violations(Index(scanned))
        if line.startswith("sample.py:")
    }
    assert found == {
        ("bad_with", "with self.db.session() as s:"),
        ("bad_with", "s.exec(select(1))"),
        ("bad_call", "self.store.save_twice(x)"),
        ("bad_nested_call", "work()"),
        ("bad_session_param", "session.commit()"),
        ("bad_hop", "await asyncio.to_thread(self.store.save, x)"),
    }


# -- the helper ----------------------------------------------------------------------------


async def test_run_sync_runs_off_the_loop_with_the_callers_context() -> None:
    import contextvars
    import threading

    from shared.db import run_sync

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var")
    var.set("caller")

    def work(a: int, *, b: int) -> tuple[str, bool, int]:
        on_loop = threading.current_thread() is threading.main_thread()
        return var.get(), on_loop, a + b

    assert await run_sync(work, 1, b=2) == ("caller", False, 3)

    def boom() -> None:
        raise LookupError("from the worker")

    with pytest.raises(LookupError, match="from the worker"):
        await run_sync(boom)


async def test_a_cancelled_run_sync_waits_for_the_work_to_end() -> None:
    """Cancelling the caller never leaves the unit of work running behind its back."""
    import threading
    import time

    from shared.db import run_sync

    started, finished = threading.Event(), threading.Event()

    def slow_write() -> None:
        started.set()
        time.sleep(0.3)
        finished.set()

    task = asyncio.ensure_future(run_sync(slow_write))
    while not started.is_set():
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.05)
    task.cancel()  # twice: it still waits
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()
