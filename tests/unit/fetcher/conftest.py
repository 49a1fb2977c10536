"""Fixtures for the fetcher's unit tests: local Hub and Kaggle servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.hf_server import HubServer
from tests.support.kaggle_server import KaggleServer


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer(lfs_threshold=1024) as server:
        yield server


@pytest.fixture
def kaggle() -> Iterator[KaggleServer]:
    with KaggleServer() as server:
        yield server
