"""Public routes, mounted at ``/api/auth`` (the gateway forwards them path for path).

Handlers are sync functions: argon2 and the database run in FastAPI's thread pool.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from services.auth import api_tokens, invitations, service
from services.auth.cookies import DEVICE_COOKIE, REFRESH_COOKIE, clear_refresh, set_cookie
from services.auth.deps import Admin, ClientAddress, Ctx, CurrentUser, SessionUser
from services.auth.errors import ERROR_RESPONSES
from services.auth.models import ApiToken
from services.auth.schemas import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenOut,
    InvitationCreate,
    InvitationOut,
    JwksOut,
    LoginIn,
    LogoutIn,
    PasswordChange,
    PasswordChanged,
    RefreshIn,
    RegisterIn,
    RevokedKey,
    RotatedKey,
    TokenPairOut,
    UserAdminOut,
    UserOut,
)
from shared.contracts.identity import SessionsOut
from shared.errors import Unauthenticated

__all__ = ["router"]

router = APIRouter(prefix="/api/auth", tags=["auth"])


def _errors(*codes: int) -> dict[int | str, dict[str, object]]:
    return {code: ERROR_RESPONSES[code] for code in codes}


_KID = r"^[0-9]{14}-[0-9a-f]{8}$"


def _pair(
    pair: service.TokenPair, *, in_body: bool, ctx: Ctx, request: Request, response: Response
) -> TokenPairOut:
    """The answer of login/refresh: the refresh token in the body, or in the HttpOnly
    cookie (browsers) and left out of the body; a new device token as a cookie."""
    s = ctx.settings
    if pair.device_token is not None:
        set_cookie(
            response,
            request,
            s,
            name=DEVICE_COOKIE,
            value=pair.device_token,
            max_age=s.device_cookie_days * 86400,
        )
    if not in_body:
        set_cookie(
            response,
            request,
            s,
            name=REFRESH_COOKIE,
            value=pair.refresh_token,
            max_age=s.session_max_days * 86400,
        )
    return TokenPairOut(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token if in_body else None,
        expires_in=pair.expires_in,
    )


def _token_out(row: ApiToken) -> dict[str, object]:
    return {
        "id": row.id,
        "name": row.name,
        "hint": f"aidp_{row.selector[:8]}…",
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "last_used_at": row.last_used_at,
        "scopes": row.scopes.split(),
    }


@router.post(
    "/register", status_code=201, response_model=UserOut, responses=_errors(403, 409, 422, 429)
)
def register(body: RegisterIn, ctx: Ctx, address: ClientAddress) -> UserOut:
    user = service.register(
        ctx, email=body.email, password=body.password, invitation=body.invitation, address=address
    )
    return UserOut.model_validate(user, from_attributes=True)


@router.post("/login", response_model=TokenPairOut, responses=_errors(401, 403, 422, 429))
def login(
    body: LoginIn, ctx: Ctx, address: ClientAddress, request: Request, response: Response
) -> TokenPairOut:
    pair = service.login(
        ctx,
        email=body.email,
        password=body.password,
        address=address,
        device_token=body.device_token or request.cookies.get(DEVICE_COOKIE),
    )
    in_body = body.refresh_token_delivery == "body"
    return _pair(pair, in_body=in_body, ctx=ctx, request=request, response=response)


@router.post("/refresh", response_model=TokenPairOut, responses=_errors(401, 422))
def refresh(
    ctx: Ctx, request: Request, response: Response, body: RefreshIn | None = None
) -> TokenPairOut:
    """The body's refresh token (answered in the body), else the refresh cookie (answered
    as a cookie)."""
    in_body = body is not None and body.refresh_token is not None
    token = (
        body.refresh_token if body is not None and in_body else request.cookies.get(REFRESH_COOKIE)
    )
    if not token or len(token) > 4096:
        raise Unauthenticated("missing refresh token")
    pair = service.refresh(ctx, refresh_token=token)
    return _pair(pair, in_body=in_body, ctx=ctx, request=request, response=response)


@router.post("/logout", status_code=204, responses=_errors(401, 403, 422))
def logout(ctx: Ctx, user: SessionUser, request: Request, body: LogoutIn | None = None) -> Response:
    token = body.refresh_token if body and body.refresh_token else None
    service.logout(
        ctx, user_id=user.user_id, refresh_token=token or request.cookies.get(REFRESH_COOKIE)
    )
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_refresh(response, request, ctx.settings)
    return response


@router.post("/logout-all", status_code=204, responses=_errors(401, 403))
def logout_all(ctx: Ctx, user: SessionUser, request: Request) -> Response:
    """End every session of the caller, on every device."""
    service.logout_all(ctx, user_id=user.user_id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_refresh(response, request, ctx.settings)
    return response


@router.get("/me", response_model=UserOut, responses=_errors(401))
def me(ctx: Ctx, user: CurrentUser) -> UserOut:
    return UserOut.model_validate(service.get_user(ctx, user_id=user.user_id), from_attributes=True)


@router.post("/password", response_model=PasswordChanged, responses=_errors(401, 403, 422, 429))
def change_password(
    body: PasswordChange, ctx: Ctx, user: SessionUser, address: ClientAddress
) -> PasswordChanged:
    counts = service.change_password(
        ctx,
        user_id=user.user_id,
        current_password=body.current_password,
        new_password=body.new_password,
        address=address,
    )
    return PasswordChanged(**counts)


@router.post(
    "/tokens", status_code=201, response_model=ApiTokenCreated, responses=_errors(401, 403, 422)
)
def create_token(body: ApiTokenCreate, ctx: Ctx, user: SessionUser) -> ApiTokenCreated:
    days = body.expires_in_days
    if days is not None:
        days = min(days, ctx.settings.api_token_max_days)
    scopes = service.check_scopes(requested=body.scopes, is_admin=user.is_admin)
    with ctx.db.session() as session:
        row, value = api_tokens.create_api_token(
            session, user_id=user.user_id, name=body.name, expires_in_days=days, scopes=scopes
        )
        session.commit()
    return ApiTokenCreated(**_token_out(row), token=value)  # type: ignore[arg-type]


@router.get("/tokens", response_model=list[ApiTokenOut], responses=_errors(401))
def list_tokens(ctx: Ctx, user: CurrentUser) -> list[ApiTokenOut]:
    with ctx.db.session() as session:
        rows = api_tokens.list_api_tokens(session, user_id=user.user_id)
    return [ApiTokenOut(**_token_out(row)) for row in rows]  # type: ignore[arg-type]


@router.delete("/tokens/{token_id}", status_code=204, responses=_errors(401, 403, 404, 422))
def delete_token(token_id: uuid.UUID, ctx: Ctx, user: SessionUser) -> Response:
    with ctx.db.session() as session:
        api_tokens.revoke_api_token(session, user_id=user.user_id, token_id=str(token_id))
        session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/jwks", response_model=JwksOut)
def jwks(ctx: Ctx, response: Response) -> dict[str, object]:
    response.headers["Cache-Control"] = "public, max-age=60"
    return ctx.keyring.jwks()  # type: ignore[return-value]


@router.post("/keys/rotate", response_model=RotatedKey, responses=_errors(401, 403))
def rotate_key(ctx: Ctx, _admin: Admin) -> RotatedKey:
    kid = service.rotate_signing_key(ctx)
    return RotatedKey(kid=kid, keys=[k["kid"] for k in ctx.keyring.jwks()["keys"]])


# -- admin actions ---------------------------------------------------------------------


@router.post(
    "/admin/keys/{kid}/revoke", response_model=RevokedKey, responses=_errors(401, 403, 404, 422)
)
def revoke_key(
    kid: Annotated[str, Path(pattern=_KID, max_length=40)], ctx: Ctx, _admin: Admin
) -> RevokedKey:
    """Retire a (compromised) signing key at once: it leaves the JWKS, a new key signs."""
    active = service.revoke_signing_key(ctx, kid=kid)
    return RevokedKey(
        revoked=kid, active=active, keys=[k["kid"] for k in ctx.keyring.jwks()["keys"]]
    )


@router.post(
    "/admin/invitations",
    status_code=201,
    response_model=InvitationOut,
    responses=_errors(401, 403, 422),
)
def create_invitation(body: InvitationCreate, ctx: Ctx, admin: Admin) -> InvitationOut:
    """A single-use registration code (registration mode ``invite``)."""
    with ctx.db.session() as session:
        row, code = invitations.create_invitation(
            session,
            created_by=admin.user_id,
            email=body.email,
            ttl_hours=body.expires_in_hours or ctx.settings.invitation_ttl_hours,
        )
        session.commit()
    return InvitationOut(id=row.id, email=row.email, expires_at=row.expires_at, code=code)


@router.post(
    "/admin/users/{user_id}/revoke-sessions",
    response_model=SessionsOut,
    responses=_errors(401, 403, 404, 422),
)
def revoke_user_sessions(user_id: uuid.UUID, ctx: Ctx, _admin: Admin) -> SessionsOut:
    """End every session of a user now (refresh families and access tokens)."""
    return SessionsOut(not_before=service.admin_revoke_sessions(ctx, user_id=str(user_id)))


@router.post(
    "/admin/users/{user_id}/disable",
    response_model=UserAdminOut,
    responses=_errors(401, 403, 404, 422),
)
def disable_user(user_id: uuid.UUID, ctx: Ctx, _admin: Admin) -> UserAdminOut:
    """Disable an account: no login, and every session and API token is revoked."""
    user = service.set_disabled(ctx, user_id=str(user_id), disabled=True)
    return UserAdminOut(id=user.id, email=user.email, is_admin=user.is_admin, disabled=True)


@router.post(
    "/admin/users/{user_id}/enable",
    response_model=UserAdminOut,
    responses=_errors(401, 403, 404, 422),
)
def enable_user(user_id: uuid.UUID, ctx: Ctx, _admin: Admin) -> UserAdminOut:
    user = service.set_disabled(ctx, user_id=str(user_id), disabled=False)
    return UserAdminOut(id=user.id, email=user.email, is_admin=user.is_admin, disabled=False)
