"""A job's retries of a source (stamina): a retryable failure is tried again after
``retry_delay`` and succeeds once the provider is back; a lasting one fails after
``fetch_attempts`` tries; a failure that retrying cannot fix is tried once."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest

from tests.support.hf_server import HubServer
from tests.unit.fetcher.harness import running_fetcher, spec


async def test_unreachable_hub_is_retried_until_it_is_back(
    tmp_path: Path, hub: HubServer, caplog: pytest.LogCaptureFixture
) -> None:
    hub.commit("org/tiny", {"model.bin": os.urandom(2048)})
    hub.stop()
    caplog.set_level(logging.WARNING, logger="services.fetcher.jobs")
    async with running_fetcher(
        tmp_path, hf_endpoint=hub.url, fetch_attempts=3, retry_delay=1.0
    ) as f:
        asyncio.get_running_loop().call_later(0.5, hub.start)  # back during the first wait
        started = time.monotonic()
        outcome = await f.fetch(spec("hf://org/tiny"), timeout=30)
    assert outcome.type == "ArtifactsCached", outcome.payload
    assert time.monotonic() - started >= 1.0  # the first try failed, then waited
    retries = [r.getMessage() for r in caplog.records if "retry 1" in r.getMessage()]
    assert retries and "Could not reach HuggingFace" in retries[0]


async def test_lasting_outage_fails_retryably_after_the_attempts(
    tmp_path: Path, hub: HubServer, caplog: pytest.LogCaptureFixture
) -> None:
    hub.commit("org/tiny", {"model.bin": os.urandom(2048)})
    hub.stop()
    caplog.set_level(logging.WARNING, logger="services.fetcher.jobs")
    async with running_fetcher(
        tmp_path, hf_endpoint=hub.url, fetch_attempts=3, retry_delay=0.1
    ) as f:
        outcome = await f.fetch(spec("hf://org/tiny"), timeout=30)
    assert outcome.type == "ArtifactsFailed" and outcome.payload["retryable"] is True
    retried = [r.getMessage() for r in caplog.records if "; retry " in r.getMessage()]
    assert [m.rsplit(" ", 1)[-1] for m in retried] == ["1", "2"]  # three tries in all


async def test_failure_retrying_cannot_fix_is_tried_once(
    tmp_path: Path, hub: HubServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="services.fetcher.jobs")
    async with running_fetcher(
        tmp_path, hf_endpoint=hub.url, fetch_attempts=3, retry_delay=5.0
    ) as f:
        started = time.monotonic()
        outcome = await f.fetch(spec("hf://org/no-such-model"), timeout=30)
        assert time.monotonic() - started < 5.0  # no wait for a retry
    assert outcome.type == "ArtifactsFailed" and outcome.payload["retryable"] is False
    assert not [r for r in caplog.records if "; retry " in r.getMessage()]
