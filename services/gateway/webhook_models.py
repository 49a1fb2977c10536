"""Tables of project webhooks and their delivery log (names prefixed ``gateway_``).

A delivery row is the webhook's outbox: it is written in the transaction that stores the
status event it reports (so it survives a restart), then sent by
:class:`services.gateway.webhook_sender.WebhookSender` until it succeeds or runs out of
tries. The signing secret is stored encrypted (``secret_sealed``, AES-256-GCM under the
platform's webhook key in Vault), never in plaintext.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.service.clock import utcnow

__all__ = ["Webhook", "WebhookDelivery"]


class Webhook(SQLModel, table=True):
    __tablename__ = "gateway_webhooks"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    project_id: uuid.UUID = Field(index=True)
    url: str = Field(sa_column=Column(Text, nullable=False))
    format: str = Field(default="json", max_length=16)
    events: list[str] = Field(sa_column=Column(JSON, nullable=False))
    secret_sealed: str = Field(sa_column=Column(Text, nullable=False))
    created_by: uuid.UUID
    created_at: datetime = Field(default_factory=utcnow)


class WebhookDelivery(SQLModel, table=True):
    """One notification to one webhook: ``pending`` until ``delivered`` or ``failed``."""

    __tablename__ = "gateway_webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_id", "kind", name="uq_gateway_webhook_delivery"),
        Index("ix_gateway_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_gateway_webhook_deliveries_webhook", "webhook_id", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    webhook_id: uuid.UUID
    project_id: uuid.UUID
    event_id: uuid.UUID
    kind: str = Field(max_length=32)
    run_id: uuid.UUID | None = None
    body: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None
