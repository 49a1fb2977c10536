"""Fixtures of the shared library's integration tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.integration.shared.harness import BusHarness


@pytest.fixture(params=["memory", pytest.param("rabbit", marks=pytest.mark.integration)])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[BusHarness]:
    """The same contract, once on the memory bus and once on a fresh RabbitMQ vhost."""
    if request.param == "rabbit":
        url = request.getfixturevalue("amqp_url")
    else:
        url = f"memory://{uuid.uuid4().hex}"
    harness = BusHarness(request.param, url)
    try:
        yield harness
    finally:
        await harness.aclose()
