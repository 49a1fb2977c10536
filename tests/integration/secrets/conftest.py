"""Fixtures for the secrets integration tests: clients on the session's real OpenBao."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest

from shared.secrets.local import LocalOpenBao
from shared.secrets.vault import VaultClient


@pytest.fixture
def prefix() -> str:
    """A KV prefix of this test's own, so tests sharing the server never see each other."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def root_hvac(bao_server: tuple[str, str]) -> hvac.Client:
    addr, token = bao_server
    return hvac.Client(url=addr, token=token)


@pytest.fixture
def vault(bao_server: tuple[str, str], prefix: str) -> VaultClient:
    addr, token = bao_server
    client = VaultClient(addr, token=token, prefix=prefix)
    client.ensure_mounts()
    return client


@pytest.fixture(scope="module")
def local_bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalOpenBao]:
    """A LocalOpenBao under a temp data dir, started once per module and stopped after."""
    bao = LocalOpenBao(Path(tmp_path_factory.mktemp("aidp-data")) / "openbao")
    try:
        bao.ensure_running()
        yield bao
    finally:
        bao.stop()
