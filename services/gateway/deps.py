"""Dependencies of every route: who is calling (:data:`CurrentUser`) and what they may do
on a project (:func:`authorize`, wrapped by :data:`ProjectViewer` … :data:`RunEditor`).

Authorisation rule (docs/design.md §9): a user acts only on projects where they hold a role
(viewer < editor < owner). No role: 404, as if the project did not exist. A role too low
for the action: 403. Platform admins read every project (as viewers) but change only
those where they hold a role.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.gateway.downstream import Downstreams
from services.gateway.fanout import Hub
from services.gateway.identity import Identity, TokenVerifier
from services.gateway.metrics import GatewayMetrics
from services.gateway.models import Member, Project, Run
from services.gateway.scopes import InsufficientScope, required_scope
from services.gateway.settings import GatewaySettings
from shared.db import Database
from shared.errors import Forbidden, NotFound, Unauthenticated
from shared.runtime import ServiceRuntime

if TYPE_CHECKING:  # wsguard re-authorises with authorize() below
    from services.gateway.wsguard import SessionGuard

__all__ = [
    "Access",
    "CurrentUser",
    "Gateway",
    "GatewayDep",
    "ProjectEditor",
    "ProjectOwner",
    "ProjectViewer",
    "RunAccess",
    "RunEditor",
    "RunViewer",
    "authorize",
    "role_rank",
]

_RANK = {"viewer": 1, "editor": 2, "owner": 3}


def role_rank(role: str | None) -> int:
    return _RANK.get(role or "", 0)


@dataclass
class Gateway:
    """Everything a route needs, built once in ``main.create_app``."""

    settings: GatewaySettings
    runtime: ServiceRuntime
    verifier: TokenVerifier
    downstream: Downstreams
    hub: Hub
    metrics: GatewayMetrics
    guard: SessionGuard

    @property
    def db(self) -> Database:
        return self.runtime.db


async def _gateway(request: Request) -> Gateway:  # async: no thread-pool hop per request
    return request.app.state.gateway  # type: ignore[no-any-return]


GatewayDep = Annotated[Gateway, Depends(_gateway)]

_bearer = HTTPBearer(
    auto_error=False,
    description="An access token (JWT from /api/auth/login) or an API token (aidp_…).",
)


def route_template(request: Request) -> str:
    """The matched route's path template (``/api/runs/{run_id}``), prefixes included."""
    route = request.scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path or request.url.path)


async def _current_user(
    request: Request,
    gateway: GatewayDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Identity:
    if credentials is None:
        raise Unauthenticated("missing bearer token")
    identity = await gateway.verifier.verify(credentials.credentials)
    needed = required_scope(request.method, route_template(request))
    if needed not in identity.scopes:
        raise InsufficientScope(needed)
    return identity


CurrentUser = Annotated[Identity, Depends(_current_user)]


@dataclass(frozen=True)
class Access:
    """A project and the caller's effective role on it."""

    project: Project
    role: str
    identity: Identity


def authorize(db: Database, *, identity: Identity, project_id: uuid.UUID, need: str) -> Access:
    """The caller's access to ``project_id``; NotFound without a role, Forbidden if too low."""
    with db.session() as session:
        project = session.get(Project, project_id)
        member = session.get(Member, (project_id, identity.user_id)) if project else None
    role = member.role if member is not None else ("viewer" if identity.is_admin else None)
    if project is None or role is None:
        raise NotFound("project not found")
    if role_rank(role) < role_rank(need):
        raise Forbidden(f"your role on this project is {role}; this needs {need}")
    return Access(project=project, role=role, identity=identity)


def _project_access(need: str):  # type: ignore[no-untyped-def]
    def dependency(gateway: GatewayDep, user: CurrentUser, project_id: uuid.UUID) -> Access:
        return authorize(gateway.db, identity=user, project_id=project_id, need=need)

    return dependency


@dataclass(frozen=True)
class RunAccess:
    access: Access
    run: Run


def _run_access(need: str):  # type: ignore[no-untyped-def]
    def dependency(gateway: GatewayDep, user: CurrentUser, run_id: uuid.UUID) -> RunAccess:
        with gateway.db.session() as session:
            run = session.get(Run, run_id)
        if run is None:
            raise NotFound("run not found")
        try:
            access = authorize(gateway.db, identity=user, project_id=run.project_id, need=need)
        except NotFound:
            raise NotFound("run not found") from None
        return RunAccess(access=access, run=run)

    return dependency


ProjectViewer = Annotated[Access, Depends(_project_access("viewer"))]
ProjectEditor = Annotated[Access, Depends(_project_access("editor"))]
ProjectOwner = Annotated[Access, Depends(_project_access("owner"))]
RunViewer = Annotated[RunAccess, Depends(_run_access("viewer"))]
RunEditor = Annotated[RunAccess, Depends(_run_access("editor"))]
