"""Fixtures for the crypto and artifact-store unit tests (in-memory key service)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.secrets import InMemoryVault
from shared.store import ArtifactStore


@pytest.fixture
def vault() -> InMemoryVault:
    return InMemoryVault()


@pytest.fixture
def store(tmp_path: Path, vault: InMemoryVault) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store", vault)
