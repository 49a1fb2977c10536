"""Logic more than one connector uses, kept here so it is written once: the URL form of a
checked (pinned) address, and a provider's byte stream written to a local file."""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO

from services.fetcher.connectors.base import Progress
from services.fetcher.errors import FetchFailed
from services.fetcher.ssrf import Address

__all__ = ["host_literal", "write_chunks"]


def host_literal(address: Address) -> str:
    """``address`` as a URL's host (IPv6 in brackets): how a connector names the address
    the SSRF guard checked, so no second DNS lookup is made."""
    return f"[{address}]" if address.version == 6 else str(address)


def write_chunks(
    chunks: Iterable[bytes],
    out: IO[bytes],
    progress: Progress,
    *,
    max_bytes: int | None = None,
    too_big: str = "",
) -> int:
    """Write ``chunks`` to ``out``, telling ``progress`` of each; the bytes written. Past
    ``max_bytes`` in all, FetchFailed(``too_big``) before the chunk that crosses it."""
    written = 0
    for chunk in chunks:
        if max_bytes is not None and written + len(chunk) > max_bytes:
            raise FetchFailed(too_big)
        out.write(chunk)
        written += len(chunk)
        progress(len(chunk))
    return written
