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

import secrets
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
    "RawJson",
    "RunRead",
    "json_response",
    "project_runs",
    "projects_answer",
    "projects_of",
]

# the spec is read as its stored JSON text and spliced into the answer as it is (RawJson):
# decoding it into dicts only to encode it again was a fifth of the route's own CPU
_PROJECT_COLUMNS = (
    "p.id, p.name, CAST(p.spec AS TEXT) AS spec, r.status AS status, p.current_run_id, "
    "m.role AS role, p.created_at, p.updated_at"
)
_PROJECT_TYPES = {
    "id": "uuid",
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


def _pg_time(column: str) -> str:
    """``column`` (timestamptz; the pool's sessions are in UTC) as pydantic writes a UTC
    datetime: seconds, microseconds only when not zero, ``Z``."""
    return (
        f"to_char({column}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN to_char({column}, 'US') "
        f"= '000000' THEN '' ELSE '.' || to_char({column}, 'US') END || 'Z'"
    )


# PostgreSQL writes the whole ProjectOut list itself: one text value passed through as the
# body, with no row, UUID or datetime object made in Python (issue 14, item 2)
_MY_PROJECTS_JSON = f"""
SELECT coalesce(json_agg(json_build_object(
    'id', p.id, 'name', p.name, 'spec', p.spec, 'status', r.status,
    'current_run_id', p.current_run_id, 'role', coalesce(m.role, 'viewer'),
    'created_at', {_pg_time("p.created_at")}, 'updated_at', {_pg_time("p.updated_at")}
) ORDER BY p.created_at DESC), '[]')::text AS body
FROM gateway_projects p
{{join}} gateway_members m ON m.project_id = p.id AND m.user_id = :user
LEFT JOIN gateway_runs r ON r.id = p.current_run_id
"""


def _sqlite_uuid(column: str) -> str:
    """``column`` (a UUID stored as 32 hex digits) as pydantic writes a UUID."""
    parts = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
    return "lower(" + " || '-' || ".join(f"substr({column}, {a}, {n})" for a, n in parts) + ")"


def _sqlite_time(column: str) -> str:
    """``column`` (UTC stored as ``YYYY-MM-DD HH:MM:SS[.ffffff]``) as pydantic writes a UTC
    datetime: seconds, microseconds only when not zero, ``Z``."""
    seconds = f"substr({column}, 1, 10) || 'T' || substr({column}, 12, 8)"
    return (
        f"CASE WHEN length({column}) <= 19 OR substr({column}, 21) = '000000' "
        f"THEN {seconds} || 'Z' ELSE {seconds} || '.' || substr({column}, 21, 6) || 'Z' END"
    )


# the same on SQLite (embedded mode), with its JSON functions: the subquery hands the
# objects to the aggregate newest first (SQLite does not flatten an ordered subquery
# into an aggregate)
_MY_PROJECTS_SQLITE_JSON = f"""
SELECT coalesce(json_group_array(json(item)), '[]') AS body FROM (
    SELECT json_object(
        'id', {_sqlite_uuid("p.id")}, 'name', p.name, 'spec', json(p.spec),
        'status', r.status, 'current_run_id', {_sqlite_uuid("p.current_run_id")},
        'role', coalesce(m.role, 'viewer'),
        'created_at', {_sqlite_time("p.created_at")},
        'updated_at', {_sqlite_time("p.updated_at")}
    ) AS item
    FROM gateway_projects p
    {{join}} gateway_members m ON m.project_id = p.id AND m.user_id = :user
    LEFT JOIN gateway_runs r ON r.id = p.current_run_id
    ORDER BY p.created_at DESC
)
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


class RawJson(str):
    """A column's stored JSON text (written by the platform's own JSON columns, so valid
    JSON), put into an answer as it is instead of being decoded and encoded again."""


def _encode(content: Any) -> bytes:
    """One ``to_json`` call for the whole answer: each :class:`RawJson` value is encoded as
    a per-answer random marker string first, then the output is split at the markers and
    the raw texts go in between, in order (no one can put the marker into a value: it is
    fresh for every answer and never shown)."""
    raws: list[bytes] = []
    marker = secrets.token_hex(16)

    def swap(row: Any) -> Any:
        if not isinstance(row, dict):
            return row
        out = row
        for key, value in row.items():
            if isinstance(value, RawJson):
                if out is row:
                    out = dict(row)
                out[key] = marker
                raws.append(value.encode())
        return out

    body = pydantic_core.to_json(
        [swap(item) for item in content] if isinstance(content, list) else swap(content)
    )
    if not raws:
        return body
    pieces = body.split(b'"' + marker.encode() + b'"')
    spliced = [pieces[0]]
    for raw, piece in zip(raws, pieces[1:], strict=True):
        spliced += (raw, piece)
    return b"".join(spliced)


def json_response(content: Any, status_code: int = 200) -> Response:
    """``content`` (rows: dicts of JSON-able values, UUIDs, datetimes, :class:`RawJson`)
    as a JSON answer."""
    return Response(
        content=_encode(content), status_code=status_code, media_type="application/json"
    )


def _raw_spec(row: Row) -> Row:
    if row.get("spec") is not None:
        row["spec"] = RawJson(row["spec"])
    return row


def _role(row: Row, identity: Identity) -> str | None:
    role = row.pop("role")
    return role if role is not None else ("viewer" if identity.is_admin else None)


async def projects_answer(db: AsyncDatabase, *, user: Identity, everything: bool) -> bytes:
    """The JSON body of :func:`projects_of`, written by the database itself (PostgreSQL's
    or SQLite's JSON functions; from the rows on any other): no row, UUID or datetime
    object is made in Python."""
    template = {"postgresql": _MY_PROJECTS_JSON, "sqlite": _MY_PROJECTS_SQLITE_JSON}.get(db.kind)
    if template is None:
        return _encode(await projects_of(db, user=user, everything=everything))
    sql = template.format(join="LEFT JOIN" if everything else "JOIN")
    row = await db.fetch_one(sql, {"user": user.user_id})
    return str(row["body"] if row else "[]").encode()


async def projects_of(db: AsyncDatabase, *, user: Identity, everything: bool) -> list[Row]:
    """ProjectOut rows of the projects ``user`` holds a role on, newest first
    (``everything``: every project, as viewer where they hold none — admins only)."""
    rows = await db.fetch(
        _ALL_PROJECTS if everything else _MY_PROJECTS,
        {"user": user.user_id},
        types=_PROJECT_TYPES,
    )
    for row in rows:
        _raw_spec(row)
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
    return ProjectRow(row=_raw_spec(row), identity=user)


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
