"""A small client for the Intel Tiber AI Cloud compute API (see shared/reference/idc-api.md).

Auth is OAuth2 client credentials through Authlib's httpx client
(:class:`~authlib.integrations.httpx_client.AsyncOAuth2Client`): a token is fetched on the
first call, reused until shortly before it expires (a tenth of its lifetime, at most a
minute) and fetched again by Authlib then, or by this client once on a 401 (revoked early).
429 and 5xx answers and connection errors, of the API and of the token endpoint alike, are
retried by :mod:`stamina` with exponential backoff (honouring ``Retry-After``); a 429 whose
message speaks of a quota is not a rate limit and fails at once, nor one whose gRPC code is 8
(RESOURCE_EXHAUSTED) and whose message speaks of capacity (``code="no_capacity"``: the
provisioner tries the spec's next choice). Errors carry the API's own ``message``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import stamina

from shared.errors import ProviderError, TransientError

if TYPE_CHECKING:
    import httpx2
    from authlib.integrations.httpx_client import AsyncOAuth2Client

__all__ = ["IdcClient", "IdcCredentials"]

#: The longest wait between two tries, whatever the backoff or ``Retry-After`` asks.
_MAX_WAIT = 60.0


@dataclass(frozen=True, repr=False)
class IdcCredentials:
    client_id: str
    client_secret: str
    cloudaccount: str
    source: str  # "user" or "platform": which credentials these are (never the values)

    def __repr__(self) -> str:
        return f"IdcCredentials(cloudaccount={self.cloudaccount!r}, source={self.source!r})"


class _RetryableAnswer(Exception):
    """A 429 (rate limit) or 5xx answer: worth the same call again, after a wait."""

    def __init__(self, response: httpx2.Response, message: str) -> None:
        super().__init__(f"{response.status_code}: {message}")
        self.retry_after = _retry_after(response)


class IdcClient:
    """Calls one cloud account's compute API. Use as an async context manager.

    ``max_retries``: tries after the first one of a failing call; ``backoff``: the wait
    before the first retry, doubling (at most a minute) unless the answer's ``Retry-After``
    names one."""

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
        self._http: AsyncOAuth2Client | None = None
        self.calls = 0

    async def __aenter__(self) -> IdcClient:
        # lazy: only runs that use IDC pay for these imports
        from authlib.integrations.httpx_client import AsyncOAuth2Client

        creds = self.credentials
        self._http = AsyncOAuth2Client(
            client_id=creds.client_id,
            client_secret=creds.client_secret,
            token_endpoint=self.token_url,
            token_endpoint_auth_method=_basic_and_client_id,
            grant_type="client_credentials",  # Authlib fetches a new token when it expires
            update_token=self._token_updated,
            headers={"Content-Type": "application/json"},  # every API call, per the docs
            timeout=self.timeout,
            event_hooks={"request": [self._count]},
        )
        self._http.register_compliance_hook("access_token_response", self._token_answer)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def http(self) -> AsyncOAuth2Client:
        if self._http is None:
            raise RuntimeError("IdcClient used outside 'async with'")
        return self._http

    async def _count(self, _request: httpx2.Request) -> None:
        self.calls += 1  # every request sent, the token endpoint's too

    # -- auth --------------------------------------------------------------------------

    def _token_answer(self, response: httpx2.Response) -> httpx2.Response:
        """Authlib's hook on the token endpoint's answer: its failures are mapped (and
        retried) like the API's, since IDC answers ``{code, message}``, not OAuth errors."""
        _check(response, "POST", self.token_url)
        return response

    async def _token_updated(self, token: dict[str, Any], **_: Any) -> None:
        self._set_leeway(token)

    def _set_leeway(self, token: dict[str, Any]) -> None:
        """Refresh a tenth of the token's lifetime before it expires, at most a minute."""
        lifetime = float(token.get("expires_in") or 3600)
        self.http.leeway = min(60.0, lifetime / 10)

    async def _fetch_token(self) -> None:
        token = await self.http.fetch_token()
        self._set_leeway(token)

    # -- transport ---------------------------------------------------------------------

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx2.Response:
        """One API call, retried while it fails transiently (see the module docstring);
        :class:`TransientError` once the retries are spent."""
        refreshed = False
        try:
            async for attempt in stamina.retry_context(
                on=_retry_wait,
                attempts=self.max_retries + 1,
                timeout=None,
                wait_initial=self.backoff,
                wait_max=_MAX_WAIT,
                wait_jitter=0.0,
            ):
                with attempt:
                    if not self.http.token:
                        await self._fetch_token()
                    response = await self.http.request(method, url, **kwargs)
                    if response.status_code == 401 and not refreshed:
                        refreshed = True  # expired or revoked: fetch a new one, once
                        await self._fetch_token()
                        response = await self.http.request(method, url, **kwargs)
                    _check(response, method, url)
                    return response
        except _RetryableAnswer as exc:
            error = str(exc)
        except _transport_errors() as exc:
            error = f"{type(exc).__name__}: {exc}"
        raise TransientError(
            f"Intel Tiber AI Cloud {method} {_path(url)} still failing after"
            f" {self.max_retries} retries: {error}"
        )

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


def _basic_and_client_id(
    client: Any, method: str, uri: str, headers: dict[str, str], body: str
) -> tuple[str, dict[str, str], str]:
    """IDC's token request: HTTP Basic client authentication with the client id also in the
    form (``grant_type=client_credentials&client_id=…``), as Intel's own provider sends it."""
    from authlib.oauth2.auth import encode_client_secret_basic, encode_none

    uri, headers, body = encode_client_secret_basic(client, method, uri, headers, body)
    return encode_none(client, method, uri, headers, body)  # type: ignore[no-any-return]


def _check(response: httpx2.Response, method: str, url: str) -> None:
    """Nothing for a success; else the error the answer means: :class:`_RetryableAnswer` for
    a rate limit or a server error, :class:`ProviderError` for the rest (quota, capacity)."""
    if response.status_code < 300:
        return
    message = _api_message(response)
    if response.status_code == 429 and "quota" in message.lower():
        raise ProviderError(f"Intel Tiber AI Cloud quota: {message}", code="quota_exceeded")
    if response.status_code == 429 and _no_capacity(response, message):
        raise ProviderError(
            f"Intel Tiber AI Cloud has no capacity: {message}",
            code="no_capacity",
            retryable=True,
        )
    if response.status_code == 429 or response.status_code >= 500:
        raise _RetryableAnswer(response, message)
    raise ProviderError(
        f"Intel Tiber AI Cloud {method} {_path(url)} answered {response.status_code}: {message}",
        code=f"idc_{response.status_code}",
        retryable=response.status_code in (408, 409),
    )


def _retry_wait(exc: Exception) -> bool | float:
    """stamina's hook: whether ``exc`` is worth another try, and the wait a positive
    ``Retry-After`` asks for (else the exponential backoff's)."""
    if isinstance(exc, _RetryableAnswer):
        return min(exc.retry_after, _MAX_WAIT) if exc.retry_after else True
    return isinstance(exc, _transport_errors())


def _transport_errors() -> tuple[type[Exception], ...]:
    """Connection errors and timeouts: Authlib's client is built on httpx2 where installed,
    on httpx before (older Authlib, or no httpx2)."""
    import httpx
    import httpx2

    return (httpx.TransportError, httpx2.TransportError)


def _api_message(response: httpx2.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(body)[:500]


def _no_capacity(response: httpx2.Response, message: str) -> bool:
    """A RESOURCE_EXHAUSTED answer (gRPC code 8, HTTP 429) that speaks of capacity: the
    instance type is sold out in the zone, which no retry of the same call will change."""
    try:
        code = response.json().get("code")
    except (ValueError, AttributeError):
        code = None
    return code == 8 and "capacity" in message.lower()


def _retry_after(response: httpx2.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[-1] if "://" in url else url
