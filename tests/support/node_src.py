"""A run workspace's ``src/`` as the trainer stages it (``services.trainer.staging.
node_sources``), for tests that run the task scripts in a fresh interpreter."""

from __future__ import annotations

from pathlib import Path

from services.trainer.staging import node_sources

__all__ = ["write_node_sources"]


def write_node_sources(workspace: Path) -> Path:
    """Write the staged task scripts under ``workspace``; returns its ``src`` folder."""
    for rel, data in node_sources().items():
        path = workspace / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return workspace / "src"
