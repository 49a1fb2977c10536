"""``/api/projects/{id}/webhooks``: signed notifications of run outcomes (editors).

See :mod:`services.gateway.webhooks` for what is sent and how it is signed.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.gateway import webhooks as service
from services.gateway.deps import GatewayDep, ProjectEditor
from services.gateway.errors import responses
from services.gateway.webhook_models import Webhook, WebhookDelivery
from shared.db import run_sync

__all__ = ["router"]

router = APIRouter(prefix="/api/projects/{project_id}/webhooks", tags=["webhooks"])

Kind = Literal["run.succeeded", "run.failed", "run.cancelled", "model.deployed"]
_ALL_KINDS: list[Kind] = ["run.succeeded", "run.failed", "run.cancelled", "model.deployed"]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=2000, description="https:// receiver URL.")
    format: Literal["json", "slack"] = Field(
        "json", description='json: the event object; slack: {"text": ...} for Slack.'
    )
    events: list[Kind] = Field(
        default_factory=lambda: list(_ALL_KINDS),
        min_length=1,
        max_length=len(service.KINDS),
        description="What to notify (default: all).",
    )


class WebhookOut(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    url: str = Field(description="The receiver, masked past the start of its path.")
    format: str
    events: list[str]
    created_by: uuid.UUID
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="Signing secret, shown once: verify X-Aidp-Signature with it.")


class DeliveryOut(BaseModel):
    id: uuid.UUID
    webhook_id: uuid.UUID
    event_id: uuid.UUID
    kind: str
    run_id: uuid.UUID | None
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    body: dict[str, Any]


def _out(hook: Webhook, key: service.WebhookKey) -> dict[str, Any]:
    try:
        url = service.masked_url(key.open(hook.url, webhook_id=hook.id, field="url"))
    except Exception:  # a key that no longer opens it: still listed, to be removed
        url = "(unreadable)"
    return {
        "id": hook.id,
        "project_id": hook.project_id,
        "url": url,
        "format": hook.format,
        "events": list(hook.events),
        "created_by": hook.created_by,
        "created_at": hook.created_at,
    }


def _delivery(d: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        webhook_id=d.webhook_id,
        event_id=d.event_id,
        kind=d.kind,
        run_id=d.run_id,
        status=d.status,  # type: ignore[arg-type]
        attempts=d.attempts,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
        body=d.body,
    )


def _key(request: Request) -> service.WebhookKey:
    return request.app.state.webhook_key  # type: ignore[no-any-return]


@router.post("", status_code=201, responses=responses(403, 404))
async def create_webhook(
    body: WebhookIn, access: ProjectEditor, gateway: GatewayDep, request: Request
) -> WebhookCreated:
    """Register a receiver (editor); the answer holds its signing secret, shown only now.
    422 when the URL is not https or its host resolves to an internal address."""
    settings = gateway.settings
    await asyncio.to_thread(
        service.check_webhook_url,
        body.url,
        allow_private=settings.webhook_allow_private,
        allow_hosts=settings.webhook_allow_hosts,
    )
    hook, secret = await run_sync(
        service.create_webhook,
        gateway.runtime,
        _key(request),
        project_id=access.project.id,
        user_id=access.identity.user_id,
        url=body.url,
        format=body.format,
        events=body.events,
    )
    return WebhookCreated(**_out(hook, _key(request)), secret=secret)


@router.get("", responses=responses(403, 404))
def list_webhooks(access: ProjectEditor, gateway: GatewayDep, request: Request) -> list[WebhookOut]:
    """The project's webhooks (editor): URLs masked past the start of their path (they can
    hold a token); the signing secrets are never shown again."""
    hooks = service.list_webhooks(gateway.runtime, project_id=access.project.id)
    return [WebhookOut(**_out(h, _key(request))) for h in hooks]


@router.delete(
    "/{webhook_id}", status_code=204, response_class=Response, responses=responses(403, 404)
)
def delete_webhook(webhook_id: uuid.UUID, access: ProjectEditor, gateway: GatewayDep) -> Response:
    """Remove a webhook and its delivery log (editor)."""
    service.delete_webhook(gateway.runtime, project_id=access.project.id, webhook_id=webhook_id)
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", responses=responses(403, 404))
def list_deliveries(
    webhook_id: uuid.UUID,
    access: ProjectEditor,
    gateway: GatewayDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeliveryOut]:
    """The webhook's delivery log, newest first: status, tries, last answer (editor)."""
    rows = service.list_deliveries(
        gateway.runtime, project_id=access.project.id, webhook_id=webhook_id, limit=limit
    )
    return [_delivery(d) for d in rows]
