"""Sends pending webhook deliveries, with retries and backoff (one task per gateway).

Every ``webhook_poll_interval`` the sender claims due deliveries (``pending`` and
``next_attempt_at`` passed): a claim moves ``next_attempt_at`` past the send's timeout
with a compare-and-set on its old value, so two gateway replicas never send one attempt
twice. A 2xx answer marks the delivery ``delivered``; anything else (an error status, a
timeout, a refused or unresolvable host) schedules the next try after
``webhook_backoff * 2**(tries-1)`` seconds (at most an hour), and after
``webhook_max_attempts`` tries the delivery is ``failed``. Redirects are not followed.

The URL is checked again for each attempt and the connection goes to an address that
check resolved (DNS pinning, as the fetcher's https:// sources do): ``Host`` and TLS SNI
keep the original name.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import select, update
from sqlmodel import col

from services.gateway.settings import GatewaySettings
from services.gateway.webhook_models import Webhook, WebhookDelivery
from services.gateway.webhooks import WebhookKey, check_webhook_url, sign, slack_text
from shared.db import Database, run_sync
from shared.errors import InvalidInput
from shared.service.clock import utcnow

__all__ = ["WebhookSender"]

log = logging.getLogger(__name__)

_BATCH = 20
_MAX_DELAY = 3600.0


class WebhookSender:
    """Claims and sends due deliveries until cancelled."""

    def __init__(self, db: Database, key: WebhookKey, settings: GatewaySettings) -> None:
        self.db = db
        self.key = key
        self.settings = settings
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for due deliveries now (a test or a fresh delivery)."""
        self._wake.set()

    async def run_forever(self) -> None:
        async with httpx.AsyncClient(
            timeout=self.settings.webhook_timeout, follow_redirects=False, trust_env=False
        ) as client:
            while True:
                try:
                    claimed = await run_sync(self._claim)
                    if claimed:
                        await asyncio.gather(*(self._send(client, *item) for item in claimed))
                        continue
                except asyncio.CancelledError:
                    raise
                except Exception:  # keep sending; a DB hiccup is retried next turn
                    log.exception("webhook sender turn failed")
                try:  # asyncio.timeout: 3.11's wait_for can swallow a cancel (shared.outbox)
                    async with asyncio.timeout(self.settings.webhook_poll_interval):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                self._wake.clear()

    def _claim(self) -> list[tuple[WebhookDelivery, Webhook]]:
        now = utcnow()
        lease = now + timedelta(seconds=self.settings.webhook_timeout + 30)
        claimed: list[tuple[WebhookDelivery, Webhook]] = []
        with self.db.session() as session:
            due = session.execute(
                select(WebhookDelivery)
                .where(
                    col(WebhookDelivery.status) == "pending",
                    col(WebhookDelivery.next_attempt_at) <= now,
                )
                .order_by(col(WebhookDelivery.next_attempt_at))
                .limit(_BATCH)
            ).scalars()
            for delivery in list(due):
                won = session.execute(  # type: ignore[attr-defined]
                    update(WebhookDelivery)
                    .where(
                        col(WebhookDelivery.id) == delivery.id,
                        col(WebhookDelivery.status) == "pending",
                        col(WebhookDelivery.next_attempt_at) == delivery.next_attempt_at,
                    )
                    .values(next_attempt_at=lease)
                ).rowcount
                hook = session.get(Webhook, delivery.webhook_id)
                if won == 1 and hook is not None:
                    claimed.append((delivery, hook))
            session.commit()
            for delivery, hook in claimed:
                session.expunge(delivery)
                session.expunge(hook)
        return claimed

    def _request(self, delivery: WebhookDelivery, hook: Webhook) -> tuple[bytes, dict[str, str]]:
        body_obj = {"text": slack_text(delivery.body)} if hook.format == "slack" else delivery.body
        body = json.dumps(body_obj, separators=(",", ":"), ensure_ascii=False).encode()
        timestamp = int(time.time())
        secret = self.key.open(hook.secret_sealed, webhook_id=hook.id)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "aidp-webhooks/1",
            "X-Aidp-Event": delivery.kind,
            "X-Aidp-Delivery": str(delivery.id),
            "X-Aidp-Timestamp": str(timestamp),
            "X-Aidp-Signature": sign(secret, timestamp, body),
        }
        return body, headers

    async def _send(
        self, client: httpx.AsyncClient, delivery: WebhookDelivery, hook: Webhook
    ) -> None:
        code: int | None = None
        error: str | None = None
        try:
            body, headers = self._request(delivery, hook)
            url = self.key.open(hook.url, webhook_id=hook.id, field="url")
            addresses = await asyncio.to_thread(
                check_webhook_url,
                url,
                allow_private=self.settings.webhook_allow_private,
                allow_hosts=self.settings.webhook_allow_hosts,
            )
            parts = urlsplit(url)
            address = addresses[0]
            ip = f"[{address}]" if address.version == 6 else str(address)
            netloc = ip if parts.port is None else f"{ip}:{parts.port}"
            pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
            headers["Host"] = parts.netloc
            request = client.build_request(
                "POST",
                pinned,
                content=body,
                headers=headers,
                extensions={"sni_hostname": parts.hostname or ""},
            )
            # only the status matters: the receiver's body is never read (nor held)
            response = await client.send(request, stream=True)
            await response.aclose()
            code = response.status_code
            if not 200 <= code < 300:
                error = f"the receiver answered {code}"
        except InvalidInput as exc:
            error = exc.message
        except httpx.TimeoutException:
            error = f"no answer within {self.settings.webhook_timeout:g}s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: could not reach the receiver"
        except Exception as exc:  # a sealed secret that no longer opens, ...
            log.exception("webhook delivery %s failed", delivery.id)
            error = f"{type(exc).__name__}"
        await run_sync(self._record, delivery, code, error)

    def _record(self, delivery: WebhookDelivery, code: int | None, error: str | None) -> None:
        now = utcnow()
        attempts = delivery.attempts + 1
        values: dict[str, object] = {
            "attempts": attempts,
            "last_status_code": code,
            "last_error": error,
        }
        if error is None:
            values.update(status="delivered", delivered_at=now)
        elif attempts >= self.settings.webhook_max_attempts:
            values.update(status="failed")
        else:
            delay = min(_MAX_DELAY, self.settings.webhook_backoff * 2 ** (attempts - 1))
            values.update(next_attempt_at=now + timedelta(seconds=delay))
        with self.db.session() as session:
            session.execute(
                update(WebhookDelivery)
                .where(col(WebhookDelivery.id) == delivery.id)
                .values(**values)
            )
            session.commit()
        log.info(
            "webhook delivery %s (%s) try %d: %s",
            delivery.id,
            delivery.kind,
            attempts,
            "delivered" if error is None else error,
        )
