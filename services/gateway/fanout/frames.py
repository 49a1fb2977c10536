"""Frames prepared for sending: built once per loop turn for every connection, batched.

A batch message stays well under clients' default 1 MiB message limit: at most
``BATCH_FRAMES`` frames and about ``BATCH_BYTES`` of text."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from services.gateway.eventlog import Frame

__all__ = ["BATCH_BYTES", "BATCH_FRAMES", "PAGE", "FrameRun", "batch_text", "chunks"]

PAGE = 500  # events per read of the log (a gap, a catch-up, a poll)
BATCH_FRAMES = 512
BATCH_BYTES = 256 * 1024


def batch_text(texts: list[str]) -> str:
    """Several server messages as ONE message: ``{"type":"batch","frames":[...]}``.

    Each text is a JSON object already, so the batch is joined, never re-serialised."""
    return '{"type":"batch","frames":[' + ",".join(texts) + "]}"


class FrameRun:
    """Frames of one project handed on together (one loop turn of the hub), shared by every
    connection: the texts, their size, and the batch message of all of them are built once."""

    __slots__ = ("_joined", "contiguous", "first", "frames", "last", "size", "texts")

    def __init__(self, frames: Sequence[Frame]) -> None:
        self.frames = frames
        self.texts = [f.text for f in frames]
        self.size = sum(map(len, self.texts))
        self.first, self.last = frames[0].seq, frames[-1].seq
        self.contiguous = all(b.seq == a.seq + 1 for a, b in zip(frames, frames[1:], strict=False))
        self._joined: str | None = None

    @property
    def joined(self) -> str:
        if self._joined is None:
            self._joined = batch_text(self.texts)
        return self._joined


def chunks(texts: list[str]) -> Iterator[list[str]]:
    """``texts`` in runs that fit one batch message (frame count and size)."""
    chunk: list[str] = []
    size = 0
    for text in texts:
        if chunk and (len(chunk) >= BATCH_FRAMES or size + len(text) > BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(text)
        size += len(text)
    if chunk:
        yield chunk
