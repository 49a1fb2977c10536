"""The fetcher on RabbitMQ + PostgreSQL + OpenBao, with the real HF client: two replicas
on one database download a model once; the other replica then serves the pinned (gated)
revision from the cache, authorised with the owner's token, with no download."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.events import parse_payload
from shared.secrets.vault import VaultClient
from tests.support.hf_server import HubServer
from tests.unit.fetcher.harness import running_fetcher, spec

pytestmark = pytest.mark.integration


async def test_two_replicas_single_flight_and_offline(
    tmp_path: Path, amqp_url: str, postgres_url: str, bao_server: tuple[str, str]
) -> None:
    addr, token = bao_server
    vault = VaultClient(addr, token=token)
    vault.ensure_mounts()
    owner = str(uuid.uuid4())
    vault.put_user_secret(owner, "HF_TOKEN", "hf_real")
    with HubServer(lfs_threshold=1024) as hub:
        hub.gate("org/gated", token="hf_real")
        sha = hub.commit("org/gated", {"model.bin": os.urandom(2 << 20), "config.json": b"{}"})
        hub.bytes_per_second = 8 << 20
        common: dict[str, Any] = {
            "bus_url": amqp_url,
            "database_url": postgres_url,
            "hf_endpoint": hub.url,
            "store_dir": tmp_path / "store",
            "transit_key": f"t-{uuid.uuid4().hex[:8]}",
        }
        async with (
            running_fetcher(tmp_path / "a", vault=vault, **common) as a,
            running_fetcher(tmp_path / "b", vault=vault, **common) as b,
        ):
            body = spec(f"hf://org/gated@{sha}", secrets=["HF_TOKEN"])
            runs = [await a.start_run(body, owner=owner) for _ in range(3)]
            outcomes = await asyncio.gather(*(a.outcome(r, timeout=60) for r in runs))
            assert {o.type for o in outcomes} == {"ArtifactsCached"}
            assert hub.downloads() == 2  # each file once although both replicas consumed runs
            again = parse_payload(
                await b.fetch(body, owner=owner)
            )  # a hit: authorised, no download
            assert again.artifacts[0].resolved_revision == sha  # type: ignore[attr-defined]
            assert hub.downloads() == 2
            assert all("hf_real" not in e.model_dump_json() for e in a.events)
