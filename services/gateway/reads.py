"""The hot read path: projects and runs read on the event loop, access checked in the same
query, answers serialised straight from the rows (issue 14, item 2).

Each route here is ``async`` and so are its dependencies: one statement through
:class:`shared.db.aio.AsyncDatabase` (psycopg in autocommit on PostgreSQL, aiosqlite on
an SQLite file; no thread-pool hop, no ORM objects, no pre-ping) fetches the rows *and*
the caller's role, and the JSON comes from the row dicts in one ``pydantic_core.to_json``
call — the same serialiser, and so the same output, as the ``ProjectOut`` / ``RunOut``
models the routes still declare for the OpenAPI document.

Authorisation is that of :func:`services.gateway.deps.authorize` (docs/design.md §9): no role on
the project → 404 (platform admins read every project as viewers).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import pydantic_core
from fastapi import Depends, Response

from services.gateway.deps import CurrentUser, GatewayDep
from services.gateway.identity import Identity
from shared.db.aio import AsyncDatabase, Row
from shared.errors import NotFound

__all__ = [
    "ProjectRead",
    "RunRead",
    "json_response",
    "project_runs",
    "projects_of",
]

_PROJECT_COLUMNS = (
    "p.id, p.name, p.spec, r.status AS status, p.current_run_id, m.role AS role, "
    "p.created_at, p.updated_at"
)
_PROJECT_TYPES = {
    "id": "uuid",
    "spec": "json",
    "current_run_id": "uuid",
    "created_at": "datetime",
    "updated_at": "datetime",
}

# the columns of RunOut, in its field order
_RUN_COLUMNS = (
    "r.id, r.project_id, r.number, r.status, r.error, r.progress, r.model_version, "
    "r.deployment_id, r.endpoint, r.created_at, r.updated_at, r.preparing_at, "
    "r.training_at, r.deploying_at, r.finished_at"
)
_RUN_TYPES = {
    "id": "uuid",
    "project_id": "uuid",
    "progress": "json",
    "deployment_id": "uuid",
    "created_at": "datetime",
    "updated_at": "datetime",
    "preparing_at": "datetime",
    "training_at": "datetime",
    "deploying_at": "datetime",
    "finished_at": "datetime",
}

_MY_PROJECTS = f"""
SELECT {_PROJECT_COLUMNS}
FROM gateway_projects p
JOIN gateway_members m ON m.project_id = p.id AND m.user_id = :user
LEFT JOIN gateway_runs r ON r.id = p.current_run_id
ORDER BY p.created_at DESC
"""

_ALL_PROJECTS = f"""
SELECT {_PROJECT_COLUMNS}
FROM gateway_projects p
LEFT JOIN gateway_members m ON m.project_id = p.id AND m.user_id = :user
LEFT JOIN gateway_runs r ON r.id = p.current_run_id
ORDER BY p.created_at DESC
"""

_ONE_PROJECT = f"""
SELECT {_PROJECT_COLUMNS}
FROM gateway_projects p
LEFT JOIN gateway_members m ON m.project_id = p.id AND m.user_id = :user
LEFT JOIN gateway_runs r ON r.id = p.current_run_id
WHERE p.id = :project
"""

_PROJECT_RUNS = f"""
SELECT m.role AS role, {_RUN_COLUMNS}
FROM gateway_projects p
LEFT JOIN gateway_members m ON m.project_id = p.id AND m.user_id = :user
LEFT JOIN gateway_runs r ON r.project_id = p.id
WHERE p.id = :project
ORDER BY r.number DESC
"""

_ONE_RUN = f"""
SELECT m.role AS role, {_RUN_COLUMNS}
FROM gateway_runs r
JOIN gateway_projects p ON p.id = r.project_id
LEFT JOIN gateway_members m ON m.project_id = r.project_id AND m.user_id = :user
WHERE r.id = :run
"""


def json_response(content: Any, status_code: int = 200) -> Response:
    """``content`` (rows: dicts of JSON-able values, UUIDs, datetimes) as a JSON answer."""
    return Response(
        content=pydantic_core.to_json(content),
        status_code=status_code,
        media_type="application/json",
    )


def _role(row: Row, identity: Identity) -> str | None:
    role = row.pop("role")
    return role if role is not None else ("viewer" if identity.is_admin else None)


async def projects_of(db: AsyncDatabase, *, user: Identity, everything: bool) -> list[Row]:
    """ProjectOut rows of the projects ``user`` holds a role on, newest first
    (``everything``: every project, as viewer where they hold none — admins only)."""
    rows = await db.fetch(
        _ALL_PROJECTS if everything else _MY_PROJECTS,
        {"user": user.user_id},
        types=_PROJECT_TYPES,
    )
    for row in rows:
        if row["role"] is None:
            row["role"] = "viewer"
    return rows


@dataclass(frozen=True)
class ProjectRow:
    """A project as ``ProjectOut`` (``row``, role included) that the caller may read."""

    row: Row
    identity: Identity


async def _project_read(
    gateway: GatewayDep, user: CurrentUser, project_id: uuid.UUID
) -> ProjectRow:
    row = await gateway.db.aio.fetch_one(
        _ONE_PROJECT, {"user": user.user_id, "project": project_id}, types=_PROJECT_TYPES
    )
    if row is None:
        raise NotFound("project not found")
    role = row["role"] if row["role"] is not None else ("viewer" if user.is_admin else None)
    if role is None:
        raise NotFound("project not found")
    row["role"] = role
    return ProjectRow(row=row, identity=user)


async def project_runs(db: AsyncDatabase, *, user: Identity, project_id: uuid.UUID) -> list[Row]:
    """RunOut rows of the project, newest first; NotFound without a role on it."""
    rows = await db.fetch(
        _PROJECT_RUNS, {"user": user.user_id, "project": project_id}, types=_RUN_TYPES
    )
    if not rows or _role(rows[0], user) is None:
        raise NotFound("project not found")
    for row in rows[1:]:
        del row["role"]
    return [row for row in rows if row["id"] is not None]


@dataclass(frozen=True)
class RunRow:
    """A run as ``RunOut`` (``row``) that the caller may read, and their role."""

    row: Row
    role: str
    identity: Identity


async def _run_read(gateway: GatewayDep, user: CurrentUser, run_id: uuid.UUID) -> RunRow:
    row = await gateway.db.aio.fetch_one(
        _ONE_RUN, {"user": user.user_id, "run": run_id}, types=_RUN_TYPES
    )
    role = _role(row, user) if row is not None else None
    if row is None or role is None:
        raise NotFound("run not found")
    return RunRow(row=row, role=role, identity=user)


ProjectRead = Annotated[ProjectRow, Depends(_project_read)]
RunRead = Annotated[RunRow, Depends(_run_read)]
