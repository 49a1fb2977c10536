"""A small client for the Intel Tiber AI Cloud compute API (see shared/reference/idc-api.md).

Auth is OAuth2 client credentials: a token is fetched, reused until shortly before it
expires, and fetched again on a 401. 429 and 5xx answers (and connection errors) are retried
with exponential backoff (honouring ``Retry-After``); a 429 whose message speaks of a quota
is not a rate limit and fails at once, nor one whose gRPC code is 8 (RESOURCE_EXHAUSTED)
and whose message speaks of capacity (``code="no_capacity"``: the provisioner tries the
spec's next choice). Errors carry the API's own ``message``.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.errors import ProviderError, TransientError

if TYPE_CHECKING:
    import httpx

__all__ = ["IdcClient", "IdcCredentials"]


@dataclass(frozen=True, repr=False)
class IdcCredentials:
    client_id: str
    client_secret: str
    cloudaccount: str
    source: str  # "user" or "platform": which credentials these are (never the values)

    def __repr__(self) -> str:
        return f"IdcCredentials(cloudaccount={self.cloudaccount!r}, source={self.source!r})"


class IdcClient:
    """Calls one cloud account's compute API. Use as an async context manager."""

    def __init__(
        self,
        *,
        api_url: str,
        token_url: str,
        credentials: IdcCredentials,
        max_retries: int = 6,
        backoff: float = 1.0,
        timeout: float = 30.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.token_url = token_url
        self.credentials = credentials
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
        self._token: str | None = None
        self._token_expires = 0.0
        self._http: httpx.AsyncClient | None = None
        self.calls = 0

    async def __aenter__(self) -> IdcClient:
        import httpx  # lazy: only runs that use IDC pay for it

        self._http = httpx.AsyncClient(timeout=self.timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("IdcClient used outside 'async with'")
        return self._http

    # -- auth --------------------------------------------------------------------------

    async def _fetch_token(self) -> str:
        creds = self.credentials
        basic = base64.b64encode(f"{creds.client_id}:{creds.client_secret}".encode()).decode()
        response = await self._send(
            "POST",
            self.token_url,
            headers={
                "Authorization": f"Basic {basic}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
            content=f"grant_type=client_credentials&client_id={creds.client_id}".encode(),
            auth=False,
        )
        body = response.json()
        self._token = str(body["access_token"])
        lifetime = float(body.get("expires_in", 3600))
        # Refresh a little before expiry (a tenth of the lifetime, at most a minute).
        self._token_expires = time.monotonic() + lifetime - min(60.0, lifetime / 10)
        return self._token

    async def _bearer(self) -> str:
        if self._token is None or time.monotonic() >= self._token_expires:
            return await self._fetch_token()
        return self._token

    # -- transport ---------------------------------------------------------------------

    async def _send(
        self, method: str, url: str, *, auth: bool = True, **kwargs: Any
    ) -> httpx.Response:
        import httpx

        refreshed = False
        attempt = 0
        while True:
            headers = dict(kwargs.pop("headers", {}) or {})
            if auth:
                headers["Authorization"] = f"Bearer {await self._bearer()}"
                headers.setdefault("Content-Type", "application/json")
            self.calls += 1
            try:
                response = await self.http.request(method, url, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                response = None
                error = f"{type(exc).__name__}: {exc}"
            kwargs["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
            if response is not None:
                if response.status_code < 300:
                    return response
                if response.status_code == 401 and auth and not refreshed:
                    refreshed = True
                    self._token = None  # expired or revoked: fetch a new one, once
                    continue
                message = _api_message(response)
                retryable = response.status_code == 429 or response.status_code >= 500
                if response.status_code == 429 and "quota" in message.lower():
                    raise ProviderError(
                        f"Intel Tiber AI Cloud quota: {message}", code="quota_exceeded"
                    )
                if response.status_code == 429 and _no_capacity(response, message):
                    raise ProviderError(
                        f"Intel Tiber AI Cloud has no capacity: {message}",
                        code="no_capacity",
                        retryable=True,
                    )
                if not retryable:
                    raise ProviderError(
                        f"Intel Tiber AI Cloud {method} {_path(url)} answered"
                        f" {response.status_code}: {message}",
                        code=f"idc_{response.status_code}",
                        retryable=response.status_code in (408, 409),
                    )
                error = f"{response.status_code}: {message}"
                delay = _retry_after(response) or self.backoff * (2**attempt)
            else:
                delay = self.backoff * (2**attempt)
            attempt += 1
            if attempt > self.max_retries:
                raise TransientError(
                    f"Intel Tiber AI Cloud {method} {_path(url)} still failing after"
                    f" {self.max_retries} retries: {error}"
                )
            await asyncio.sleep(min(delay, 60.0))

    def _account(self, path: str) -> str:
        return f"{self.api_url}/v1/cloudaccounts/{self.credentials.cloudaccount}{path}"

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._send(method, self._account(path), **kwargs)
        return response.json() if response.content else {}

    async def get_or_none(self, path: str) -> Any:
        try:
            return await self.request("GET", path)
        except ProviderError as exc:
            if exc.code == "idc_404":
                return None
            raise

    # -- resources -----------------------------------------------------------------------

    async def ensure_ssh_key(self, name: str, public_key: str) -> None:
        if await self.get_or_none(f"/sshpublickeys/name/{name}") is None:
            body = {"metadata": {"name": name}, "spec": {"sshPublicKey": public_key}}
            try:
                await self.request("POST", "/sshpublickeys", json=body)
            except ProviderError as exc:
                if exc.code != "idc_409":  # registered meanwhile by a sibling node: fine
                    raise

    async def delete_ssh_key(self, name: str) -> None:
        try:
            await self.request("DELETE", f"/sshpublickeys/name/{name}")
        except ProviderError as exc:
            if exc.code != "idc_404":
                raise

    async def list_ssh_keys(self) -> list[dict[str, Any]]:
        return list((await self.request("GET", "/sshpublickeys")).get("items", []))

    async def instance_by_name(self, name: str) -> dict[str, Any] | None:
        found = await self.get_or_none(f"/instances/name/{name}")
        return dict(found) if found else None

    async def instance(self, resource_id: str) -> dict[str, Any] | None:
        found = await self.get_or_none(f"/instances/id/{resource_id}")
        return dict(found) if found else None

    async def create_instance(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.request("POST", "/instances", json=body))

    async def delete_instance(self, resource_id: str) -> None:
        try:
            await self.request("DELETE", f"/instances/id/{resource_id}")
        except ProviderError as exc:
            if exc.code != "idc_404":
                raise

    async def instances(self, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
        if labels:
            body = {"metadata": {"labels": labels}}
            found = await self.request("POST", "/instances/search", json=body)
        else:
            found = await self.request("GET", "/instances")
        return list(found.get("items", []))


def _api_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(body)[:500]


def _no_capacity(response: httpx.Response, message: str) -> bool:
    """A RESOURCE_EXHAUSTED answer (gRPC code 8, HTTP 429) that speaks of capacity: the
    instance type is sold out in the zone, which no retry of the same call will change."""
    try:
        code = response.json().get("code")
    except (ValueError, AttributeError):
        code = None
    return code == 8 and "capacity" in message.lower()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[-1] if "://" in url else url
