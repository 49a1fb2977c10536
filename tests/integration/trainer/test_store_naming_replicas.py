"""Replicas starting together move an old store and database to keyed names exactly once.

Mapping a reference twice would name a blob that does not exist (a keyed name is not an old
name), so on real PostgreSQL two trainer replicas run the migration at the same moment: one
maps, the other waits for its marker row and skips; every reference then loads.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from services.trainer.main import MIGRATIONS
from services.trainer.models import Checkpoint, ModelVersion
from services.trainer.naming import migrate_to_keyed_names
from shared.db import Database
from shared.secrets import InMemoryVault
from shared.store import ArtifactStore, Manifest, ManifestFile
from tests.support.legacy_store import put_legacy, put_legacy_manifest

pytestmark = pytest.mark.integration

FILES = {f"shard-{i}.bin": f"weights {i}".encode() * 500 for i in range(20)}


@pytest.fixture
def db(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url)
    database.migrate(MIGRATIONS, service="trainer")
    yield database
    database.dispose()


def test_two_replicas_migrate_at_once_and_map_each_reference_once(
    tmp_path: Path, db: Database
) -> None:
    vault = InMemoryVault()
    store = ArtifactStore(tmp_path / "store", vault)
    entries = [ManifestFile(p, put_legacy(store, d), len(d)) for p, d in sorted(FILES.items())]
    old_key = put_legacy_manifest(store, Manifest("model", "v1", entries))
    run_id = uuid.uuid4()
    with db.session() as s:
        s.add(Checkpoint(run_id=run_id, step=1, manifest_key=old_key))
        s.add(
            ModelVersion(
                project_id=uuid.uuid4(), run_id=run_id, version=1, task="t", manifest_key=old_key
            )
        )
        s.commit()

    results: list[bool] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def replica() -> None:
        try:
            mine = ArtifactStore(tmp_path / "store", vault)  # each replica its own store object
            start.wait(10)
            results.append(migrate_to_keyed_names(db, mine))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(results) == [False, True]  # one mapped, the other found it done

    with db.session() as s:
        keys = {s.exec(select(Checkpoint.manifest_key)).one()}
        keys.add(s.exec(select(ModelVersion.manifest_key)).one())
    (new_key,) = keys
    assert new_key != old_key
    written = store.materialize(new_key, tmp_path / "out")
    assert {p.name: p.read_bytes() for p in written} == FILES
