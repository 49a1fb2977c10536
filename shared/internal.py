"""HTTP clients for a service's internal API (``AIDP_<SERVICE>_URL``).

``inproc://<name>`` URLs reach an ASGI app registered in this process (embedded mode), so
the same client code calls across processes or stays in process.

With ``credentials`` the client sends the calling service's token for ``audience`` (the
callee's service name) on every ``/internal/...`` request (:mod:`shared.service_auth`).

The clients keep no cookies: a cookie a service sets (auth's refresh, device and SSO
cookies) belongs to the caller the gateway proxies it to, and must never ride along on the
next request, someone else's.
"""

from __future__ import annotations

from collections.abc import Callable
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

from shared.asgi_stream import StreamingASGITransport
from shared.service_auth import ServiceCredentials, ServiceTokenAuth

__all__ = ["internal_client", "register_inproc", "unregister_inproc"]

_INPROC: dict[str, Any] = {}


def _no_cookies() -> CookieJar:
    """A jar that accepts no cookie from any domain."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def register_inproc(name: str, app: Any) -> None:
    _INPROC[name] = app


def unregister_inproc(name: str) -> None:
    _INPROC.pop(name, None)


def internal_client(
    url: str,
    *,
    timeout: float = 30.0,
    credentials: Callable[[], ServiceCredentials] | None = None,
    audience: str | None = None,
    streaming: bool = False,
    **kwargs: Any,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose base URL is the service at ``url``; with
    ``credentials``, authenticated as the calling service to ``audience``. ``streaming``:
    an in-process answer's body arrives as the app sends it
    (:class:`shared.asgi_stream.StreamingASGITransport`), not once it has finished."""
    kwargs.setdefault("cookies", _no_cookies())
    if credentials is not None:
        if not audience:
            raise ValueError("a service credential needs the callee's name (audience)")
        kwargs["auth"] = ServiceTokenAuth(credentials, audience)
    if url.startswith("inproc://"):
        name = url.removeprefix("inproc://").strip("/")
        app = _INPROC.get(name)
        if app is None:
            raise RuntimeError(f"no in-process service registered as {name!r}")
        transport: httpx.AsyncBaseTransport = (
            StreamingASGITransport(app) if streaming else httpx.ASGITransport(app=app)
        )
        return httpx.AsyncClient(
            transport=transport, base_url=f"http://{name}", timeout=timeout, **kwargs
        )
    return httpx.AsyncClient(base_url=url, timeout=timeout, **kwargs)
