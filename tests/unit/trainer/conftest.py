"""Fixtures: a trainer service on the memory bus + SQLite + InMemoryVault, tiny artifacts."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from services.trainer.main import create_app
from services.trainer.settings import TrainerSettings
from shared.bus import Bus, create_bus
from shared.events import (
    STATUS_EVENT_TYPES,
    ArtifactRef,
    ArtifactsCached,
    Envelope,
    EnvInfo,
    EventPayload,
    NodeInfo,
    NodesReady,
    ProjectCreated,
    new_event,
)
from shared.secrets import InMemoryVault
from shared.store import ArtifactStore, Manifest, ManifestFile
from tests.unit.trainer.factories import build_tiny_bert, write_sentiment_csv

PYTHON = sys.executable


@dataclass
class Events:
    """Every event seen on the bus, with helpers to wait for some."""

    items: list[Envelope] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, envelope: Envelope) -> None:
        self.items.append(envelope)
        self.changed.set()

    def of(self, type_: str, run_id: uuid.UUID | None = None) -> list[Envelope]:
        return [e for e in self.items if e.type == type_ and (run_id is None or e.run_id == run_id)]

    async def wait_for(
        self, predicate: Callable[[], Any], *, timeout: float = 90, what: str = "condition"
    ) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                seen = [
                    (e.type, e.payload.get("reason")) for e in self.items if e.type != "TrainingLog"
                ]
                raise AssertionError(f"timed out waiting for {what}; saw {seen}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.5))
            except TimeoutError:
                pass

    async def first(self, type_: str, run_id: uuid.UUID, *, timeout: float = 90) -> Envelope:
        found = await self.wait_for(lambda: self.of(type_, run_id), timeout=timeout, what=type_)
        return found[0]  # type: ignore[no-any-return]

    def logs(self, run_id: uuid.UUID) -> list[str]:
        return [line for e in self.of("TrainingLog", run_id) for line in e.payload["lines"]]


@dataclass
class Harness:
    """A running trainer plus what tests need to drive it."""

    app: FastAPI
    bus: Bus
    store: ArtifactStore
    events: Events
    tmp: Path
    vault: InMemoryVault | None
    model_key: str = ""
    dataset_key: str = ""

    async def publish(
        self, payload: EventPayload, *, run_id: uuid.UUID, project_id: uuid.UUID
    ) -> Envelope:
        envelope = new_event(payload, run_id=run_id, project_id=project_id)
        await self.bus.publish(envelope)
        return envelope

    def node(self, name: str = "node-0") -> NodeInfo:
        workdir = self.tmp / "nodes" / name
        workdir.mkdir(parents=True, exist_ok=True)
        return NodeInfo(name=name, address="127.0.0.1", workdir=str(workdir), python=PYTHON)

    def artifacts(self, *, model_key: str | None = None, dataset: bool = True) -> ArtifactsCached:
        refs = [
            ArtifactRef(
                kind="model",
                source="hf://tests/tiny-bert",
                resolved_revision="a" * 40,
                digest="0" * 64,
                size_bytes=1,
                cache_key=model_key or self.model_key,
            )
        ]
        if dataset:
            refs.append(
                ArtifactRef(
                    kind="dataset",
                    source="hf://datasets/tests/sentiment",
                    resolved_revision="b" * 40,
                    digest="1" * 64,
                    size_bytes=1,
                    cache_key=self.dataset_key,
                )
            )
        return ArtifactsCached(artifacts=refs)

    async def start_run(
        self,
        *,
        spec: dict[str, Any],
        nodes: int = 1,
        order: str = "spec-nodes-artifacts",
        artifacts: ArtifactsCached | None = None,
    ) -> uuid.UUID:
        run_id, project_id = uuid.uuid4(), uuid.uuid4()
        ready = NodesReady(
            nodes=[self.node(f"node-{i}-{run_id.hex[:6]}") for i in range(nodes)],
            env=EnvInfo(lock_hash="c" * 64, python=PYTHON, torch_version="2.13.0"),
        )
        messages = {
            "spec": ProjectCreated(owner_id=uuid.uuid4(), spec=spec),
            "nodes": ready,
            "artifacts": artifacts or self.artifacts(dataset=spec.get("dataset") is not None),
        }
        for name in order.split("-"):
            await self.publish(messages[name], run_id=run_id, project_id=project_id)
        return run_id


def put_dir(store: ArtifactStore, root: Path, *, source: str) -> str:
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest, size = store.put_file(path)
        files.append(ManifestFile(path=path.relative_to(root).as_posix(), digest=digest, size=size))
    return store.put_manifest(Manifest(source=source, revision="r1", files=files))


def text_spec(**train: Any) -> dict[str, Any]:
    args = {"epochs": 2, "batch_size": 8, "learning_rate": 0.003, "num_threads": 1}
    args.update(train.pop("args", {}))
    return {
        "name": "tiny",
        "model": "hf://tests/tiny-bert",
        "dataset": "hf://datasets/tests/sentiment",
        "task": "text-classification",
        "train": {"args": args, **train},
        "deploy": {"enabled": False},
    }


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tiny")
    model = build_tiny_bert(root / "model")
    data = root / "data"
    write_sentiment_csv(data / "train.csv", rows=64)
    return model, data


@pytest.fixture
async def trainer(tmp_path: Path, tiny_files: tuple[Path, Path]) -> AsyncIterator[Harness]:
    async with running_trainer(tmp_path, tiny_files) as harness:
        yield harness


def settings_for(tmp_path: Path, **overrides: Any) -> TrainerSettings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": f"sqlite:///{tmp_path / 'trainer.db'}",
        "bus_url": "memory://trainer-tests",
        "trainer_poll_seconds": 0.3,
        "trainer_lease_seconds": 3.0,
        "trainer_kill_grace_seconds": 1.0,
        "trainer_serving_python": PYTHON,
        # every run here has a node of its own: a spare per run would only cost CPU
        # (tests/unit/trainer/test_warm_start.py turns warm starts on)
        "trainer_warm_workers": 0,
    }
    values.update(overrides)
    return TrainerSettings(**values)


class running_trainer:  # noqa: N801 - used as a context manager
    """Start a trainer app (and an observer queue) for a test; reusable across restarts.

    ``vault=None`` with ``real_vault=True`` lets the service connect to the Vault named in
    the settings (integration tests); otherwise an :class:`InMemoryVault` is injected.
    """

    def __init__(
        self,
        tmp_path: Path,
        tiny: tuple[Path, Path],
        *,
        vault: InMemoryVault | None = None,
        real_vault: bool = False,
        events: Events | None = None,
        **overrides: Any,
    ) -> None:
        self.tmp, self.tiny = tmp_path, tiny
        self.vault = None if real_vault else (vault or InMemoryVault())
        self.events = events or Events()
        self.overrides = overrides

    async def __aenter__(self) -> Harness:
        settings = settings_for(self.tmp, **self.overrides)
        self.bus = create_bus(settings.bus_url)
        await self.bus.connect()
        await self.bus.subscribe("observer", list(STATUS_EVENT_TYPES), self.events.handle)
        shared_bus = self.bus if settings.bus_url.startswith("memory") else None
        vault = (self.vault, self.vault) if self.vault is not None else None
        self.app = create_app(settings, bus=shared_bus, vault=vault)
        self.ctx = self.app.router.lifespan_context(self.app)
        await self.ctx.__aenter__()
        store = self.app.state.trainer.jobs.store
        harness = Harness(self.app, self.bus, store, self.events, self.tmp, self.vault)
        harness.model_key = put_dir(store, self.tiny[0], source="hf://tests/tiny-bert")
        harness.dataset_key = put_dir(store, self.tiny[1], source="hf://datasets/tests/sentiment")
        return harness

    async def __aexit__(self, *exc: object) -> None:
        await self.ctx.__aexit__(None, None, None)
        await self.bus.close()
