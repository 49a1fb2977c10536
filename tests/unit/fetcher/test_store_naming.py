"""A cache written with sha256 blob names moves to keyed names at start; nothing is lost."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from sqlalchemy import delete
from sqlmodel import select

from services.fetcher.models import Alias, Artifact, StoreNaming, Upload
from services.fetcher.naming import STEP, migrate_to_keyed_names
from shared.events import parse_payload
from shared.store import ArtifactStore, Manifest, ManifestFile
from shared.store_migration import successor
from tests.support.hf_server import HubServer
from tests.support.legacy_store import put_legacy, put_legacy_manifest
from tests.unit.fetcher.harness import running_fetcher, spec

WEIGHTS = os.urandom(150_000)
CONFIG = b'{"model_type": "tiny"}'
CSV = b"a,b\n1,2\n"
URL = "https://files.example/data.csv"


def _legacy_artifact(cache, source: str, revision: str, files: dict[str, bytes]) -> str:  # type: ignore[no-untyped-def]
    """Record an artifact the way the cache did before keyed names; returns its key."""
    store: ArtifactStore = cache.store
    entries = sorted(
        (ManifestFile(p, put_legacy(store, d), len(d)) for p, d in files.items()),
        key=lambda f: f.path,
    )
    single = source.startswith(("https://", "upload://"))
    revision = revision or entries[0].digest
    manifest_key = put_legacy_manifest(store, Manifest(source, revision, entries))
    key = f"{source}@{revision}"
    cache.record(
        key=key,
        source=source,
        kind="dataset" if single else "model",
        revision=revision,
        manifest_key=manifest_key,
        digest=entries[0].digest if single else manifest_key,
        files=entries,
    )
    return key


async def test_old_cache_migrates_and_every_artifact_still_loads(
    tmp_path: Path, hub: HubServer
) -> None:
    sha = hub.commit("org/tiny", {"config.json": CONFIG, "model.bin": WEIGHTS})
    owner = str(uuid.uuid4())
    upload_id = str(uuid.uuid4())
    async with running_fetcher(tmp_path, hf_endpoint=hub.url) as old:
        vault = old.vault
        cache = old.cache
        _legacy_artifact(cache, "hf://org/tiny", sha, {"config.json": CONFIG, "model.bin": WEIGHTS})
        _legacy_artifact(cache, URL, "", {"data.csv": CSV})
        upload_key = _legacy_artifact(cache, f"upload://{upload_id}", "", {"data.csv": CSV})
        with cache.db.session() as s:
            legacy = upload_key.rsplit("@", 1)[1]
            s.add(Upload(id=upload_id, owner_id=owner, filename="x", digest=legacy, size_bytes=3))
            s.add(Alias(alias="git:abc", digest=hashlib.sha256(CONFIG).hexdigest()))
            s.execute(delete(StoreNaming))  # the database of a fetcher before the upgrade
            s.commit()
        (cache.store.root / ".naming").unlink()
    plain_digests = {hashlib.sha256(d).hexdigest() for d in (WEIGHTS, CONFIG, CSV)}

    async with running_fetcher(tmp_path, vault=vault, hf_endpoint=hub.url) as f:
        store = f.cache.store
        on_disk = set(store.iter_digests())
        assert not on_disk & plain_digests  # no blob is named by its content's sha256
        assert not any(store.binds_sha256(d) for d in on_disk)

        downloads = hub.downloads()
        done = parse_payload(await f.fetch(spec(f"hf://org/tiny@{sha}")))
        ref = done.artifacts[0]  # type: ignore[attr-defined]
        assert hub.downloads() == downloads  # a cache hit: nothing downloaded again
        written = store.materialize(ref.cache_key, tmp_path / "model")
        assert {p.name: p.read_bytes() for p in written} == {
            "config.json": CONFIG,
            "model.bin": WEIGHTS,
        }

        done = parse_payload(
            await f.fetch(spec("hf://org/tiny", f"upload://{upload_id}"), owner=owner)
        )
        upload = done.artifacts[1]  # type: ignore[attr-defined]
        assert upload.digest == upload.resolved_revision == store.name_of_bytes(CSV)
        assert b"".join(store.read(upload.digest)) == CSV

        with f.cache.db.session() as s:
            url_row = s.exec(select(Artifact).where(Artifact.source == URL)).one()
            alias = s.get(Alias, "git:abc")
        assert url_row.key == f"{URL}@{store.name_of_bytes(CSV)}" == f"{URL}@{url_row.digest}"
        assert f.cache.find_complete(url_row.key) is not None
        assert alias is not None and alias.digest == store.name_of_bytes(CONFIG)

        # a second start (another replica) changes nothing
        assert not migrate_to_keyed_names(f.cache.db, store)
        with f.cache.db.session() as s:
            assert s.get(StoreNaming, STEP) is not None
        assert successor(store, hashlib.sha256(CSV).hexdigest()) == store.name_of_bytes(CSV)
