"""settle_heap: the start-up heap is frozen out of the collector's passes, which run less
often; collection still works for what comes after."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from shared.service.gc_tuning import GEN0_THRESHOLD, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.mark.usefixtures("restored_gc")
def test_the_start_up_heap_is_frozen_and_passes_are_spaced_out() -> None:
    _, gen1, gen2 = gc.get_threshold()
    settle_heap()
    assert gc.get_freeze_count() > 1000  # the interpreter's and the libraries' objects
    assert gc.get_threshold() == (GEN0_THRESHOLD, gen1, gen2)


@pytest.mark.usefixtures("restored_gc")
def test_cycles_made_afterwards_are_still_collected() -> None:
    settle_heap()
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None
