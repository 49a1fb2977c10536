"""Spec approvals and the audit trail of a project.

A run uses its requester's credentials, so it runs the stored spec only if the requester
wrote it or approved that very spec (:func:`check_spec`); otherwise they are shown what
changed (dotted paths and a YAML diff) and confirm it with its hash. Every approval, spec
change, run start and membership change leaves an :class:`AuditEntry` in the transaction
that made it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import uuid
from typing import Any

import yaml
from sqlalchemy import select
from sqlmodel import col

from services.gateway.errors import SpecChanged
from services.gateway.identity import Identity
from services.gateway.models import AuditEntry, Member, Project, SpecApproval
from shared.runtime import ServiceRuntime
from shared.service.clock import utcnow

__all__ = ["approve", "audit", "audit_trail", "check_spec", "spec_diff", "spec_hash"]


def spec_hash(spec: dict[str, Any]) -> str:
    """SHA-256 (hex) of the spec's canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _changed_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths (``train.args.epochs``, ``secrets``) whose values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        paths: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                paths.append(path)
            else:
                paths.extend(_changed_paths(old[key], new[key], path))
        return paths
    return [] if old == new else [prefix or "."]


def _yaml(spec: dict[str, Any] | None) -> list[str]:
    if not spec:
        return []
    text = yaml.safe_dump(spec, sort_keys=True, default_flow_style=False, allow_unicode=True)
    return text.splitlines(keepends=True)


def spec_diff(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """Unified diff of the YAML of ``old`` (the approved spec; None: nothing approved) and
    ``new``."""
    return "".join(
        difflib.unified_diff(
            _yaml(old),
            _yaml(new),
            fromfile="approved" if old is not None else "(none approved)",
            tofile="current",
        )
    )


def audit(session: Any, project_id: uuid.UUID, action: str, **fields: Any) -> None:
    """Add an audit entry to ``session`` (committed with the change it records)."""
    session.add(AuditEntry(project_id=project_id, action=action, **fields))


def approve(
    session: Any, project_id: uuid.UUID, user_id: uuid.UUID, spec: dict[str, Any], digest: str
) -> None:
    """Record that ``user_id`` approved ``spec`` (hash ``digest``) of the project."""
    approval = session.get(SpecApproval, (project_id, user_id))
    if approval is None:
        approval = SpecApproval(project_id=project_id, user_id=user_id, spec_hash=digest, spec=spec)
    else:
        approval.spec_hash, approval.spec, approval.approved_at = digest, spec, utcnow()
    session.add(approval)


def check_spec(
    session: Any, project: Project, *, identity: Identity, confirm_spec_hash: str | None
) -> None:
    """Let the stored spec run with the requester's credentials only if the requester
    wrote it, approved this very spec before, or confirms it now (``confirm_spec_hash``
    equal to the current hash, which records the approval); else :class:`SpecChanged`."""
    digest = spec_hash(project.spec)
    user_id = identity.user_id
    approval = session.get(SpecApproval, (project.id, user_id))
    if confirm_spec_hash is not None:
        if confirm_spec_hash == digest:
            already = approval is not None and approval.spec_hash == digest
            approve(session, project.id, user_id, project.spec, digest)
            if not already:
                audit(
                    session,
                    project.id,
                    "spec_approved",
                    actor_id=user_id,
                    actor_email=identity.email or "",
                    spec_hash=digest,
                )
            return
        reason = "confirm_spec_hash is not the hash of the current spec"
    elif project.spec_changed_by == user_id or (
        approval is not None and approval.spec_hash == digest
    ):
        return
    else:
        reason = "the spec was changed since you last wrote or approved it"
    changer = project.spec_changed_by
    changer_email = None
    if changer is not None:
        member = session.get(Member, (project.id, changer))
        # a member who left since is still named, from the audit trail
        changer_email = (
            member.email
            if member is not None
            else session.execute(
                select(col(AuditEntry.actor_email))
                .where(
                    col(AuditEntry.project_id) == project.id,
                    col(AuditEntry.actor_id) == changer,
                )
                .order_by(col(AuditEntry.id).desc())
                .limit(1)
            ).scalar()
        )
    old = approval.spec if approval is not None else None
    raise SpecChanged(
        f"{reason}; review the diff and start again with confirm_spec_hash",
        details={
            "spec_hash": digest,
            "approved_spec_hash": approval.spec_hash if approval is not None else None,
            "changed_by": str(changer) if changer is not None else None,
            "changed_by_email": changer_email or None,
            "changed_at": project.spec_changed_at.isoformat() if project.spec_changed_at else None,
            "changed_paths": _changed_paths(old or {}, project.spec),
            "diff": spec_diff(old, project.spec),
        },
    )


def audit_trail(
    runtime: ServiceRuntime, *, project_id: uuid.UUID, after: int = 0, limit: int = 200
) -> list[AuditEntry]:
    """The project's audit entries with ``id > after``, oldest first."""
    with runtime.db.session() as session:
        return list(
            session.execute(
                select(AuditEntry)
                .where(col(AuditEntry.project_id) == project_id, col(AuditEntry.id) > after)
                .order_by(col(AuditEntry.id))
                .limit(limit)
            ).scalars()
        )
