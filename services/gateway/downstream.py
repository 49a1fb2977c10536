"""Calls to the other services' internal APIs (docs/design.md §2), one client per service.

An unreachable service (connection refused, timeout, not registered in process) is a
:class:`shared.errors.TransientError`, answered 503; a 404 from the service is a
:class:`shared.errors.NotFound`; other 4xx/5xx are mapped to the gateway's own taxonomy.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from shared.contracts.answers import parse_answer  # an answer out of contract: 502
from shared.errors import (
    ClientError,
    Conflict,
    InvalidInput,
    NotFound,
    ProviderError,
    TransientError,
)
from shared.internal import internal_client
from shared.service_auth import ServiceCredentials

__all__ = ["Downstream", "Downstreams", "PayloadTooLarge", "USER_HEADER", "parse_answer"]

log = logging.getLogger(__name__)

USER_HEADER = "X-Aidp-User"


class PayloadTooLarge(ClientError):
    code = "too_large"
    status = 413


class Downstream:
    """A lazily created, long-lived client for one service's internal API."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        timeout: float,
        credentials: Callable[[], ServiceCredentials] | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.timeout = timeout
        self.credentials = credentials  # the gateway's service token for internal routes
        self._client: httpx.AsyncClient | None = None
        self._live: httpx.AsyncClient | None = None  # answers streamed as sent (in process)

    def client(self, *, live: bool = False) -> httpx.AsyncClient:
        """The client; ``live``: one whose in-process answers stream as the service sends
        them (token streams), not once the service has finished."""
        held = self._live if live else self._client
        if held is None:
            try:
                held = internal_client(
                    self.url,
                    timeout=self.timeout,
                    credentials=self.credentials,
                    audience=self.name,
                    streaming=live,
                )
            except RuntimeError as exc:  # inproc service not registered (yet)
                raise TransientError(f"{self.name} service is unavailable") from exc
            if live:
                self._live = held
            else:
                self._client = held
        return held

    async def close(self) -> None:
        for client in (self._client, self._live):
            if client is not None:
                await client.aclose()
        self._client = self._live = None

    def _check(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        message = _error_message(response) or f"{self.name} answered {status}"
        if status == 404:
            raise NotFound(message)
        if status == 413:  # the body limit (too_large) or the fetcher's quota_exceeded
            raise PayloadTooLarge(message, code=_error_code(response) or PayloadTooLarge.code)
        if status == 409:
            raise Conflict(message)
        if status in (400, 422):
            raise InvalidInput(message)
        if status in (502, 503, 504):
            raise TransientError(f"{self.name} service is unavailable")
        raise ProviderError(f"{self.name} service failed ({status})", code="downstream_error")

    async def request(
        self,
        method: str,
        path: str,
        *,
        user_id: uuid.UUID | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request; raise the mapped error for a failing answer."""
        headers = dict(kwargs.pop("headers", None) or {})
        if user_id is not None:
            headers[USER_HEADER] = str(user_id)
        try:
            response = await self.client().request(method, path, headers=headers, **kwargs)
        except (httpx.TransportError, RuntimeError) as exc:
            log.warning("%s unreachable: %r", self.name, exc)
            raise TransientError(f"{self.name} service is unavailable") from exc
        self._check(response)
        return response

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise ProviderError(f"{self.name} answered invalid JSON") from exc

    async def open_stream(
        self,
        method: str,
        path: str,
        *,
        user_id: uuid.UUID | None = None,
        passthrough: bool = False,
        live: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request and return the response unread; the caller closes it.

        Error answers raise the mapped error unless ``passthrough`` (a verbatim proxy).
        ``live``: the body arrives as the service sends it, also in process (see
        :meth:`client`).
        """
        headers = dict(kwargs.pop("headers", None) or {})
        if user_id is not None:
            headers[USER_HEADER] = str(user_id)
        try:
            client = self.client(live=live)
            request = client.build_request(method, path, headers=headers, **kwargs)
            response = await client.send(request, stream=True)
        except (httpx.TransportError, RuntimeError) as exc:
            log.warning("%s unreachable: %r", self.name, exc)
            raise TransientError(f"{self.name} service is unavailable") from exc
        if response.status_code >= 400 and not passthrough:
            try:
                await response.aread()
            finally:
                await response.aclose()
            self._check(response)
        return response


def _error_code(response: httpx.Response) -> str | None:
    """The ``error.code`` of a service's JSON error answer, if it has one."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and code.isidentifier() else None


def _error_message(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(body.get("detail"), str):
            return str(body["detail"])
    return None


class Downstreams:
    """The four services the gateway calls."""

    def __init__(
        self,
        *,
        auth: str,
        fetcher: str,
        trainer: str,
        provisioner: str,
        timeout: float,
        credentials: Callable[[], ServiceCredentials] | None = None,
    ):
        def downstream(name: str, url: str) -> Downstream:
            return Downstream(name, url, timeout=timeout, credentials=credentials)

        self.auth = downstream("auth", auth)
        self.fetcher = downstream("fetcher", fetcher)
        self.trainer = downstream("trainer", trainer)
        self.provisioner = downstream("provisioner", provisioner)

    def all(self) -> list[Downstream]:
        return [self.auth, self.fetcher, self.trainer, self.provisioner]

    async def close(self) -> None:
        for downstream in self.all():
            await downstream.close()
