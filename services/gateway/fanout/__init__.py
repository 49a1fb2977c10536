"""Fan-out of stored events to the WebSocket clients of this gateway process.

Only stored events are sent, each with its log ``seq``, so every client sees one order.
Two paths bring new events to a process's :class:`Hub`:

- the event-log writer of this process calls :meth:`Hub.dispatch` right after its commit;
- :meth:`Hub.poll_forever` reads ``last_seq`` of the watched projects every
  ``poll_interval`` and dispatches events stored by other gateway processes (the shared
  ``gateway`` queue has competing consumers, so another replica may be the writer).

The hub hands frames on in seq order without gaps, per project: with several replicas
each stores only some of a project's events, so a frame of this process may follow seqs
another replica stored. Such a frame is held while ONE read of the log (on the event
loop, ``shared.db.aio``) fetches the missing seqs for every connection of the process —
they are committed already, since a seq is taken under the project row's lock held until
commit — and the poller is left with projects this process stores nothing of. Each
:class:`Connection` also keeps, per subscription, the last seq it sent: a frame at or
below it is a duplicate and skipped; one beyond the next seq (a subscription's start)
means the gap is read from the log first. So the switch from backfill to live, two
writers and the poller can neither lose nor repeat an event.

Cost at volume (issue 14): the hub hands each connection all frames of one loop turn at
once (:meth:`Hub.dispatch` only collects; one flush per turn), each frame's text is built
once for every client, and a connection's sender writes everything queued in one go —
one WebSocket message per frame, or ONE ``{"type":"batch","frames":[...]}`` message for a
client that asked for batching. Sends are awaited (socket back-pressure), with no timer
per frame: each connection has a bounded send queue, and a client whose queue overflows,
or whose socket has not taken a send for ``send_timeout`` seconds (checked by the hub's
poll loop), is dropped with close 1013 and resumes from its last seq; it never stalls the
writer or other clients. A subscription may ask to coalesce ``TrainingProgress``: then
only the latest progress of a run still waiting in the queue is sent.

Modules: ``frames`` (a loop turn's frames built once; batch messages), ``queue_items`` (what
a connection's queue holds; :class:`Subscription`), ``connection`` (one client: its queue
and the sender that drains it), ``hub`` (the per-process registry, dispatch, gap reads and
the poller).
"""

from services.gateway.fanout.connection import Connection
from services.gateway.fanout.frames import batch_text
from services.gateway.fanout.hub import Hub
from services.gateway.fanout.queue_items import Subscription

__all__ = ["Connection", "Hub", "Subscription", "batch_text"]
