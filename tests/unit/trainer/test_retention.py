"""Checkpoint retention: the latest K per run stay; only unshared blobs the trainer made go."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlmodel import select

from services.trainer.main import MIGRATIONS
from services.trainer.models import Checkpoint, ModelVersion
from services.trainer.retention import prune_checkpoints, record_created
from shared.db import Database
from shared.secrets import InMemoryVault
from shared.store import ArtifactStore, Manifest, ManifestFile


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'trainer.db'}")
    database.migrate(MIGRATIONS, service="trainer")
    return database


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store", InMemoryVault())


class Blobs:
    """Puts named contents in the store and remembers which ones the trainer 'created'."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self.digest: dict[str, str] = {}

    def put(self, name: str, content: bytes) -> str:
        self.digest[name], _ = self.store.put_stream([content])
        return self.digest[name]

    def manifest(self, *names: str, revision: str) -> str:
        files = [ManifestFile(path=n, digest=self.digest[n], size=1) for n in names]
        return self.store.put_manifest(Manifest(source="t", revision=revision, files=files))


def add_checkpoint(db: Database, run_id: uuid.UUID, step: int, key: str, created: set[str]) -> None:
    with db.session() as session:
        session.add(Checkpoint(run_id=run_id, step=step, manifest_key=key))
        record_created(session, created)
        session.commit()


def steps_of(db: Database, run_id: uuid.UUID) -> list[int]:
    with db.session() as session:
        rows = session.exec(select(Checkpoint).where(Checkpoint.run_id == run_id)).all()
        return sorted(r.step for r in rows)


def test_keeps_latest_and_deletes_only_unshared_blobs_the_trainer_created(
    db: Database, store: ArtifactStore
) -> None:
    b = Blobs(store)
    run, other_run = uuid.uuid4(), uuid.uuid4()
    foreign = b.put("foreign", b"a fetched tokenizer")  # in the store before: not ours
    for name in ("w10", "w20", "w30", "opt-shared", "w-other", "w-model"):
        b.put(name, name.encode() * 10)
    k10 = b.manifest("w10", "opt-shared", "foreign", revision="10")
    k20 = b.manifest("w20", "opt-shared", "w-model", revision="20")
    k30 = b.manifest("w30", "opt-shared", revision="30")
    k_other = b.manifest("w-other", "w10", revision="other")  # another run shares w10
    k_model = b.manifest("w-model", revision="model")
    ours = {b.digest[n] for n in ("w10", "w20", "w30", "opt-shared", "w-other", "w-model")}
    add_checkpoint(db, run, 10, k10, {b.digest["w10"], b.digest["opt-shared"], k10})
    add_checkpoint(db, run, 20, k20, {b.digest["w20"], b.digest["w-model"], k20})
    add_checkpoint(db, run, 30, k30, {b.digest["w30"], k30})
    add_checkpoint(db, other_run, 5, k_other, {b.digest["w-other"], k_other})
    with db.session() as session:
        session.add(
            ModelVersion(
                project_id=uuid.uuid4(), run_id=other_run, version=1, task="x", manifest_key=k_model
            )
        )
        session.commit()

    assert prune_checkpoints(db, store, run_id=run, keep=1) == (2, 3)  # k10, k20, w20
    assert steps_of(db, run) == [30] and steps_of(db, other_run) == [5]
    # k10 and k20 themselves went; w20 (only in k20) went; w10 stays (other run), so do
    # opt-shared (kept checkpoint), w-model (a registered model) and the foreign blob
    assert not store.has(k10) and not store.has(k20) and not store.has(b.digest["w20"])
    for name in ("w10", "opt-shared", "w-model", "foreign", "w30", "w-other"):
        assert store.has(b.digest[name]), name
    assert prune_checkpoints(db, store, run_id=run, keep=1) == (0, 0)  # nothing more to drop

    dropped, deleted = prune_checkpoints(db, store, run_id=run, keep=0)  # model registered
    assert (dropped, deleted) == (1, 3)  # k30, w30, opt-shared
    assert steps_of(db, run) == []
    assert store.has(foreign) and store.has(b.digest["w10"]) and store.has(k_other)
    remaining = set(store.iter_digests())
    assert ours - remaining == {b.digest[n] for n in ("w20", "w30", "opt-shared")}
