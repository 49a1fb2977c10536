"""Cookies of the auth API, all HttpOnly, SameSite=Strict and scoped to ``/api/auth``:

- ``aidp_refresh``: the browser's refresh token (never readable by page scripts, never
  sent cross-site, never sent to any route outside ``/api/auth``);
- ``aidp_device``: the known-device token (see :mod:`services.auth.devices`).

``Secure`` is set when the request came over HTTPS (directly, or as the gateway says with
``X-Forwarded-Proto``), or always/never per ``AIDP_REFRESH_COOKIE_SECURE``.
"""

from __future__ import annotations

from fastapi import Request, Response

from services.auth.devices import DEVICE_COOKIE
from services.auth.settings import AuthSettings

__all__ = [
    "COOKIE_PATH",
    "DEVICE_COOKIE",
    "REFRESH_COOKIE",
    "clear_refresh",
    "secure_cookies",
    "set_cookie",
]

REFRESH_COOKIE = "aidp_refresh"
COOKIE_PATH = "/api/auth"


def _secure(request: Request, settings: AuthSettings) -> bool:
    if settings.refresh_cookie_secure is not None:
        return settings.refresh_cookie_secure
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
    trusted = forwarded if settings.trust_forwarded_for else ""
    return request.url.scheme == "https" or trusted == "https"


def secure_cookies(request: Request, settings: AuthSettings) -> bool:
    """Whether cookies set in answer to ``request`` carry ``Secure``."""
    return _secure(request, settings)


def set_cookie(
    response: Response,
    request: Request,
    settings: AuthSettings,
    *,
    name: str,
    value: str,
    max_age: int,
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=_secure(request, settings),
        httponly=True,
        samesite="strict",
    )


def clear_refresh(response: Response, request: Request, settings: AuthSettings) -> None:
    response.delete_cookie(
        REFRESH_COOKIE,
        path=COOKIE_PATH,
        secure=_secure(request, settings),
        httponly=True,
        samesite="strict",
    )
