"""Fixtures for the provisioner's unit tests: fake driver, fake env builder, the service."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.provisioner.drivers.base import NodeDriver
from services.provisioner.drivers.fake import FakeCloud, FakeDriver
from services.provisioner.settings import ProvisionerSettings
from tests.unit.provisioner.harness import FakeEnvBuilder, Harness


@pytest.fixture
def settings(tmp_path: Path) -> ProvisionerSettings:
    return ProvisionerSettings(
        data_dir=tmp_path / "data",
        env_dir=tmp_path / "envs",
        retry_delay=0.01,
        reaper_interval=3600,
        bus_url="memory://provisioner-test",
    )


@pytest.fixture
def cloud(tmp_path: Path) -> FakeCloud:
    return FakeCloud(root=tmp_path / "cloud")


@pytest.fixture
def builder() -> FakeEnvBuilder:
    return FakeEnvBuilder()


@pytest.fixture
async def harness(
    settings: ProvisionerSettings, cloud: FakeCloud, builder: FakeEnvBuilder
) -> AsyncIterator[Harness]:
    def drivers(provider: str, owner: uuid.UUID | None) -> NodeDriver:
        return FakeDriver(cloud, provider=provider)

    async with Harness(settings, drivers=drivers, builder=builder) as h:
        yield h
