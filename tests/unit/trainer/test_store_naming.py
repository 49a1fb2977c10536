"""The trainer's references move to keyed blob names: models, checkpoints, retention, runs."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest
from sqlmodel import select

from services.trainer.main import MIGRATIONS
from services.trainer.models import Checkpoint, CreatedBlob, ModelVersion, Run
from services.trainer.naming import migrate_to_keyed_names
from services.trainer.retention import prune_checkpoints
from services.trainer.staging import manifest_of
from shared.db import Database
from shared.errors import NotFound
from shared.secrets import InMemoryVault
from shared.store import ArtifactStore, Manifest, ManifestFile
from shared.store_migration import ReferenceMap
from tests.support.legacy_store import put_legacy, put_legacy_manifest

CONTENT = {"tok": b"tokenizer", "w1": b"weights step 1", "w2": b"weights step 2"}
BASE = {"config.json": b"{}", "model.bin": b"base weights"}
CSV = b"a,b\n1,2\n"
URL = "https://files.example/d.csv"


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'trainer.db'}")
    database.migrate(MIGRATIONS, service="trainer")
    return database


def _legacy_tree(store: ArtifactStore, source: str, revision: str, files: dict[str, bytes]) -> str:
    entries = [ManifestFile(p, put_legacy(store, d), len(d)) for p, d in sorted(files.items())]
    return put_legacy_manifest(store, Manifest(source, revision or entries[0].digest, entries))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_registered_model_checkpoints_and_run_inputs_load_after_migration(
    tmp_path: Path, db: Database
) -> None:
    store = ArtifactStore(tmp_path / "store", InMemoryVault())
    run_id, project_id = uuid.uuid4(), uuid.uuid4()
    step1 = _legacy_tree(store, "ckpt", "1", {"tok": CONTENT["tok"], "w": CONTENT["w1"]})
    step2 = _legacy_tree(store, "ckpt", "2", {"tok": CONTENT["tok"], "w": CONTENT["w2"]})
    model = _legacy_tree(store, "model", "v1", {"tok": CONTENT["tok"], "w": CONTENT["w2"]})
    base = _legacy_tree(store, "hf://org/m", "c" * 40, BASE)
    data = _legacy_tree(store, URL, "", {"d.csv": CSV})
    inputs = [
        {"kind": "model", "source": "hf://org/m", "resolved_revision": "c" * 40,
         "digest": base, "size_bytes": 14, "cache_key": base},
        {"kind": "dataset", "source": URL, "resolved_revision": _sha(CSV),
         "digest": _sha(CSV), "size_bytes": len(CSV), "cache_key": data},
    ]  # fmt: skip
    with db.session() as s:
        s.add(Run(run_id=run_id, project_id=project_id, state="completed", artifacts=inputs))
        s.add(Checkpoint(run_id=run_id, step=1, manifest_key=step1))
        s.add(Checkpoint(run_id=run_id, step=2, manifest_key=step2))
        lineage = {
            "model": {"source": "hf://org/m", "revision": "c" * 40, "digest": base},
            "dataset": {"source": URL, "revision": _sha(CSV), "digest": _sha(CSV)},
        }
        s.add(
            ModelVersion(
                project_id=project_id,
                run_id=run_id,
                version=1,
                task="custom",
                manifest_key=model,
                lineage=lineage,
            )
        )
        created = {step1, step2, model, *(_sha(c) for c in CONTENT.values())}
        s.add_all(CreatedBlob(digest=d) for d in created)
        s.commit()

    assert migrate_to_keyed_names(db, store)
    assert not migrate_to_keyed_names(db, store)  # once

    with db.session() as s:
        registered = s.exec(select(ModelVersion)).one()
        run = s.get(Run, run_id)
        owned = set(s.exec(select(CreatedBlob.digest)).all())
    assert run is not None and run.artifacts is not None
    on_disk = set(store.iter_digests())
    assert not on_disk & {_sha(c) for c in [*CONTENT.values(), *BASE.values(), CSV]}

    # the registered model loads, as the download and deploy paths read it
    out = store.materialize(registered.manifest_key, tmp_path / "model")
    assert {p.name: p.read_bytes() for p in out} == {"tok": CONTENT["tok"], "w": CONTENT["w2"]}
    # the run's inputs (a re-stage) and the lineage point at readable blobs
    by_kind = {a["kind"]: a for a in run.artifacts}
    assert by_kind["dataset"]["digest"] == by_kind["dataset"]["resolved_revision"]
    assert b"".join(store.read(by_kind["dataset"]["digest"])) == CSV
    base_files = store.materialize(by_kind["model"]["cache_key"], tmp_path / "base")
    assert {p.name: p.read_bytes() for p in base_files} == BASE
    assert by_kind["model"]["digest"] == by_kind["model"]["cache_key"]
    assert registered.lineage["dataset"]["digest"] == store.name_of_bytes(CSV)
    assert registered.lineage["model"]["digest"] == by_kind["model"]["cache_key"]
    # retention sees the mapped names: pruning step 1 deletes only its own weights
    assert owned <= on_disk and store.name_of_bytes(CONTENT["w1"]) in owned
    assert prune_checkpoints(db, store, run_id=run_id, keep=1) == (1, 2)  # w1 + manifest
    assert not store.has(store.name_of_bytes(CONTENT["w1"]))
    assert store.has(store.name_of_bytes(CONTENT["tok"]))
    with db.session() as s:
        (kept,) = s.exec(select(Checkpoint)).all()
    written = store.materialize(kept.manifest_key, tmp_path / "resume")
    assert {p.name: p.read_bytes() for p in written} == {"tok": CONTENT["tok"], "w": CONTENT["w2"]}


def test_a_crash_while_mapping_leaves_the_old_references_and_a_rerun_completes(
    tmp_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ArtifactStore(tmp_path / "store", InMemoryVault())
    keys = [_legacy_tree(store, "ckpt", str(i), {"w": CONTENT[f"w{i}"]}) for i in (1, 2)]
    run_id = uuid.uuid4()
    with db.session() as s:
        for step, key in zip((1, 2), keys, strict=True):
            s.add(Checkpoint(run_id=run_id, step=step, manifest_key=key))
        s.commit()

    real = ReferenceMap.manifest
    calls = 0

    def dies_on_second(self: ReferenceMap, old: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt  # the process is killed mid-transaction
        return real(self, old)

    monkeypatch.setattr(ReferenceMap, "manifest", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        migrate_to_keyed_names(db, store)
    monkeypatch.undo()
    with db.session() as s:  # rolled back: every row still names its old manifest
        assert sorted(s.exec(select(Checkpoint.manifest_key)).all()) == sorted(keys)

    assert migrate_to_keyed_names(db, ArtifactStore(tmp_path / "store", store.keys))
    with db.session() as s:
        rows = s.exec(select(Checkpoint).order_by(Checkpoint.step)).all()  # type: ignore[arg-type]
    for row, i in zip(rows, (1, 2), strict=True):
        out = store.materialize(row.manifest_key, tmp_path / f"ckpt{i}")
        assert [p.read_bytes() for p in out] == [CONTENT[f"w{i}"]]


def test_a_reference_from_an_event_published_before_the_upgrade_is_followed(
    tmp_path: Path, db: Database
) -> None:
    store = ArtifactStore(tmp_path / "store", InMemoryVault())
    old = _legacy_tree(store, "hf://org/m", "c" * 40, BASE)  # in an ArtifactsCached in flight
    migrate_to_keyed_names(db, store)
    manifest = manifest_of(store, old)
    assert {f.path for f in manifest.files} == set(BASE)
    for f in manifest.files:
        assert b"".join(store.read(f.digest)) == BASE[f.path]
    with pytest.raises(NotFound):  # a name that never existed stays not found
        manifest_of(store, "0" * 64)
