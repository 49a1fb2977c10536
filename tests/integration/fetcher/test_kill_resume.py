"""A fetcher process SIGKILLed in the middle of a download leaves no corrupt or partial
cache entry, and a fresh replica (RabbitMQ + PostgreSQL + OpenBao) resumes the job: it
takes over the dead process's job claim and download lease once they expire, removes the
plaintext scratch the dead process left, and caches the artifact intact."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from services.fetcher.models import Artifact, ArtifactFile, FetchJob
from shared.bus import create_bus
from shared.db import Database
from shared.events import Envelope, ProjectCreated, new_event, parse_payload
from shared.secrets.vault import VaultClient
from tests.support.hf_server import HubServer
from tests.support.infra import free_port
from tests.unit.fetcher.harness import running_fetcher, spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
# Larger than huggingface_hub's read chunk (10 MiB in 2.x; progress is reported per chunk),
# so a progress report arrives while most of the file is still to come.
WEIGHTS = os.urandom(40 << 20)
LEASE = 1.5


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer(lfs_threshold=1024) as server:
        yield server


def _start_fetcher_process(env: dict[str, str], log: Path, port: int) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.fetcher"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"fetcher exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    pytest.fail(f"fetcher not ready:\n{log.read_text()[-3000:]}")


async def test_killed_download_leaves_nothing_and_resumes(
    tmp_path: Path,
    hub: HubServer,
    amqp_url: str,
    postgres_url: str,
    bao_server: tuple[str, str],
) -> None:
    addr, token = bao_server
    sha = hub.commit("org/model", {"config.json": b'{"a": 1}', "model.bin": WEIGHTS})
    hub.bytes_per_second = 8 << 20  # ~5 s for the weights: time to kill it midway
    work, store, transit = tmp_path / "work", tmp_path / "store", f"t-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        **os.environ,
        "AIDP_MODE": "distributed",
        "AIDP_BUS_URL": amqp_url,
        "AIDP_DATABASE_URL": postgres_url,
        "AIDP_VAULT_ADDR": addr,
        "AIDP_VAULT_TOKEN": token,
        "AIDP_TRANSIT_KEY": transit,
        "AIDP_STORE_DIR": str(store),
        "AIDP_WORK_DIR": str(work),
        "AIDP_DATA_DIR": str(tmp_path / "killed"),
        "AIDP_HOST": "127.0.0.1",
        "AIDP_PORT": str(port),
        "AIDP_LEASE_SECONDS": str(LEASE),
        "AIDP_PROGRESS_INTERVAL": "0.05",
        "HF_ENDPOINT": hub.url,
    }
    proc = _start_fetcher_process(env, tmp_path / "killed.log", port)
    seen: list[Envelope] = []

    async def observe(envelope: Envelope) -> None:
        seen.append(envelope)

    observer = create_bus(amqp_url)
    await observer.connect()
    run_id = uuid.uuid4()
    try:
        await observer.subscribe(
            "kill-observer", ["FetchProgress", "ArtifactsCached", "ArtifactsFailed"], observe
        )
        body = spec(f"hf://org/model@{sha}")
        await observer.publish(
            new_event(
                ProjectCreated(owner_id=uuid.uuid4(), spec=body),
                project_id=uuid.uuid4(),
                run_id=run_id,
            )
        )
        deadline = time.monotonic() + 60
        while not any(
            e.type == "FetchProgress" and parse_payload(e).bytes_done > 1 << 20  # type: ignore[attr-defined]
            for e in seen
        ):
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the download never started"
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        await observer.close()
    assert not any(e.type in ("ArtifactsCached", "ArtifactsFailed") for e in seen)

    db = Database(postgres_url)
    try:
        with db.session() as s:
            assert s.exec(select(Artifact)).all() == []  # nothing recorded for the partial download
            assert s.exec(select(ArtifactFile)).all() == []
            job = s.get(FetchJob, run_id)
            assert job is not None and job.status == "pending" and job.claimed_by is not None
    finally:
        db.dispose()
    leftovers = list(work.glob("fetch-*"))
    assert leftovers  # the dead process's plaintext scratch (partial weights) is still there

    vault = VaultClient(addr, token=token)
    async with running_fetcher(
        tmp_path / "fresh",
        vault=vault,
        bus_url=amqp_url,
        database_url=postgres_url,
        store_dir=store,
        work_dir=work,
        transit_key=transit,
        hf_endpoint=hub.url,
        lease_seconds=LEASE,
    ) as fresh:
        assert not any(p.exists() for p in leftovers)  # swept at start
        outcome = await fresh.outcome(run_id, timeout=90)
        assert outcome.type == "ArtifactsCached", outcome.payload
        ref = parse_payload(outcome).artifacts[0]  # type: ignore[attr-defined]
        assert ref.resolved_revision == sha
        cache_store = fresh.cache.store
        for digest in cache_store.iter_digests():  # every blob decrypts to its own name
            assert cache_store.name_of_bytes(b"".join(cache_store.read(digest))) == digest
        files = {f.path: f.digest for f in cache_store.get_manifest(ref.cache_key).files}
        assert b"".join(cache_store.read(files["model.bin"])) == WEIGHTS
        assert [a["source"] for a in fresh.cache.listing()] == ["hf://org/model"]
        await asyncio.sleep(0.3)
        assert len(fresh.outcomes(run_id)) == 1
        assert not list(work.glob("fetch-*"))
