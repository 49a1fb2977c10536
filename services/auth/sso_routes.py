"""Single sign-on routes, mounted at ``/api/auth/oidc`` (the gateway forwards them):

- ``GET /config``: ``{enabled, label, login_url}`` (public; the login page asks it);
- ``GET /login``: 302 to the provider (state, nonce, PKCE S256) and the
  ``aidp_oidc_<id>`` cookie binding the sign-in to this browser (one per sign-in);
  ``?invitation=`` carries an invitation code for a first sign-in on an invite-only
  platform; ``?cli_port=&cli_challenge=&cli_state=`` starts a CLI sign-in
  (``aidp login --sso``);
- ``GET /callback``: the provider's redirect. A browser sign-in ends with the refresh
  cookie (as a password login) and 303 to ``/#/sso-complete``; a refused one with 303 to
  ``/#/sso-error?code=<sso_…>`` (a code, never text from the request); a CLI sign-in with
  303 to its loopback listener (``code`` or ``error``);
- ``POST /token`` ``{code, code_verifier}``: the CLI trades its hand-off code for
  ``{access_token, refresh_token, ...}`` (refresh token in the body).

The flow logic is :mod:`services.auth.sso`; the protocol :mod:`services.auth.oidc`.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from services.auth import sso
from services.auth.cookies import REFRESH_COOKIE, secure_cookies, set_cookie
from services.auth.deps import ClientAddress, Ctx
from services.auth.errors import ERROR_RESPONSES
from services.auth.oidc import OidcError
from services.auth.schemas import TokenPairOut
from services.auth.settings import AuthSettings
from shared.errors import InvalidInput, NotFound

__all__ = ["router"]

log = logging.getLogger("aidp.auth.sso")

router = APIRouter(prefix="/api/auth/oidc", tags=["auth"])

FLOW_COOKIE_PATH = "/api/auth/oidc"
CALLBACK_PATH = "/api/auth/oidc/callback"
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$"
)
_CODE = re.compile(r"^sso_[a-z_]{1,40}$")


class OidcConfigOut(BaseModel):
    enabled: bool
    label: str | None = None
    login_url: str | None = None


class HandoffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")
    code_verifier: str = Field(min_length=43, max_length=128, pattern=r"^[A-Za-z0-9._~-]+$")


def _redirect_uri(request: Request, settings: AuthSettings) -> str:
    """The callback URL the provider sends the browser back to: the setting, else the Host
    and scheme the gateway saw (a forged Host only breaks the caller's own sign-in: the
    provider accepts registered redirect URIs only)."""
    if settings.oidc_redirect_url:
        return settings.oidc_redirect_url
    trusted = settings.trust_forwarded_for
    host = (request.headers.get("x-forwarded-host") if trusted else None) or request.headers.get(
        "host", ""
    )
    host = host.split(",")[-1].strip()
    proto = request.headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
    scheme = proto if trusted and proto in ("http", "https") else request.url.scheme
    if not _HOST.fullmatch(host):
        raise InvalidInput("Host: not a host name; set AIDP_OIDC_REDIRECT_URL")
    return f"{scheme}://{host}{CALLBACK_PATH}"


def _ui_error(code: str) -> RedirectResponse:
    safe = code if _CODE.fullmatch(code) else "sso_failed"
    return RedirectResponse(f"/#/sso-error?{urlencode({'code': safe})}", status_code=303)


def _clear_flow_cookie(
    response: Response, request: Request, settings: AuthSettings, state: str | None
) -> None:
    if not state:
        return
    response.delete_cookie(
        sso.flow_cookie_name(state),
        path=FLOW_COOKIE_PATH,
        secure=secure_cookies(request, settings),
        httponly=True,
        samesite="lax",
    )


@router.get("/config", response_model=OidcConfigOut)
def oidc_config(ctx: Ctx) -> OidcConfigOut:
    """Whether the login page shows "Sign in with <label>"."""
    if ctx.oidc is None:
        return OidcConfigOut(enabled=False)
    return OidcConfigOut(
        enabled=True, label=ctx.settings.oidc_name, login_url="/api/auth/oidc/login"
    )


@router.get(
    "/login",
    status_code=302,
    response_class=RedirectResponse,
    responses={
        302: {"description": "to the identity provider"},
        **{c: ERROR_RESPONSES[c] for c in (404, 422, 429)},
    },
)
def oidc_login(
    ctx: Ctx,
    request: Request,
    address: ClientAddress,
    invitation: Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9._-]+$")] = None,
    cli_port: Annotated[int | None, Query()] = None,
    cli_challenge: Annotated[str | None, Query(max_length=64)] = None,
    cli_state: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    """Start a sign-in at the provider (a browser navigates here)."""
    if ctx.oidc is None:
        raise NotFound("single sign-on is not configured on this platform")
    problem = sso.valid_cli_params(cli_port, cli_challenge, cli_state)
    if problem:
        raise InvalidInput(problem)
    redirect_uri = _redirect_uri(request, ctx.settings)
    try:
        started = sso.start(
            ctx,
            redirect_uri=redirect_uri,
            address=address,
            invitation=invitation,
            cli_port=cli_port,
            cli_challenge=cli_challenge,
            cli_state=cli_state,
        )
    except OidcError as exc:
        log.warning("oidc: cannot start a sign-in: %s", exc.message)
        if cli_port is not None:
            query = urlencode({"error": exc.code, "state": cli_state or ""})
            return RedirectResponse(
                f"http://127.0.0.1:{cli_port}/callback?{query}", status_code=303
            )
        return _ui_error(exc.code)
    response = RedirectResponse(started.authorization_url, status_code=302)
    response.headers["Cache-Control"] = "no-store"
    # Lax, not Strict: the provider's redirect back is a cross-site top-level navigation.
    response.set_cookie(
        started.cookie_name,
        started.binding,
        max_age=ctx.settings.oidc_flow_ttl_seconds,
        path=FLOW_COOKIE_PATH,
        secure=secure_cookies(request, ctx.settings),
        httponly=True,
        samesite="lax",
    )
    return response


@router.get(
    "/callback",
    status_code=303,
    response_class=RedirectResponse,
    responses={303: {"description": "to the web UI (or the CLI's loopback listener)"}},
)
def oidc_callback(
    ctx: Ctx,
    request: Request,
    state: Annotated[str | None, Query(max_length=200)] = None,
    code: Annotated[str | None, Query(max_length=2048)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The provider sends the browser back here with ``code`` and ``state``."""
    try:
        finished = sso.finish(
            ctx,
            state=state,
            code=code,
            error=error,
            binding=request.cookies.get(sso.flow_cookie_name(state)) if state else None,
        )
    except sso.SsoRefused as refused:
        log.info("oidc: sign-in refused: %s", refused.code)
        if refused.cli is not None:
            response: Response = RedirectResponse(
                sso.cli_redirect(refused.cli, error=refused.code), status_code=303
            )
        else:
            response = _ui_error(refused.code)
        _clear_flow_cookie(response, request, ctx.settings, state)
        return response
    except NotFound:
        return _ui_error("sso_not_configured")
    if finished.cli_redirect is not None:
        response = RedirectResponse(finished.cli_redirect, status_code=303)
    else:
        assert finished.pair is not None
        response = RedirectResponse("/#/sso-complete", status_code=303)
        set_cookie(
            response,
            request,
            ctx.settings,
            name=REFRESH_COOKIE,
            value=finished.pair.refresh_token,
            max_age=ctx.settings.session_max_days * 86400,
        )
    response.headers["Cache-Control"] = "no-store"
    _clear_flow_cookie(response, request, ctx.settings, state)
    return response


@router.post(
    "/token",
    response_model=TokenPairOut,
    responses={c: ERROR_RESPONSES[c] for c in (401, 404, 422)},
)
def oidc_token(body: HandoffIn, ctx: Ctx) -> TokenPairOut:
    """The CLI's hand-off code (and its PKCE verifier) → a token pair in the body."""
    if ctx.oidc is None:
        raise NotFound("single sign-on is not configured on this platform")
    pair = sso.redeem_handoff(ctx, code=body.code, code_verifier=body.code_verifier)
    return TokenPairOut(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
    )
