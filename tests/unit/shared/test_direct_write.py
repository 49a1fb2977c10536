"""``shared.direct_write.DirectFile``: every byte written, in order, whatever the sizes of
the writes; whole aligned buffers written with O_DIRECT on this disk; a filesystem that
refuses O_DIRECT (at fcntl or at the first write), a short write and a full disk never
lose or reorder a byte."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Any

import pytest

from shared import direct_write
from shared.direct_write import STAGE, DirectFile

SIZES = [0, 1, 4095, 4096, STAGE - 1, STAGE, STAGE + 1, 3 * STAGE + 17]


def _pieces(data: bytes, step: int) -> list[bytes | bytearray | memoryview]:
    """``data`` cut every ``step`` bytes, as the kinds of buffers callers pass."""
    kinds = (bytes, bytearray, memoryview)
    return [kinds[i % 3](data[at : at + step]) for i, at in enumerate(range(0, len(data), step))]


def _is_direct(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("step", [100_003, 5 * STAGE])  # smaller and larger than a buffer
def test_every_byte_is_written_in_order(tmp_path: Path, size: int, step: int) -> None:
    data = os.urandom(size)
    with DirectFile(str(tmp_path / "blob"), "wb") as out:
        assert out.direct, "this disk (ext4) takes O_DIRECT"
        for piece in _pieces(data, step):
            assert out.write(piece) == len(piece)
        out.flush()
        os.fsync(out.fileno())
    assert (tmp_path / "blob").read_bytes() == data


def test_whole_buffers_go_direct_and_the_tail_through_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[tuple[int, bool]] = []
    real_write = os.write

    def recording_write(fd: int, data: Any) -> int:
        writes.append((len(data), _is_direct(fd)))
        return real_write(fd, data)

    monkeypatch.setattr(direct_write.os, "write", recording_write)
    data = os.urandom(2 * STAGE + 10)
    fd = os.open(tmp_path / "blob", os.O_WRONLY | os.O_CREAT, 0o600)
    with DirectFile(fd, "wb") as out:
        out.write(data)
        assert writes == [(STAGE, True), (STAGE, True)]
        out.flush()
        assert not _is_direct(out.fileno()) and not out.direct
    assert (tmp_path / "blob").read_bytes() == data


def test_a_filesystem_refusing_o_direct_at_fcntl_gets_plain_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fcntl = fcntl.fcntl

    def refusing(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_fcntl(fd, cmd, arg)

    monkeypatch.setattr(direct_write.fcntl, "fcntl", refusing)
    data = os.urandom(STAGE + 5)
    with DirectFile(str(tmp_path / "blob"), "wb") as out:
        assert not out.direct
        out.write(data)
    assert (tmp_path / "blob").read_bytes() == data


def test_a_direct_write_refused_midway_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first direct write is refused (a filesystem that takes the flag, not the write):
    that buffer and everything after go through the cache, in order."""
    real_write = os.write

    def refusing(fd: int, data: Any) -> int:
        if _is_direct(fd):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(direct_write.os, "write", refusing)
    data = os.urandom(3 * STAGE + 100)
    with DirectFile(str(tmp_path / "blob"), "wb") as out:
        for piece in _pieces(data, 700_001):
            out.write(piece)
        assert not out.direct
    assert (tmp_path / "blob").read_bytes() == data


def test_a_short_direct_write_goes_on_through_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def short(fd: int, data: Any) -> int:
        if _is_direct(fd):
            return real_write(fd, memoryview(data)[: STAGE // 2])
        return real_write(fd, data)

    monkeypatch.setattr(direct_write.os, "write", short)
    data = os.urandom(2 * STAGE + 3)
    with DirectFile(str(tmp_path / "blob"), "wb") as out:
        out.write(data)
    assert (tmp_path / "blob").read_bytes() == data


def test_a_full_disk_is_an_error_not_a_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(direct_write.os, "write", full)
    out = DirectFile(str(tmp_path / "blob"), "wb")
    with pytest.raises(OSError) as raised:
        out.write(os.urandom(STAGE))
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.undo()
    out.close()


def test_a_failed_write_leaves_the_staged_bytes_unwritten(tmp_path: Path) -> None:
    """Leaving the block on an error writes nothing more: the caller throws the file away,
    and a second failure (a full disk) would hide the first."""
    with pytest.raises(RuntimeError, match="encryption failed"):
        with DirectFile(str(tmp_path / "blob"), "wb") as out:
            out.write(b"x" * 1000)
            raise RuntimeError("encryption failed")
    assert out.closed
    assert (tmp_path / "blob").read_bytes() == b""
