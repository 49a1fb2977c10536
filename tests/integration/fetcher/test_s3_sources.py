"""s3:// sources (issue 18 item 2) through the fetcher service against a real S3 server
(SeaweedFS, tests/support/s3_server.py), with boto3 on both sides.

A prefix is fetched with progress, its revision is stable across fetches (the second is a
cache hit) and changes when an object changes (only the changed object is downloaded
again); a download cut midway resumes from the bytes on disk; bad credentials, a missing
bucket and an internal endpoint not on the allow-list fail clearly, no secret anywhere.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.events import ArtifactsCached, ArtifactsFailed, parse_payload
from tests.support.s3_server import CuttingProxy, SeaweedS3
from tests.unit.fetcher.harness import running_fetcher

pytestmark = pytest.mark.integration

OWNER = "6d1f7a6e-0000-4000-8000-0000000053a1"
BIG = os.urandom(900_000)
CSV = b"text,label\ngood,1\nbad,0\n"
KEYS = ["S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with SeaweedS3(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


def _bucket(s3: SeaweedS3, files: dict[str, bytes]) -> str:
    name = f"b-{uuid.uuid4().hex[:10]}"
    client = s3.admin()
    client.create_bucket(Bucket=name)
    for key, body in files.items():
        client.put_object(Bucket=name, Key=key, Body=body)
    return name


def _body(dataset: Any, secrets: list[str]) -> dict[str, Any]:
    return {
        "name": "t",
        "model": "s3://models-bucket/tiny/",  # endpoint from the S3_ENDPOINT_URL secret
        "dataset": dataset,
        "task": "text-classification",
        "secrets": secrets,
    }


def _files(f: Any, ref: Any) -> dict[str, bytes]:
    return {
        x.path: b"".join(f.cache.store.read(x.digest))
        for x in f.cache.store.get_manifest(ref.cache_key).files
    }


def _progress(f: Any, run_id: uuid.UUID, uri: str) -> list[Any]:
    return [
        parse_payload(e)
        for e in f.events
        if e.run_id == run_id and e.type == "FetchProgress" and parse_payload(e).source == uri  # type: ignore[attr-defined]
    ]


def _settings(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"fetch_allow_hosts": ["127.0.0.1"], "s3_part_bytes": 256 * 1024}
    values.update(extra)
    return values


async def test_prefix_progress_revision_and_changes(tmp_path: Path, s3: SeaweedS3) -> None:
    if "models-bucket" not in [b["Name"] for b in s3.admin().list_buckets()["Buckets"]]:
        s3.admin().create_bucket(Bucket="models-bucket")
        s3.admin().put_object(Bucket="models-bucket", Key="tiny/config.json", Body=b"{}")
    bucket = _bucket(
        s3,
        {
            "data/train.csv": CSV,
            "data/blobs/big.bin": BIG,
            "data/folder/": b"",  # a folder marker: skipped
            "database.csv": b"not under data/",
        },
    )
    uri = f"s3://{bucket}/data"
    # by name: a plain-http endpoint the allow-list names, reached at the address checked
    dataset = {"uri": uri, "endpoint": f"http://localhost:{s3.port}"}
    allow = {"fetch_allow_hosts": ["localhost", "127.0.0.1"]}
    async with running_fetcher(tmp_path, **_settings(tmp_path, **allow)) as f:
        f.vault.put_user_secret(OWNER, "S3_ACCESS_KEY_ID", s3.READER[0])
        f.vault.put_user_secret(OWNER, "S3_SECRET_ACCESS_KEY", s3.READER[1])
        f.vault.put_user_secret(OWNER, "S3_ENDPOINT_URL", s3.url)
        secrets = [*KEYS, "S3_ENDPOINT_URL"]
        first_run = await f.start_run(_body(dataset, secrets), owner=OWNER)
        first = parse_payload(await f.outcome(first_run))
        assert isinstance(first, ArtifactsCached), first
        model, data = first.artifacts  # type: ignore[attr-defined]
        assert model.source == "s3://models-bucket/tiny/" and _files(f, model) == {
            "config.json": b"{}"
        }
        assert data.source == f"s3://{bucket}/data" and len(data.resolved_revision) == 64
        assert _files(f, data) == {"train.csv": CSV, "blobs/big.bin": BIG}
        assert data.size_bytes == len(CSV) + len(BIG)
        progress = _progress(f, first_run, uri)
        assert len(progress) >= 2  # several parts of 256 KiB
        done = [p.bytes_done for p in progress]
        assert done == sorted(done) and done[-1] == len(CSV) + len(BIG)
        assert all(p.bytes_total == len(CSV) + len(BIG) for p in progress)

        again_run = await f.start_run(_body(dataset, secrets), owner=OWNER)
        again = parse_payload(await f.outcome(again_run))
        assert again.artifacts[1].resolved_revision == data.resolved_revision  # type: ignore[attr-defined]
        assert again.artifacts[1].cache_key == data.cache_key  # type: ignore[attr-defined]
        assert _progress(f, again_run, uri) == []  # a cache hit: nothing downloaded

        s3.admin().put_object(Bucket=bucket, Key="data/train.csv", Body=CSV + b"meh,0\n")
        changed_run = await f.start_run(_body(dataset, secrets), owner=OWNER)
        changed = parse_payload(await f.outcome(changed_run))
        ref = changed.artifacts[1]  # type: ignore[attr-defined]
        assert ref.resolved_revision != data.resolved_revision
        assert _files(f, ref) == {"train.csv": CSV + b"meh,0\n", "blobs/big.bin": BIG}
        # the unchanged object was reused (same endpoint, bucket, key, ETag): only the csv
        assert _progress(f, changed_run, uri)[-1].bytes_done == len(CSV) + 6
        dumped = "".join(e.model_dump_json() for e in f.events)
        assert s3.READER[1] not in dumped and s3.READER[0] not in dumped


async def test_interrupted_download_resumes_from_disk(tmp_path: Path, s3: SeaweedS3) -> None:
    big = os.urandom(2_000_000)
    bucket = _bucket(s3, {"one/weights.bin": big})
    with CuttingProxy(s3.port, cut_after=700_000, cuts=2) as proxy:
        body = {
            "name": "t",
            "model": f"s3://{bucket}/one/weights.bin",  # one object: the file weights.bin
            "task": "custom",
            "train": {"entrypoint": "train.py"},
            "secrets": [*KEYS, "S3_ENDPOINT_URL"],
        }
        async with running_fetcher(tmp_path, **_settings(tmp_path, s3_part_bytes=1024 * 1024)) as f:
            f.vault.put_user_secret(OWNER, "S3_ACCESS_KEY_ID", s3.READER[0])
            f.vault.put_user_secret(OWNER, "S3_SECRET_ACCESS_KEY", s3.READER[1])
            f.vault.put_user_secret(OWNER, "S3_ENDPOINT_URL", proxy.url)
            outcome = parse_payload(await f.fetch(body, owner=OWNER, timeout=60))
            assert isinstance(outcome, ArtifactsCached), outcome
            ref = outcome.artifacts[0]  # type: ignore[attr-defined]
            assert _files(f, ref) == {"weights.bin": big}
            assert proxy.cut_done == 2
            # resumed at the cut each time: the body crossed the proxy about once (a restart
            # from byte 0 would add the 2 x ~700 kB received before the cuts)
            assert proxy.downstream_bytes < len(big) + 150_000
            partial = f.settings.resolved_work_dir() / "s3-partial"
            assert not list(partial.glob("*.part"))  # moved into the store, nothing left


async def test_failed_attempt_leaves_its_bytes_for_the_next(
    tmp_path: Path, s3: SeaweedS3, caplog: pytest.LogCaptureFixture
) -> None:
    """Six cuts in a row fail the first attempt; the job's second attempt continues from the
    partial file the first one left, not from byte 0."""
    big = os.urandom(1_500_000)
    bucket = _bucket(s3, {"w.bin": big})
    with CuttingProxy(s3.port, cut_after=100_000, cuts=7) as proxy:
        body = {
            "name": "t",
            "model": f"s3://{bucket}/w.bin",
            "task": "custom",
            "train": {"entrypoint": "train.py"},
            "secrets": [*KEYS, "S3_ENDPOINT_URL"],
        }
        settings = _settings(tmp_path, fetch_attempts=2, retry_delay=0.1, s3_part_bytes=1024 * 1024)
        caplog.set_level(logging.WARNING, logger="services.fetcher.jobs")
        async with running_fetcher(tmp_path, **settings) as f:
            f.vault.put_user_secret(OWNER, "S3_ACCESS_KEY_ID", s3.READER[0])
            f.vault.put_user_secret(OWNER, "S3_SECRET_ACCESS_KEY", s3.READER[1])
            f.vault.put_user_secret(OWNER, "S3_ENDPOINT_URL", proxy.url)
            outcome = parse_payload(await f.fetch(body, owner=OWNER, timeout=90))
            assert isinstance(outcome, ArtifactsCached), outcome
            assert _files(f, outcome.artifacts[0]) == {"w.bin": big}
            assert proxy.cut_done == 7
            retried = [r for r in caplog.records if "retry 1" in r.getMessage()]
            assert retried and "resumes from there" in retried[0].getMessage()
            assert proxy.downstream_bytes < len(big) + 100_000


async def test_clear_failures_without_secrets(tmp_path: Path, s3: SeaweedS3) -> None:
    bucket = _bucket(s3, {"x/a.csv": CSV})
    async with running_fetcher(tmp_path, **_settings(tmp_path)) as f:
        f.vault.put_user_secret(OWNER, "S3_ACCESS_KEY_ID", s3.READER[0])
        f.vault.put_user_secret(OWNER, "S3_SECRET_ACCESS_KEY", "wrong-secret-value-123")
        f.vault.put_user_secret(OWNER, "S3_ENDPOINT_URL", s3.url)
        secrets = [*KEYS, "S3_ENDPOINT_URL"]

        def body(uri: str) -> dict[str, Any]:
            return {
                "name": "t",
                "model": uri,
                "task": "custom",
                "train": {"entrypoint": "train.py"},
                "secrets": secrets,
            }

        denied = parse_payload(await f.fetch(body(f"s3://{bucket}/x/"), owner=OWNER))
        assert isinstance(denied, ArtifactsFailed) and not denied.retryable  # type: ignore[attr-defined]
        assert "denied" in denied.reason and "S3_SECRET_ACCESS_KEY" in denied.reason  # type: ignore[attr-defined]

        f.vault.put_user_secret(OWNER, "S3_SECRET_ACCESS_KEY", s3.READER[1])
        missing = parse_payload(await f.fetch(body("s3://no-such-bucket-here/x/"), owner=OWNER))
        assert "The bucket no-such-bucket-here does not exist" in missing.reason  # type: ignore[attr-defined]
        empty = parse_payload(await f.fetch(body(f"s3://{bucket}/nothing/"), owner=OWNER))
        assert "holds no objects" in empty.reason  # type: ignore[attr-defined]
        half = body(f"s3://{bucket}/x/") | {"secrets": ["S3_ACCESS_KEY_ID", "S3_ENDPOINT_URL"]}
        one_key = parse_payload(await f.fetch(half, owner=OWNER))
        assert "name both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY" in one_key.reason  # type: ignore[attr-defined]
        dumped = "".join(e.model_dump_json() for e in f.events)
        assert "wrong-secret-value-123" not in dumped and s3.READER[1] not in dumped

    # without the allow-list, a loopback endpoint is refused before any request
    (tmp_path / "strict").mkdir()
    async with running_fetcher(tmp_path / "strict", fetch_allow_hosts=[]) as f:
        f.vault.put_user_secret(OWNER, "S3_ACCESS_KEY_ID", s3.READER[0])
        f.vault.put_user_secret(OWNER, "S3_SECRET_ACCESS_KEY", s3.READER[1])
        f.vault.put_user_secret(OWNER, "S3_ENDPOINT_URL", s3.url)
        refused = parse_payload(
            await f.fetch(
                {
                    "name": "t",
                    "model": f"s3://{bucket}/x/",
                    "task": "custom",
                    "train": {"entrypoint": "train.py"},
                    "secrets": [*KEYS, "S3_ENDPOINT_URL"],
                },
                owner=OWNER,
            )
        )
        assert "internal address 127.0.0.1" in refused.reason  # type: ignore[attr-defined]
        assert "AIDP_FETCH_ALLOW_HOSTS" in refused.reason  # type: ignore[attr-defined]
