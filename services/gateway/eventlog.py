"""The per-project event log: append with a gapless ``seq``, read pages back.

Appending increments ``gateway_projects.last_seq`` with ``UPDATE … RETURNING`` first: on
PostgreSQL that row lock is held until commit, so two writers for one project serialise
and seqs commit in order with no gap (a rolled-back append gives its seq back). The
unique ``event_id`` makes the log its own inbox: a redelivered event fails the insert and
is dropped. Events of unknown (or deleted) projects are dropped.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from services.gateway.models import Event, Project, Run
from services.gateway.status import derive
from shared.db import Database
from shared.events import Envelope

__all__ = ["Frame", "append", "events_after", "frame_text", "latest_seqs"]


@dataclass(frozen=True)
class Frame:
    """A stored event ready to send: the WebSocket text frame is rendered once."""

    project_id: uuid.UUID
    seq: int
    text: str


def frame_text(seq: int, body: str) -> str:
    """``{"type": "event", "seq": n, "event": <envelope>}`` without re-serialising it."""
    return f'{{"type":"event","seq":{seq},"event":{body}}}'


def append(db: Database, envelope: Envelope) -> Frame | None:
    """Store ``envelope`` in its project's log and update its run's status.

    Returns the frame to fan out, or None when the event was dropped (no project, unknown
    or deleted project, or a duplicate).
    """
    project_id = envelope.project_id
    if project_id is None:
        return None
    body = envelope.model_dump_json()
    now = datetime.now(UTC)
    with db.session() as session:
        seq = session.execute(
            update(Project)
            .where(col(Project.id) == project_id)
            .values(last_seq=col(Project.last_seq) + 1)
            .returning(col(Project.last_seq))
        ).scalar_one_or_none()
        if seq is None:
            session.rollback()
            return None
        try:
            session.execute(
                insert(Event).values(
                    project_id=project_id,
                    seq=seq,
                    event_id=envelope.id,
                    run_id=envelope.run_id,
                    type=envelope.type,
                    body=body,
                    stored_at=now,
                )
            )
        except IntegrityError:
            session.rollback()  # seen before: the seq increment is rolled back too
            return None
        if envelope.run_id is not None:
            _update_run(session, envelope, project_id=project_id, now=now)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            return None
    return Frame(project_id=project_id, seq=seq, text=frame_text(seq, body))


def _update_run(
    session: Session, envelope: Envelope, *, project_id: uuid.UUID, now: datetime
) -> None:
    row = session.execute(
        select(col(Run.status), col(Run.spec)).where(
            col(Run.id) == envelope.run_id, col(Run.project_id) == project_id
        )
    ).first()
    if row is None:
        return
    status, spec = row
    deploy_enabled = bool((spec or {}).get("deploy", {}).get("enabled", False))
    change = derive(envelope, status=status, deploy_enabled=deploy_enabled, now=now)
    if change.values:
        session.execute(update(Run).where(col(Run.id) == envelope.run_id).values(**change.values))


def events_after(
    db: Database,
    project_id: uuid.UUID,
    *,
    after: int,
    limit: int,
    until: int | None = None,
    run_id: uuid.UUID | None = None,
    types: Sequence[str] | None = None,
) -> list[tuple[int, str]]:
    """Stored ``(seq, envelope JSON)`` with ``after < seq [<= until]``, in seq order."""
    query = (
        select(col(Event.seq), col(Event.body))
        .where(col(Event.project_id) == project_id, col(Event.seq) > after)
        .order_by(col(Event.seq))
        .limit(limit)
    )
    if until is not None:
        query = query.where(col(Event.seq) <= until)
    if run_id is not None:
        query = query.where(col(Event.run_id) == run_id)
    if types:
        query = query.where(col(Event.type).in_(list(types)))
    with db.session() as session:
        return [(int(seq), str(body)) for seq, body in session.execute(query).all()]


def latest_seqs(db: Database, project_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """``last_seq`` of each existing project among ``project_ids``."""
    if not project_ids:
        return {}
    with db.session() as session:
        rows = session.execute(
            select(col(Project.id), col(Project.last_seq)).where(
                col(Project.id).in_(list(project_ids))
            )
        ).all()
    return {pid: int(seq) for pid, seq in rows}
