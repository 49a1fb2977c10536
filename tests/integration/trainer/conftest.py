"""Fixtures shared with the unit tests of the trainer (tiny model + dataset files)."""

from tests.unit.trainer.conftest import tiny_files

__all__ = ["tiny_files"]
