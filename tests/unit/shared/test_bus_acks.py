"""Batched acknowledgements (shared.bus.acks): a multiple ack never covers a delivery that
is not decided yet, and a run of decided deliveries costs one frame."""

from __future__ import annotations

import asyncio

import pytest

from shared.bus.acks import ChannelAcks


class RecordingChannel:
    """Stands in for an aiormq channel: records the ack frames written, in order."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bool]] = []

    async def basic_ack(self, tag: int, *, multiple: bool, wait: bool) -> None:
        assert wait is False
        self.frames.append((tag, multiple))


async def _turn() -> None:
    for _ in range(3):  # the flush, then the send tasks
        await asyncio.sleep(0)


async def test_a_run_of_decided_deliveries_is_one_multiple_ack() -> None:
    channel = RecordingChannel()
    acks = ChannelAcks(channel)
    for tag in (3, 1, 2, 5, 4):
        acks.ack(tag)
    await _turn()
    assert channel.frames == [(5, True)]
    assert acks.settled_through == 5


async def test_acks_above_an_undecided_delivery_go_one_by_one() -> None:
    channel = RecordingChannel()
    acks = ChannelAcks(channel)
    for tag in (2, 3, 4):  # 1 is still being handled
        acks.ack(tag)
    await _turn()
    assert channel.frames == [(2, False), (3, False), (4, False)]
    acks.ack(1)
    await _turn()
    # 2..4 are acked already: the multiple ack names 1, so it covers only 1
    assert channel.frames[-1] == (1, True)
    assert acks.settled_through == 4


async def test_a_nacked_delivery_is_passed_only_once_settled() -> None:
    channel = RecordingChannel()
    acks = ChannelAcks(channel)
    acks.ack(1)
    acks.ack(3)  # 2 is being retried (a nack after a backoff)
    await _turn()
    assert channel.frames == [(1, True), (3, False)]
    acks.settled(2)
    acks.ack(4)
    await _turn()
    assert channel.frames[-1] == (4, True)


async def test_a_gap_in_the_tags_costs_batching_not_correctness() -> None:
    channel = RecordingChannel()
    acks = ChannelAcks(channel)
    for tag in range(2, 10_003):  # tag 1 never arrives
        acks.ack(tag)
    await _turn()
    assert all(not multiple for _, multiple in channel.frames)
    assert len(channel.frames) == 10_001
    acks.ack(20_000)
    await _turn()
    assert channel.frames[-1] == (20_000, False)
    assert acks.settled_through == 0


async def test_a_closed_channel_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class Closed:
        def basic_ack(self, tag: int, *, multiple: bool, wait: bool) -> None:
            raise RuntimeError("channel closed")

    acks = ChannelAcks(Closed())
    acks.ack(1)
    await _turn()
    assert "could not acknowledge delivery 1" in caplog.text
