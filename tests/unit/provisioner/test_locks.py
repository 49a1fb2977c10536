"""The lock store keeps the first lock of a key, also when two resolutions race."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session

from services.provisioner.envs.builder import LockResult
from services.provisioner.locks import LockStore
from services.provisioner.main import MIGRATIONS
from shared.db import Database


@pytest.fixture
def store(tmp_path: Path) -> LockStore:
    db = Database(f"sqlite:///{tmp_path / 'locks.db'}")
    db.migrate(MIGRATIONS, service="provisioner")
    return LockStore(db)


def test_the_first_lock_of_a_key_is_kept(store: LockStore) -> None:
    store.save(LockResult("k" * 64, "1" * 64, "torch==2.13.0"))
    store.save(LockResult("k" * 64, "2" * 64, "torch==2.13.1"))
    assert store.load("k" * 64) == LockResult("k" * 64, "1" * 64, "torch==2.13.0")
    assert store.load("x" * 64) is None


def test_a_concurrent_insert_of_the_same_key_is_not_an_error(
    store: LockStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another replica stored the key between this one's look-up and its insert: the
    look-up saw nothing, the insert meets the primary key."""
    store.save(LockResult("k" * 64, "1" * 64, "first"))
    with monkeypatch.context() as patched:
        patched.setattr(Session, "get", lambda *_args, **_kwargs: None)
        store.save(LockResult("k" * 64, "2" * 64, "second"))
    assert store.load("k" * 64) == LockResult("k" * 64, "1" * 64, "first")
