"""Project webhooks: signed notifications of run outcomes (issue 16 item 7).

A project's editors register HTTPS endpoints (``POST /api/projects/{id}/webhooks``) for
some of :data:`KINDS`. When the gateway stores the status event that ends a run (or
deploys a model), :func:`stage_deliveries` writes one delivery row per matching webhook in
the SAME transaction (an outbox: nothing is lost across restarts, nothing is sent twice
for one event); :mod:`services.gateway.webhook_sender` sends them with retries.

Each request is a POST of JSON with::

    X-Aidp-Event: run.failed
    X-Aidp-Delivery: <delivery id>          (the same on every retry: receivers dedupe on it)
    X-Aidp-Timestamp: <unix seconds>
    X-Aidp-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>

The secret is generated here, shown once in the create answer, and stored sealed
(AES-256-GCM, the webhook id as associated data) under the platform's webhook key, a
platform secret in Vault (``platform/webhook-key``, created once, never replaced). The URL
is sealed the same way (a Slack URL is a credential) and listed masked
(:func:`masked_url`).
``format: slack`` sends ``{"text": "..."}`` (a Slack incoming-webhook payload) instead.

URLs follow the rules of https:// dataset sources (:mod:`shared.netguard`): https only, and
every address the host resolves to must be public, checked when the webhook is created and
again (pinned) for every delivery; ``AIDP_WEBHOOK_ALLOW_PRIVATE`` (dev/test only) lets
http:// and loopback/private addresses through, ``AIDP_WEBHOOK_ALLOW_HOSTS`` named ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, select
from sqlmodel import Session, col

from services.gateway.models import Project, Run
from services.gateway.webhook_models import Webhook, WebhookDelivery
from shared.errors import InvalidInput, NotFound
from shared.events import Envelope
from shared.netguard import Address, allowed, internal
from shared.runtime import ServiceRuntime
from shared.secrets.base import SecretStore

__all__ = [
    "FORMATS",
    "KINDS",
    "WEBHOOK_KEY_SECRET",
    "WebhookKey",
    "check_webhook_url",
    "create_webhook",
    "delete_webhook",
    "list_deliveries",
    "list_webhooks",
    "masked_url",
    "notification_kind",
    "sign",
    "stage_deliveries",
]

#: What a webhook can be told: a run ended well, failed, was cancelled; a model was deployed.
KINDS = ("run.succeeded", "run.failed", "run.cancelled", "model.deployed")
FORMATS = ("json", "slack")
#: Platform secret (Vault KV) holding the key that seals webhook secrets.
WEBHOOK_KEY_SECRET = "webhook-key"
MAX_WEBHOOKS_PER_PROJECT = 20


class WebhookKey:
    """The platform's webhook-sealing key, loaded (or created once) on first use."""

    def __init__(
        self, secrets_store: Callable[[], SecretStore], *, secret_name: str = WEBHOOK_KEY_SECRET
    ) -> None:
        self._secrets = secrets_store  # called on first use (the store opens in the lifespan)
        self._name = secret_name
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WebhookKey(secret={self._name!r}, key='***')"

    def _load(self) -> bytes:
        with self._lock:
            if self._key is None:
                store = self._secrets()
                stored = store.get_platform_secret(self._name)
                if stored is None:
                    fresh = base64.b64encode(os.urandom(32)).decode()
                    # create-only: a concurrent first start may win; all then read its key
                    store.create_platform_secret(self._name, {"key": fresh})
                    stored = store.get_platform_secret(self._name)
                if not stored or "key" not in stored:
                    raise RuntimeError(f"platform secret {self._name!r} holds no key")
                key = base64.b64decode(stored["key"])
                if len(key) != 32:
                    raise RuntimeError(f"platform secret {self._name!r} is not a 32-byte key")
                self._key = key
            return self._key

    def seal(self, plaintext: str, *, webhook_id: uuid.UUID, field: str = "secret") -> str:
        """AES-256-GCM of ``plaintext``; the webhook id and the field are associated data
        (a sealed value cannot be moved to another webhook or field)."""
        nonce = os.urandom(12)
        aad = webhook_id.bytes + field.encode()
        sealed = AESGCM(self._load()).encrypt(nonce, plaintext.encode(), aad)
        return "v1:" + base64.b64encode(nonce + sealed).decode()

    def open(self, sealed: str, *, webhook_id: uuid.UUID, field: str = "secret") -> str:
        if not sealed.startswith("v1:"):
            raise ValueError("unknown sealed-value version")
        raw = base64.b64decode(sealed[3:])
        aad = webhook_id.bytes + field.encode()
        return AESGCM(self._load()).decrypt(raw[:12], raw[12:], aad).decode()


def masked_url(url: str) -> str:
    """``url`` as shown in lists: scheme, host and port, and only the start of the path
    (the rest may be a token, as in Slack's incoming-webhook URLs)."""
    parts = urlsplit(url)
    path = parts.path or "/"
    shown = path if len(path) <= 12 else path[:12] + "…"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{shown}"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``"<timestamp>." + body`` under ``secret``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


# --- URLs ---------------------------------------------------------------------------------


def check_webhook_url(
    url: str, *, allow_private: bool, allow_hosts: Iterable[str] = ()
) -> list[Address]:
    """Raise ``InvalidInput`` unless ``url`` may receive webhooks; return the checked
    addresses of its host (the sender connects to one of those: DNS pinning)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput("url: not a valid URL") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise InvalidInput(f"url: only {' or '.join(schemes)} URLs may receive webhooks")
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidInput("url: it names no host")
    if parts.username or parts.password:
        raise InvalidInput("url: user info is not allowed (use the signing secret)")
    default_port = 443 if parts.scheme == "https" else 80
    try:
        infos = socket.getaddrinfo(host, port or default_port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise InvalidInput(f"url: the host {host} does not resolve") from None
    checked: list[Address] = []
    allow = list(allow_hosts)
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if internal(address) and not allow_private and not allowed(host, address, allow):
            raise InvalidInput(
                f"url: {host} resolves to the internal address {address}; webhooks reach"
                " public hosts only unless an administrator adds the host to"
                " AIDP_WEBHOOK_ALLOW_HOSTS"
            )
        if address not in checked:
            checked.append(address)
    if not checked:
        raise InvalidInput(f"url: the host {host} does not resolve")
    return checked


# --- registry ------------------------------------------------------------------------------


def create_webhook(
    runtime: ServiceRuntime,
    key: WebhookKey,
    *,
    project_id: uuid.UUID,
    user_id: uuid.UUID,
    url: str,
    format: str,
    events: Sequence[str],
) -> tuple[Webhook, str]:
    """Store a webhook with a fresh secret; returns it and the secret (shown once)."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    hook = Webhook(
        project_id=project_id,
        url="",
        format=format,
        events=sorted(set(events)),
        secret_sealed="",
        created_by=user_id,
    )
    hook.secret_sealed = key.seal(secret, webhook_id=hook.id)
    # a receiver URL can be a credential itself (Slack's carry their token in the path)
    hook.url = key.seal(url, webhook_id=hook.id, field="url")
    with runtime.db.session() as session:
        count = len(
            session.execute(
                select(col(Webhook.id)).where(col(Webhook.project_id) == project_id)
            ).all()
        )
        if count >= MAX_WEBHOOKS_PER_PROJECT:
            raise InvalidInput(f"a project has at most {MAX_WEBHOOKS_PER_PROJECT} webhooks")
        session.add(hook)
        session.commit()
        session.refresh(hook)
    return hook, secret


def list_webhooks(runtime: ServiceRuntime, *, project_id: uuid.UUID) -> list[Webhook]:
    with runtime.db.session() as session:
        return list(
            session.execute(
                select(Webhook)
                .where(col(Webhook.project_id) == project_id)
                .order_by(col(Webhook.created_at))
            ).scalars()
        )


def _hook(session: Session, project_id: uuid.UUID, webhook_id: uuid.UUID) -> Webhook:
    hook = session.get(Webhook, webhook_id)
    if hook is None or hook.project_id != project_id:
        raise NotFound("webhook not found")
    return hook


def delete_webhook(
    runtime: ServiceRuntime, *, project_id: uuid.UUID, webhook_id: uuid.UUID
) -> None:
    """Remove the webhook and its delivery log (pending deliveries are not sent)."""
    with runtime.db.session() as session:
        hook = _hook(session, project_id, webhook_id)
        session.execute(
            delete(WebhookDelivery).where(col(WebhookDelivery.webhook_id) == webhook_id)
        )
        session.delete(hook)
        session.commit()


def delete_project_webhooks(session: Session, project_id: uuid.UUID) -> None:
    """Inside a project's deletion: drop its webhooks and deliveries."""
    for table in (WebhookDelivery, Webhook):
        session.execute(delete(table).where(col(table.project_id) == project_id))  # type: ignore[attr-defined]


def list_deliveries(
    runtime: ServiceRuntime, *, project_id: uuid.UUID, webhook_id: uuid.UUID, limit: int = 100
) -> list[WebhookDelivery]:
    """The webhook's deliveries, newest first."""
    with runtime.db.session() as session:
        _hook(session, project_id, webhook_id)
        return list(
            session.execute(
                select(WebhookDelivery)
                .where(col(WebhookDelivery.webhook_id) == webhook_id)
                .order_by(col(WebhookDelivery.created_at).desc())
                .limit(limit)
            ).scalars()
        )


# --- staging (inside the event log's transaction) -----------------------------------------


def notification_kind(envelope: Envelope, change: dict[str, Any]) -> str | None:
    """What a stored event tells webhooks, given the run change it made (None: nothing)."""
    if envelope.type == "ModelDeployed":
        return "model.deployed"
    status = change.get("status")
    if envelope.type == "TrainingCompleted" and status in ("succeeded", "deploying"):
        return "run.succeeded"
    if status == "failed":
        return "run.failed"
    if status == "cancelled":
        return "run.cancelled"
    return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _body(envelope: Envelope, kind: str, project: Project, run: Run | None) -> dict[str, Any]:
    run_part = None
    if run is not None:
        run_part = {
            "id": str(run.id),
            "number": run.number,
            "status": run.status,
            "error": run.error,
            "model_version": run.model_version,
            "deployment_id": str(run.deployment_id) if run.deployment_id else None,
            "endpoint": run.endpoint,
            "finished_at": _iso(run.finished_at),
        }
    payload = envelope.payload if isinstance(envelope.payload, dict) else {}
    if kind == "model.deployed" and run_part is not None:
        run_part["deployment_id"] = payload.get("deployment_id") or run_part["deployment_id"]
        run_part["endpoint"] = payload.get("endpoint") or run_part["endpoint"]
    return {
        "type": kind,
        "event_id": str(envelope.id),
        "occurred_at": _iso(envelope.occurred_at),
        "project": {"id": str(project.id), "name": project.name},
        "run": run_part,
    }


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(body: dict[str, Any]) -> str:
    """One line for a Slack channel (control characters dropped, Slack markup escaped)."""
    project = _slack_escape(str(body["project"]["name"]))
    run = body.get("run") or {}
    number = run.get("number")
    what = {
        "run.succeeded": "succeeded",
        "run.failed": "failed",
        "run.cancelled": "was cancelled",
        "model.deployed": "was deployed",
    }.get(body["type"], body["type"])
    text = f"aidp: project *{project}* run #{number} {what}"
    if body["type"] == "run.failed" and run.get("error"):
        text += ": " + _slack_escape(str(run["error"])[:500])
    if body["type"] == "model.deployed" and run.get("endpoint"):
        text += f" (endpoint {_slack_escape(str(run['endpoint']))})"
    return "".join(c for c in text if c.isprintable())


def stage_deliveries(session: Session, items: Sequence[tuple[Envelope, str]]) -> None:
    """Write a pending delivery for each (event, kind) to each project webhook that asked
    for the kind; in the caller's transaction (the event's own)."""
    for envelope, kind in items:
        project_id = envelope.project_id
        if project_id is None:
            continue
        hooks = [
            h
            for h in session.execute(
                select(Webhook).where(col(Webhook.project_id) == project_id)
            ).scalars()
            if kind in (h.events or [])
        ]
        if not hooks:
            continue
        project = session.get(Project, project_id)
        if project is None:
            continue
        run = session.get(Run, envelope.run_id) if envelope.run_id is not None else None
        if run is not None:
            session.refresh(run)  # the run update of this transaction
        body = _body(envelope, kind, project, run)
        for hook in hooks:
            session.add(
                WebhookDelivery(
                    webhook_id=hook.id,
                    project_id=project_id,
                    event_id=envelope.id,
                    kind=kind,
                    run_id=envelope.run_id,
                    body=body,
                )
            )
