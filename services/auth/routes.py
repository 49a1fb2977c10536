"""Public routes, mounted at ``/api/auth`` (the gateway forwards them path for path).

Handlers are sync functions: argon2 and the database run in FastAPI's thread pool.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from services.auth import api_tokens, service
from services.auth.deps import Admin, ClientAddress, Ctx, CurrentUser, SessionUser
from services.auth.errors import ERROR_RESPONSES
from services.auth.models import ApiToken
from services.auth.schemas import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenOut,
    Credentials,
    JwksOut,
    LogoutIn,
    PasswordChange,
    PasswordChanged,
    RefreshIn,
    RotatedKey,
    TokenPairOut,
    UserOut,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/auth", tags=["auth"])


def _errors(*codes: int) -> dict[int | str, dict[str, object]]:
    return {code: ERROR_RESPONSES[code] for code in codes}


def _pair(pair: service.TokenPair) -> TokenPairOut:
    return TokenPairOut(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )


def _token_out(row: ApiToken) -> dict[str, object]:
    return {
        "id": row.id,
        "name": row.name,
        "hint": f"aidp_{row.selector[:8]}…",
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "last_used_at": row.last_used_at,
    }


@router.post("/register", status_code=201, response_model=UserOut, responses=_errors(409, 422))
def register(body: Credentials, ctx: Ctx) -> UserOut:
    user = service.register(ctx, email=body.email, password=body.password)
    return UserOut.model_validate(user, from_attributes=True)


@router.post("/login", response_model=TokenPairOut, responses=_errors(401, 422, 429))
def login(body: Credentials, ctx: Ctx, address: ClientAddress) -> TokenPairOut:
    return _pair(service.login(ctx, email=body.email, password=body.password, address=address))


@router.post("/refresh", response_model=TokenPairOut, responses=_errors(401, 422))
def refresh(body: RefreshIn, ctx: Ctx) -> TokenPairOut:
    return _pair(service.refresh(ctx, refresh_token=body.refresh_token))


@router.post("/logout", status_code=204, responses=_errors(401, 403, 422))
def logout(ctx: Ctx, user: SessionUser, body: LogoutIn | None = None) -> Response:
    service.logout(ctx, user_id=user.user_id, refresh_token=body.refresh_token if body else None)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


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
    with ctx.db.session() as session:
        row, value = api_tokens.create_api_token(
            session, user_id=user.user_id, name=body.name, expires_in_days=days
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
