"""A registered LoRA version lists the cached base model's blobs under ``base/`` without
copying them; evicting the base from the fetcher's cache must leave those blobs in place
(shared.blob_holds), while blobs nobody holds are still deleted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlmodel import select

from services.fetcher.models import Artifact
from services.trainer.adapters import with_base
from services.trainer.staging import StoredTree
from shared.blob_holds import BlobHolds
from shared.events import parse_payload
from shared.store import Manifest, ManifestFile
from tests.support.hf_server import HubServer
from tests.unit.fetcher.harness import running_fetcher, spec


async def test_evicting_a_base_model_keeps_the_blobs_a_lora_version_holds(
    tmp_path: Path, hub: HubServer
) -> None:
    weights, other = os.urandom(64 * 1024), os.urandom(32 * 1024)
    hub.commit("org/base", {"model.safetensors": weights, "config.json": b'{"a": 1}'})
    hub.commit("org/other", {"model.bin": other})
    async with running_fetcher(tmp_path, hf_endpoint=hub.url) as f:
        base = parse_payload(await f.fetch(spec("hf://org/base")))
        base_key = base.artifacts[0].cache_key  # type: ignore[attr-defined]
        parse_payload(await f.fetch(spec("hf://org/other")))
        store = f.cache.store

        adapter_blob, size = store.put_stream([b'{"r": 8}'])
        manifest = Manifest(
            source="run://adapter",
            revision="1",
            files=[ManifestFile("adapter.json", adapter_blob, size)],
        )
        key = store.put_manifest(manifest)
        tree = StoredTree(
            key=key, size=size, files=tuple(manifest.files), created=frozenset(), sent=0
        )
        version = with_base(store, tree, base_key)
        base_files = [f for f in version.files if f.path.startswith("base/")]
        assert {f.path for f in base_files} == {"base/model.safetensors", "base/config.json"}

        with f.cache.db.session() as s:
            keys = {a.source: a.key for a in s.exec(select(Artifact))}
            other_digests = {
                row.digest
                for row in store.get_manifest(
                    next(
                        a.cache_key
                        for a in s.exec(select(Artifact))
                        if a.source == "hf://org/other"
                    )
                ).files
            }
        for source in ("hf://org/base", "hf://org/other"):
            f.cache.evict(keys[source])

        for entry in base_files:  # held by the version: still readable, content intact
            assert store.holds.holders(entry.digest) == [version.key]
            assert b"".join(store.read(entry.digest))
        served = {
            e.path: b"".join(store.read(e.digest)) for e in store.get_manifest(version.key).files
        }
        assert served["base/model.safetensors"] == weights
        for digest in other_digests:  # nobody holds these: eviction deleted them
            assert not store.has(digest)


def test_holds_are_per_holder_and_validated(tmp_path: Path) -> None:
    holds = BlobHolds(tmp_path / "holds")
    digest = "ab" * 32
    holds.hold([digest], "v1")
    holds.hold([digest], "v2")
    holds.hold([digest], "v1")  # idempotent
    assert holds.holders(digest) == ["v1", "v2"]
    holds.release([digest], "v1")
    assert holds.is_held(digest) and holds.holders(digest) == ["v2"]
    holds.release([digest], "v2")
    assert not holds.is_held(digest) and not (tmp_path / "holds" / digest).exists()
    with pytest.raises(ValueError, match="holder"):
        holds.hold([digest], "../escape")
    with pytest.raises(ValueError, match="digest"):
        holds.hold(["../../etc"], "v1")
