"""Ids as people type them: a full id, or any unique prefix of one (issue 16 item 6).

Tables print ids shortened to the shortest prefix (at least :data:`SHORT`) that tells the
listed rows apart; ``--wide`` and ``--json`` print them whole. Every command that takes an
id takes such a prefix: one match is used, none answers 404, several answer a usage error
(exit 2) listing the matches. Projects also go by name: your own project first (names are
unique per owner), then a project shared with you if only one has that name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from cli.sdk import ApiError, Client, Json

__all__ = [
    "AmbiguousId",
    "SHORT",
    "pick",
    "resolve_deployment",
    "resolve_model",
    "resolve_project",
    "resolve_run",
    "short_ids",
]

#: the least characters a shortened id shows
SHORT = 8
_FULL_ID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


class AmbiguousId(ApiError):
    """A prefix that matches more than one id (a usage error: exit 2)."""

    def __init__(self, kind: str, ref: str, matches: Sequence[tuple[str, str]]) -> None:
        listed = "; ".join(f"{i} ({label})" if label else i for i, label in matches[:10])
        more = f" and {len(matches) - 10} more" if len(matches) > 10 else ""
        super().__init__(
            400,
            "ambiguous_id",
            f"{ref!r} matches {len(matches)} {kind}s: {listed}{more}; type more of the id",
        )

    def __str__(self) -> str:
        return self.message


def pick(kind: str, ref: str, candidates: Iterable[tuple[str, str]]) -> str:
    """The id among ``candidates`` ((id, label) pairs) that ``ref`` names: itself, or the
    only one it prefixes (case-insensitive)."""
    ref = ref.strip()
    wanted = ref.lower()
    pairs = list(dict.fromkeys((str(i), label) for i, label in candidates if i))
    for i, _ in pairs:
        if i.lower() == wanted:
            return i
    matches = [(i, label) for i, label in pairs if wanted and i.lower().startswith(wanted)]
    if len(matches) == 1:
        return matches[0][0]
    if not matches:
        raise ApiError(404, "not_found", f"{kind} {ref!r} not found")
    raise AmbiguousId(kind, ref, matches)


def short_ids(ids: Iterable[Any], *, least: int = SHORT) -> int:
    """How many leading characters tell ``ids`` apart (at least ``least``)."""
    values = sorted({str(i) for i in ids if i})
    width = least
    for a, b in zip(values, values[1:], strict=False):
        same = next((n for n, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
        width = max(width, same + 1)
    return width


def resolve_project(client: Client, ref: str) -> Json:
    """A project by id, unique id prefix or name (yours first)."""
    projects = client.list_projects()
    named = [p for p in projects if p.get("name") == ref]
    owned = [p for p in named if p.get("role") == "owner"]
    if len(owned) == 1:
        return owned[0]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise AmbiguousId(
            "project", ref, [(str(p["id"]), f"{p.get('name')}, {p.get('role')}") for p in named]
        )
    found = pick("project", ref, ((str(p["id"]), str(p.get("name", ""))) for p in projects))
    return next(p for p in projects if str(p["id"]) == found)


def _runs(client: Client) -> list[tuple[str, str]]:
    out = []
    for project in client.list_projects():
        for run in client.list_runs(str(project["id"])):
            out.append((str(run["id"]), f"{project.get('name')} #{run.get('number')}"))
    return out


def resolve_run(client: Client, ref: str) -> str:
    """A run id from a full id or a unique prefix (asks the server only for a prefix)."""
    if _FULL_ID.match(ref.strip()):
        return ref.strip()
    return pick("run", ref, _runs(client))


def resolve_model(client: Client, ref: str) -> str:
    """A model version id from a full id or a unique prefix."""
    if _FULL_ID.match(ref.strip()):
        return ref.strip()
    candidates = []
    for project in client.list_projects():
        for model in client.list_models(str(project["id"])):
            candidates.append((str(model["id"]), f"{project.get('name')} v{model.get('version')}"))
    return pick("model", ref, candidates)


def resolve_deployment(client: Client, ref: str) -> str:
    """A deployment id from a full id or a unique prefix (``GET /api/deployments`` where the
    server has it, else the deployments the runs of your projects made)."""
    if _FULL_ID.match(ref.strip()):
        return ref.strip()
    candidates: list[tuple[str, str]] = []
    try:
        listed = client.request("GET", "/api/deployments")
        rows = listed if isinstance(listed, list) else listed.get("items", [])
        candidates = [(str(d["id"]), str(d.get("project_name") or "")) for d in rows]
    except ApiError as exc:
        if exc.status not in (404, 405):
            raise
        for project in client.list_projects():
            for run in client.list_runs(str(project["id"])):
                if run.get("deployment_id"):
                    candidates.append(
                        (str(run["deployment_id"]), f"{project.get('name')} #{run.get('number')}")
                    )
    return pick("deployment", ref, candidates)
