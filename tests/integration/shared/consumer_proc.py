"""A consumer process for the crash test: ``python -m ... URL QUEUE TYPE MARKER``.

It subscribes ``QUEUE`` (bound to ``TYPE``) on the RabbitMQ bus, writes ``ready`` to the
MARKER file, and on each delivery appends the envelope id and then hangs inside the
handler, so the test can SIGKILL it mid-message.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from shared.bus.rabbit import RabbitBus
from shared.events import Envelope


async def main(url: str, queue: str, event_type: str, marker: Path) -> None:
    bus = RabbitBus(url)
    await bus.connect()

    async def hang(envelope: Envelope) -> None:
        with marker.open("a") as out:
            out.write(f"got {envelope.id}\n")
        await asyncio.Event().wait()

    await bus.subscribe(queue, [event_type], hang, prefetch=1)
    with marker.open("a") as out:
        out.write("ready\n")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])))
