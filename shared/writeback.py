"""A file written front to back whose disk writeback starts while it is being written.

Written data sits in the page cache until ``fsync`` pushes all of it to the disk at the
end, so a writer that produces a large file slowly (encrypting and hashing as it goes)
pays for producing it and then, again, for the whole writeback. :class:`WritebackFile`
asks the kernel after every write to start writing that range out (Linux
``sync_file_range(SYNC_FILE_RANGE_WRITE)``, the same hint databases give for their
streaming writes): the disk works while the next block is produced, and the final
``fsync`` waits for the last blocks only. The hint neither waits nor promises anything;
``fsync`` is still what makes the file durable. Where the call is missing (not Linux) or
refused (a filesystem without it), it is not tried again and the file is a plain one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["WritebackFile"]

log = logging.getLogger(__name__)

_SYNC_FILE_RANGE_WRITE = 2  # <fcntl.h>: start writeback of dirty pages, do not wait


def _sync_file_range() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError, TypeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


_CALL = _sync_file_range()


class WritebackFile(io.FileIO):
    """An unbuffered binary file (``io.FileIO``) whose every ``write`` writes all of its
    bytes and then starts their writeback. Open it on a descriptor or a path like
    ``FileIO``; write front to back (the offset is counted, not asked for)."""

    def __init__(self, file: int | str, mode: str = "wb", closefd: bool = True) -> None:
        super().__init__(file, mode, closefd)
        self._offset = 0
        self._hint = _CALL

    def write(self, data: ReadableBuffer, /) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        done = 0
        while done < size:  # a raw write may be short: loop until every byte is written
            done += super().write(view[done:]) or 0
        self._start_writeback(self._offset, size)
        self._offset += size
        return size

    def _start_writeback(self, offset: int, size: int) -> None:
        if self._hint is None or size == 0:
            return
        if self._hint(self.fileno(), offset, size, _SYNC_FILE_RANGE_WRITE) != 0:
            log.debug("sync_file_range refused (errno %d): plain writes", ctypes.get_errno())
            self._hint = None
