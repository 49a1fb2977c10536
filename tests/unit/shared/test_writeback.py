"""``shared.writeback.WritebackFile``: every byte written, the writeback hint given for
exactly what was written, and a refused hint never breaks (or slows) the writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared import writeback
from shared.writeback import WritebackFile


class Hint:
    """Stands in for sync_file_range and records its calls; answers ``result``."""

    def __init__(self, result: int = 0) -> None:
        self.result = result
        self.calls: list[tuple[int, int, int]] = []

    def __call__(self, fd: int, offset: int, size: int, flags: int) -> int:
        self.calls.append((offset, size, flags))
        return self.result


def test_the_real_call_is_found_and_accepted_here(tmp_path: Path) -> None:
    assert writeback._CALL is not None
    data = os.urandom(3 << 20)
    with WritebackFile(str(tmp_path / "blob"), "wb") as out:
        out.write(data)
        assert out._hint is not None, "this filesystem refused sync_file_range"
        os.fsync(out.fileno())
    assert (tmp_path / "blob").read_bytes() == data


def test_every_write_is_whole_and_hinted_for_its_own_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hint = Hint()
    monkeypatch.setattr(writeback, "_CALL", hint)
    pieces: list[bytes | bytearray | memoryview] = [
        b"header",
        bytearray(os.urandom(1 << 20)),
        memoryview(os.urandom(70_000)),
        b"",
    ]
    fd = os.open(tmp_path / "blob", os.O_WRONLY | os.O_CREAT, 0o600)
    with WritebackFile(fd, "wb") as out:
        assert [out.write(p) for p in pieces] == [6, 1 << 20, 70_000, 0]
    assert (tmp_path / "blob").read_bytes() == b"".join(bytes(p) for p in pieces)
    assert hint.calls == [(0, 6, 2), (6, 1 << 20, 2), (6 + (1 << 20), 70_000, 2)]


def test_a_refused_hint_is_not_tried_again_and_the_file_is_still_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hint = Hint(result=-1)
    monkeypatch.setattr(writeback, "_CALL", hint)
    with WritebackFile(str(tmp_path / "blob")) as out:
        for _ in range(3):
            out.write(b"x" * 4096)
    assert len(hint.calls) == 1
    assert (tmp_path / "blob").read_bytes() == b"x" * 12288


def test_without_the_call_it_is_a_plain_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writeback, "_CALL", None)
    with WritebackFile(str(tmp_path / "blob")) as out:
        out.write(b"plain")
    assert (tmp_path / "blob").read_bytes() == b"plain"
