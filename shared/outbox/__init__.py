"""Transactional outbox and inbox.

Producer side: :func:`add_to_outbox` stages an envelope in the caller's session, so the
state change and its event commit together (or not at all). :class:`OutboxRelay` publishes
committed rows with many confirms in flight and marks them sent; several relays can run at
once (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), and a crash between publish and mark
re-publishes the row: a duplicate, never a loss.

Consumer side: :func:`claim_inbox` records an event id in the same session as the
handler's effect; it returns False when the event was already handled, so a redelivered
message is acknowledged without repeating its effect.
"""

from shared.outbox.relay import OutboxRelay
from shared.outbox.rows import InboxRow, OutboxRow, add_to_outbox, claim_inbox

__all__ = ["InboxRow", "OutboxRelay", "OutboxRow", "add_to_outbox", "claim_inbox"]
