"""shared.service.app.two_phase: nothing is delivered before the service is wired."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shared.bus import UnroutableError
from shared.events import Envelope, RunCancelled, new_event
from shared.runtime import ServiceRuntime
from shared.secrets import InMemoryVault
from shared.service.app import two_phase
from shared.settings import BaseServiceSettings


async def test_handlers_wired_after_open_are_subscribed_then(tmp_path: Path) -> None:
    settings = BaseServiceSettings(
        service_name="svc", data_dir=tmp_path, bus_url=f"memory://two-phase-{tmp_path.name}"
    )
    vault = InMemoryVault()
    runtime = ServiceRuntime(settings, vault=(vault, vault))
    got: asyncio.Queue[Envelope] = asyncio.Queue()
    during_wire: list[bool] = []

    async def wire() -> None:
        # resources are open (the key service is there), nothing is subscribed yet
        assert runtime.keys is not None
        during_wire.append(runtime.ready)
        with pytest.raises(UnroutableError):
            await runtime.bus.publish(new_event(RunCancelled()))

        async def handle(envelope: Envelope) -> None:
            await got.put(envelope)

        runtime.on({"RunCancelled": handle})

    async with two_phase(runtime, wire):
        assert during_wire == [False] and runtime.ready
        sent = new_event(RunCancelled())
        await runtime.bus.publish(sent)
        assert (await asyncio.wait_for(got.get(), 5)).id == sent.id
    assert not runtime.ready
