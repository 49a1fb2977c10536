"""Acknowledgements sent together: one ``basic.ack`` (multiple) for a run of deliveries.

One ``basic.ack`` per message costs a frame, a write-queue hop and a drain future in
aiormq, plus a task and a timer to bound it — per message. A consumer that finishes many
deliveries at once (the gateway's group commit finishes dozens per transaction) can
instead acknowledge them with ONE ``basic.ack`` with ``multiple`` set, which the broker
applies to every unacknowledged delivery up to that tag on the channel.

Safety rests on that "every": a multiple ack may only cover tags that are all *decided*.
Delivery tags are consecutive per channel (AMQP 0-9-1), so :class:`ChannelAcks` keeps the
highest tag ``settled_through`` at and below which every delivery is decided (acked here,
or settled on its own: a nack, a reject), and sends a multiple ack only up to there. A
decided ack above it (a lower delivery is still being handled, or retried after a
backoff) goes out on its own, as before — so a slow message never holds others' acks, and
an unforeseen gap in the tags costs only the batching, never correctness.

Acks are flushed once per event-loop turn, after the handlers that decided them returned;
"acknowledged only after the handler succeeded" holds as before. A failed send (a dead
channel) is logged: the broker redelivers what was not acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

__all__ = ["ChannelAcks", "acks_for", "drain_acks"]

log = logging.getLogger(__name__)

_MAX_DECIDED = 10_000  # decided deliveries waiting above a gap before batching stops


class ChannelAcks:
    """The decided deliveries of ONE channel (tags start at 1 and rise by 1)."""

    def __init__(self, channel: Any) -> None:
        self._channel = channel  # aiormq channel: basic_ack(tag, multiple=, wait=)
        self.settled_through = 0
        self._decided: set[int] = set()  # above settled_through
        self._to_ack: list[int] = []  # decided acks not sent yet
        self._flush_scheduled = False
        self._batching = True
        self.frames_sent = 0  # metrics, tests

    def ack(self, tag: int) -> None:
        """Acknowledge delivery ``tag`` (sent at the end of this loop turn)."""
        if self._batching:
            self._decided.add(tag)
        self._to_ack.append(tag)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def settled(self, tag: int) -> None:
        """Delivery ``tag`` was settled on its own (nack, reject): a multiple ack may pass it.

        Call it only once the nack or reject is queued for writing: frames go out in
        order, so a later multiple ack cannot overtake it."""
        if self._batching:
            self._decided.add(tag)

    def _advance(self) -> None:
        while self.settled_through + 1 in self._decided:
            self.settled_through += 1
            self._decided.discard(self.settled_through)
        if len(self._decided) > _MAX_DECIDED:  # a tag never came: stop batching here
            log.warning("delivery tags of a channel have a gap: acknowledging one by one")
            self._batching = False
            self._decided.clear()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._batching:
            self._advance()
        covered = [t for t in self._to_ack if t <= self.settled_through]
        alone = [t for t in self._to_ack if t > self.settled_through]
        self._to_ack.clear()
        if covered:
            self._send(max(covered), multiple=True)
        for tag in alone:
            self._send(tag, multiple=False)

    def _send(self, tag: int, *, multiple: bool) -> None:
        self.frames_sent += 1
        try:
            # no drain future (wait=False): the frame only has to be queued for writing
            sending = self._channel.basic_ack(tag, multiple=multiple, wait=False)
        except Exception as exc:  # the channel closed: the broker redelivers
            log.warning("could not acknowledge delivery %d: %r", tag, exc)
            return
        task = asyncio.ensure_future(sending)
        _SENDING.add(task)
        task.add_done_callback(_sent)


_SENDING: set[asyncio.Future[Any]] = set()


def _sent(task: asyncio.Future[Any]) -> None:
    _SENDING.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.warning("could not acknowledge deliveries (they will be redelivered): %r", exc)


_BY_CHANNEL: weakref.WeakKeyDictionary[Any, ChannelAcks] = weakref.WeakKeyDictionary()


def acks_for(channel: Any) -> ChannelAcks:
    """The :class:`ChannelAcks` of an aiormq channel (a reconnect makes a new channel,
    whose tags start again at 1, and so a new record)."""
    found = _BY_CHANNEL.get(channel)
    if found is None:
        found = _BY_CHANNEL[channel] = ChannelAcks(channel)
    return found


async def drain_acks(timeout: float) -> None:
    """Send every ack decided so far and wait (at most ``timeout``) until they are queued
    for writing: before a connection closes, so finished work is not redelivered."""
    for acks in list(_BY_CHANNEL.values()):
        if acks._to_ack:
            acks._flush()
    if _SENDING:
        await asyncio.wait(set(_SENDING), timeout=timeout)
