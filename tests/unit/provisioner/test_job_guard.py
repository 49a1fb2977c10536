"""Provisioner jobs wait out a database or Vault outage (stamina, no bound) and run again;
any other failure is logged once; cancellation still stops a waiting job."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from shared.errors import DependencyDown
from tests.unit.provisioner.harness import Harness


async def test_job_waits_out_an_outage_then_runs_again(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="services.provisioner.service")
    calls: list[float] = []

    async def job() -> None:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise DependencyDown("database", "the database is down")

    await harness.provisioner._guard(job)
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.45 and calls[2] - calls[1] >= 0.95  # 0.5 s, then 1 s
    paused = [r for r in caplog.records if "job paused: the database" in r.getMessage()]
    assert len(paused) == 2


async def test_other_failures_are_logged_not_retried(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    async def job() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("a bug")

    await harness.provisioner._guard(job)
    assert calls == 1 and "provisioner job crashed" in caplog.text


async def test_a_waiting_job_can_be_cancelled(harness: Harness) -> None:
    async def job() -> None:
        raise DependencyDown("vault", "vault is sealed")

    task = asyncio.ensure_future(harness.provisioner._guard(job))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
