"""A small stand-in for the auth service's public JWKS and internal API (unit tests only).

It signs tokens exactly as the contract says (EdDSA, iss/aud/sub/exp, kid header), so the
gateway's verification runs for real; the integration tests use the real auth service.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from shared.contracts.identity import IntrospectOut
from shared.scopes import ALL_SCOPES


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class _Token(BaseModel):
    token: str


class _Recorder:
    """Pure ASGI middleware noting each HTTP request's path (no per-request overhead)."""

    def __init__(self, app: Any, seen: list[str]) -> None:
        self.app, self.seen = app, seen

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append(scope["path"])
        await self.app(scope, receive, send)


class AuthStub:
    """Users by email, Ed25519 keys by kid, API tokens by value."""

    def __init__(self) -> None:
        self.keys: dict[str, Ed25519PrivateKey] = {}
        self.active = self.rotate()
        self.users: dict[str, uuid.UUID] = {}
        self.api_tokens: dict[str, uuid.UUID] = {}
        self.api_token_scopes: dict[str, list[str]] = {}
        self.not_before: dict[uuid.UUID, float] = {}  # GET /internal/users/{id}/sessions
        self.jwks_fetches = 0
        self.seen: list[str] = []  # every path the stub was asked for, in order
        self.app = self._build()

    def rotate(self) -> str:
        kid = uuid.uuid4().hex[:8]
        self.keys[kid] = Ed25519PrivateKey.generate()
        self.active = kid
        return kid

    def user(self, email: str | None = None) -> tuple[uuid.UUID, str]:
        email = email or f"u{uuid.uuid4().hex[:8]}@example.com"
        user_id = self.users.setdefault(email, uuid.uuid4())
        return user_id, email

    def token(
        self,
        user_id: uuid.UUID,
        email: str = "",
        *,
        admin: bool = False,
        kid: str | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": "aidp",
            "aud": "aidp-api",
            "sub": str(user_id),
            "email": email,
            "adm": admin,
            "iat": now,
            "exp": now + 900,
        }
        body.update(claims)
        kid = kid or self.active
        return jwt.encode(body, self.keys[kid], algorithm="EdDSA", headers={"kid": kid})

    def api_token(self, user_id: uuid.UUID, scopes: list[str] | None = None) -> str:
        value = "aidp_" + uuid.uuid4().hex
        self.api_tokens[value] = user_id
        if scopes is not None:
            self.api_token_scopes[value] = scopes
        return value

    def retire(self, kid: str) -> None:
        """Stop publishing ``kid`` (a revoked signing key)."""
        self.keys.pop(kid)

    def _build(self) -> FastAPI:
        app = FastAPI()
        app.add_middleware(_Recorder, seen=self.seen)

        @app.get("/api/auth/jwks")
        def jwks() -> dict[str, Any]:
            self.jwks_fetches += 1
            keys = []
            for kid, key in self.keys.items():
                x = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
                keys.append(
                    {"kty": "OKP", "crv": "Ed25519", "x": _b64url(x), "kid": kid, "alg": "EdDSA"}
                )
            return {"keys": keys}

        @app.post("/api/auth/login")
        def login(body: dict[str, Any]) -> JSONResponse:
            response = JSONResponse({"echo": body}, status_code=200, headers={"X-Stub": "yes"})
            response.set_cookie("a", "1")
            response.set_cookie("b", "2")
            return response

        @app.get("/api/auth/oidc/config")
        def oidc_config() -> dict[str, Any]:  # the login page asks; SSO is off here
            return {"enabled": False, "label": None, "login_url": None}

        @app.get("/api/auth/me")
        def echo(request: Request) -> dict[str, Any]:
            return {"headers": dict(request.headers), "query": str(request.query_params)}

        @app.post("/internal/introspect")
        def introspect(body_in: _Token) -> JSONResponse:
            user_id = self.api_tokens.get(body_in.token)
            if user_id is None:
                return JSONResponse({"error": {"code": "unauthenticated", "message": "no"}}, 401)
            email = next((e for e, u in self.users.items() if u == user_id), "")
            # the answer auth gives, in the shared contract's shape (a drift fails here)
            answer = IntrospectOut(
                user_id=str(user_id),
                email=email,
                is_admin=False,
                kind="api",
                scopes=self.api_token_scopes.get(
                    body_in.token, sorted(s.value for s in ALL_SCOPES)
                ),
            )
            return JSONResponse(answer.model_dump(mode="json"))

        @app.get("/internal/users/{user_id}/sessions")
        def sessions(user_id: uuid.UUID) -> dict[str, Any]:
            not_before = self.not_before.get(user_id)
            return {"not_before": None if not_before is None else not_before}

        @app.get("/internal/users/lookup")
        def lookup(email: str = Query(...)) -> JSONResponse:
            user_id = self.users.get(email)
            if user_id is None:
                return JSONResponse(
                    {"error": {"code": "not_found", "message": "no such user"}}, 404
                )
            return JSONResponse({"id": str(user_id), "email": email})

        return app
