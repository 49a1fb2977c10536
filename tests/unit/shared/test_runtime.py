"""ServiceRuntime: graceful shutdown order and readiness."""

from __future__ import annotations

import asyncio
from pathlib import Path

from shared.events import RunCancelled, new_event
from shared.runtime import ServiceRuntime
from shared.secrets import InMemoryVault
from shared.settings import BaseServiceSettings


async def test_stop_turns_readiness_false_first_and_lets_running_handlers_finish(
    tmp_path: Path,
) -> None:
    settings = BaseServiceSettings(
        service_name="svc", data_dir=tmp_path, bus_url="memory://runtime-test"
    )
    vault = InMemoryVault()
    runtime = ServiceRuntime(settings, vault=(vault, vault))
    started, release = asyncio.Event(), asyncio.Event()
    handled: list[str] = []
    seen_ready_during_stop: list[bool] = []

    async def slow_handler(envelope: object) -> None:
        started.set()
        await release.wait()
        handled.append("done")

    runtime.on({"RunCancelled": slow_handler})
    await runtime.start()
    assert (await runtime.readiness())["started"] is True
    await runtime.bus.publish(new_event(RunCancelled()))
    await asyncio.wait_for(started.wait(), 5)

    stopping = asyncio.create_task(runtime.stop())
    await asyncio.sleep(0.1)
    seen_ready_during_stop.append(runtime.ready)
    assert not stopping.done(), "stop must wait for the running handler"
    release.set()
    await asyncio.wait_for(stopping, 15)

    assert seen_ready_during_stop == [False]
    assert handled == ["done"]  # finished, not cancelled
    assert runtime.bus.broker.dead == []  # type: ignore[attr-defined]
