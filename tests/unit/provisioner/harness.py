"""Runs the provisioner service in-process on a bus and collects what it publishes."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from services.provisioner.drivers.base import Node, NodeDriver
from services.provisioner.envs.builder import EnvBuilder, EnvProgress, LockResult
from services.provisioner.main import create_app
from services.provisioner.service import DriverFactory, Provisioner
from services.provisioner.settings import ProvisionerSettings
from shared.bus import Bus, create_bus
from shared.errors import ProviderError
from shared.events import Envelope, EventPayload, new_event
from shared.secrets import InMemoryVault
from shared.spec import ProjectSpec

__all__ = ["FakeEnvBuilder", "Harness", "spec_dict"]

COLLECTED = [
    "ProvisioningProgress",
    "NodesReady",
    "NodesFailed",
    "NodesReleased",
    "NodesReplaced",
]


def spec_dict(**resources: Any) -> dict[str, Any]:
    packages = resources.pop("packages", ["six"])
    python = resources.pop("python", "3.11")
    deploy = resources.pop("deploy", False)
    return {
        "name": "demo",
        "model": "hf://org/model@main",
        "dataset": "hf://datasets/org/data@main",
        "environment": {"python": python, "packages": packages},
        "resources": {"provider": "local", **resources},
        "deploy": {"enabled": deploy},
    }


class FakeEnvBuilder(EnvBuilder):
    """Locks from the package list, environments that 'exist' at once (no uv, no Ansible)."""

    def __init__(self) -> None:
        self.resolved = 0
        self.configured: list[list[str]] = []
        self.fail_resolve: str | None = None
        self.fail_configure: str | None = None
        self.block = asyncio.Event()
        self.block.set()

    def input_key(self, spec: ProjectSpec) -> str:
        blob = "|".join(sorted(spec.environment.packages)) + spec.environment.python
        return hashlib.sha256(blob.encode()).hexdigest()

    async def resolve(self, spec: ProjectSpec) -> LockResult:
        if self.fail_resolve:
            raise ProviderError(self.fail_resolve)
        self.resolved += 1
        text = "".join(f"{p}==1.0 --hash=sha256:00\n" for p in sorted(spec.environment.packages))
        digest = hashlib.sha256(text.encode()).hexdigest()
        return LockResult(input_key=self.input_key(spec), lock_hash=digest, text=text)

    async def configure(
        self,
        *,
        spec: ProjectSpec,
        lock: LockResult,
        nodes: list[Node],
        driver: NodeDriver,
        private_dir: Path,
        progress: EnvProgress,
        cancel: threading.Event,
    ) -> dict[str, Any]:
        await progress("configure", "fake configure", 50)
        await self.block.wait()
        if self.fail_configure:
            raise ProviderError(self.fail_configure, code="configure_failed")
        self.configured.append([n.name for n in nodes])
        return {
            "lock_hash": lock.lock_hash,
            "python": f"{nodes[0].env_root}/{lock.lock_hash}/venv/bin/python",
            "python_version": spec.environment.python,
            "torch_version": "2.13.0+cpu",
            "accelerator": spec.resources.accelerator,
        }


class Harness:
    """The service app started on ``bus_url`` with a collector queue for its events."""

    def __init__(
        self,
        settings: ProvisionerSettings,
        *,
        bus_url: str = "memory://provisioner-test",
        drivers: DriverFactory | None = None,
        builder: EnvBuilder | None = None,
        vault: InMemoryVault | None = None,
    ) -> None:
        self.settings = settings
        self.bus_url = bus_url
        self.vault = vault or InMemoryVault()
        self.drivers = drivers
        self.builder = builder
        self.events: list[Envelope] = []
        self._changed = asyncio.Condition()
        self._stack = AsyncExitStack()
        self.app: FastAPI | None = None
        self.bus: Bus | None = None

    @property
    def provisioner(self) -> Provisioner:
        assert self.app is not None
        return self.app.state.provisioner  # type: ignore[no-any-return]

    async def _collect(self, envelope: Envelope) -> None:
        async with self._changed:
            self.events.append(envelope)
            self._changed.notify_all()

    async def __aenter__(self) -> Harness:
        self.bus = create_bus(self.bus_url)
        await self.bus.connect()
        self._stack.push_async_callback(self.bus.close)
        await self.bus.subscribe("test-collector", COLLECTED, self._collect)
        await self.start()
        return self

    async def start(self) -> None:
        self.app = create_app(
            self.settings,
            bus=self.bus,
            vault=(self.vault, self.vault),
            drivers=self.drivers,
            builder=self.builder,
        )
        self._app_stack = AsyncExitStack()
        await self._app_stack.enter_async_context(self.app.router.lifespan_context(self.app))

    async def stop(self) -> None:
        await self._app_stack.aclose()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        await self._stack.aclose()

    async def publish(
        self, payload: EventPayload, *, project_id: uuid.UUID, run_id: uuid.UUID | None
    ) -> Envelope:
        assert self.bus is not None
        envelope = new_event(payload, project_id=project_id, run_id=run_id)
        await self.bus.publish(envelope)
        return envelope

    def of(self, event_type: str, run_id: uuid.UUID | None = None) -> list[Envelope]:
        return [
            e for e in self.events
            if e.type == event_type and (run_id is None or e.run_id == run_id)
        ]  # fmt: skip

    async def wait_for(
        self, event_type: str, run_id: uuid.UUID, *, timeout: float = 30.0
    ) -> Envelope:
        async def found() -> Envelope:
            async with self._changed:
                while True:
                    for types in (event_type, "NodesFailed"):
                        hits = self.of(types, run_id)
                        if hits:
                            return hits[0]
                    await self._changed.wait()

        envelope = await asyncio.wait_for(found(), timeout)
        if envelope.type != event_type:
            raise AssertionError(f"wanted {event_type}, got {envelope.type}: {envelope.payload}")
        return envelope
