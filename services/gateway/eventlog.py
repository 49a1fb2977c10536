"""The per-project event log: append with a gapless ``seq``, read pages back.

Appending increments ``gateway_projects.last_seq`` with ``UPDATE … RETURNING`` first: on
PostgreSQL that row lock is held until commit, so two writers for one project serialise
and seqs commit in order with no gap (a rolled-back append gives its seq back). The
unique ``event_id`` makes the log its own inbox: a redelivered event fails the insert and
is dropped. Events of unknown (or deleted) projects are dropped. An event that ends a run
(or deploys a model) also stages the project's webhook deliveries in the same transaction
(:func:`services.gateway.webhooks.stage_deliveries`).

Why the log is not on the service kit's inbox (:class:`shared.service.inbox.Inbox`): the
kit handles ONE envelope per transaction (claim it in the ``inbox`` table, apply, commit),
while the log's writer commits MANY per transaction — group commit
(:class:`services.gateway.writer.LogWriter`): a PostgreSQL commit waits for the WAL flush,
so one event per commit would cap the log at a few hundred events per second. And the log
needs no second claim row: the stored event is the claim (one read of the batch's
``event_id`` values first; a concurrent writer's duplicate fails the unique index at
commit and the batch is redone one by one). The guarantees are the kit's: an event is
acked only after the transaction storing it committed, and a redelivery changes nothing.
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
from services.gateway.webhooks import notification_kind, stage_deliveries
from shared.db import Database
from shared.events import Envelope

__all__ = [
    "Frame",
    "append",
    "append_many",
    "events_after",
    "events_after_async",
    "frame_text",
    "frames_after",
    "frames_after_async",
    "latest_seqs",
    "latest_seqs_async",
]


@dataclass(frozen=True)
class Frame:
    """A stored event ready to send: the WebSocket text frame is rendered once.

    ``event_type`` and ``run_id`` let the fan-out coalesce progress per run."""

    project_id: uuid.UUID
    seq: int
    text: str
    event_type: str = ""
    run_id: uuid.UUID | None = None


def _frame(project_id: uuid.UUID, seq: int, body: str, envelope: Envelope) -> Frame:
    return Frame(project_id, seq, frame_text(seq, body), envelope.type, envelope.run_id)


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
    return _frame(project_id, seq, body, envelope)


def append_many(db: Database, envelopes: Sequence[Envelope]) -> list[Frame | None]:
    """Append several events, in order, in ONE transaction with a handful of statements
    (the group commit of :class:`services.gateway.writer.LogWriter`): per project one
    counter increment by the batch's count, one multi-row insert, one update per run.

    Returns one entry per envelope, None where it was dropped. Should a concurrent writer
    store one of them first (the unique event id fails), the batch is redone one by one.
    """
    now = datetime.now(UTC)
    with db.session() as session:
        seen = set(
            session.connection()
            .execute(
                select(_EVENTS.c.event_id).where(_EVENTS.c.event_id.in_([e.id for e in envelopes]))
            )
            .scalars()
        )
        wanted: list[Envelope | None] = []
        counts: dict[uuid.UUID, int] = {}
        for envelope in envelopes:
            if envelope.project_id is None or envelope.id in seen:
                wanted.append(None)
                continue
            seen.add(envelope.id)
            wanted.append(envelope)
            counts[envelope.project_id] = counts.get(envelope.project_id, 0) + 1
        next_seq: dict[uuid.UUID, int] = {}
        for project_id in sorted(counts):  # a fixed lock order: no deadlock between writers
            last = (
                session.connection()
                .execute(
                    update(_PROJECTS)
                    .where(_PROJECTS.c.id == project_id)
                    .values(last_seq=_PROJECTS.c.last_seq + counts[project_id])
                    .returning(_PROJECTS.c.last_seq)
                )
                .scalar_one_or_none()
            )
            if last is not None:
                next_seq[project_id] = last - counts[project_id] + 1
        frames: list[Frame | None] = []
        rows: list[dict[str, object]] = []
        for item in wanted:
            if item is None or item.project_id not in next_seq:
                frames.append(None)
                continue
            seq = next_seq[item.project_id]
            next_seq[item.project_id] = seq + 1
            body = item.model_dump_json()
            rows.append(
                {
                    "project_id": item.project_id,
                    "seq": seq,
                    "event_id": item.id,
                    "run_id": item.run_id,
                    "type": item.type,
                    "body": body,
                    "stored_at": now,
                }
            )
            frames.append(_frame(item.project_id, seq, body, item))
        if rows:
            # Core, not the ORM's bulk insert: the same executemany at a third of the CPU
            session.connection().execute(_EVENTS.insert(), rows)
            stored = [
                e for e, f in zip(wanted, frames, strict=True) if e is not None and f is not None
            ]
            _update_runs(session, stored, now=now)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            return [append(db, envelope) for envelope in envelopes]
    return frames


# Core tables: the hot path's statements skip the ORM's bulk-persistence machinery
_EVENTS = Event.__table__  # type: ignore[attr-defined]
_RUNS = Run.__table__  # type: ignore[attr-defined]
_PROJECTS = Project.__table__  # type: ignore[attr-defined]

#: run id -> whether the run deploys (from its spec snapshot, which never changes)
_DEPLOYS: dict[uuid.UUID, bool] = {}
_DEPLOYS_MAX = 10_000


def _deploy_enabled(spec: object) -> bool:
    deploy = spec.get("deploy") if isinstance(spec, dict) else None
    return bool(isinstance(deploy, dict) and deploy.get("enabled", False))


def _update_runs(session: Session, envelopes: list[Envelope], *, now: datetime) -> None:
    """Fold the batch's events into the status of each run they name (one update per run)."""
    run_ids = {e.run_id for e in envelopes if e.run_id is not None}
    if not run_ids:
        return
    connection = session.connection()
    unknown = [r for r in run_ids if r not in _DEPLOYS]
    if unknown:  # a run's spec is its snapshot, fixed at creation: read it once
        if len(_DEPLOYS) > _DEPLOYS_MAX:
            _DEPLOYS.clear()
        for run_id, spec in connection.execute(
            select(_RUNS.c.id, _RUNS.c.spec).where(_RUNS.c.id.in_(unknown))
        ).all():
            _DEPLOYS[run_id] = _deploy_enabled(spec)
    runs = {
        run_id: (project_id, status)
        for run_id, project_id, status in connection.execute(
            select(_RUNS.c.id, _RUNS.c.project_id, _RUNS.c.status).where(
                _RUNS.c.id.in_(list(run_ids))
            )
        ).all()
    }
    changes: dict[uuid.UUID, dict[str, object]] = {}
    notices: list[tuple[Envelope, str]] = []
    for envelope in envelopes:
        known = runs.get(envelope.run_id)  # type: ignore[arg-type]
        if known is None or known[0] != envelope.project_id:
            continue
        project_id, status = known
        deploy_enabled = _DEPLOYS.get(envelope.run_id, False)  # type: ignore[arg-type]
        change = derive(envelope, status=status, deploy_enabled=deploy_enabled, now=now).values
        kind = notification_kind(envelope, change)
        if kind is not None:
            notices.append((envelope, kind))
        if change:
            changes.setdefault(envelope.run_id, {}).update(change)  # type: ignore[arg-type]
            runs[envelope.run_id] = (project_id, str(change.get("status", status)))  # type: ignore[index]
    for run_id, values in changes.items():
        connection.execute(update(_RUNS).where(_RUNS.c.id == run_id).values(**values))
    if notices:
        stage_deliveries(session, notices)


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
    deploy_enabled = _deploy_enabled(spec)
    change = derive(envelope, status=status, deploy_enabled=deploy_enabled, now=now)
    if change.values:
        session.execute(update(Run).where(col(Run.id) == envelope.run_id).values(**change.values))
    kind = notification_kind(envelope, change.values)
    if kind is not None:
        stage_deliveries(session, [(envelope, kind)])


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


def frames_after(
    db: Database, project_id: uuid.UUID, *, after: int, until: int, limit: int
) -> list[Frame]:
    """Stored events ``after < seq <= until`` as frames to fan out, in seq order."""
    query = (
        select(col(Event.seq), col(Event.body), col(Event.type), col(Event.run_id))
        .where(col(Event.project_id) == project_id, col(Event.seq) > after, col(Event.seq) <= until)
        .order_by(col(Event.seq))
        .limit(limit)
    )
    with db.session() as session:
        return [
            Frame(project_id, int(seq), frame_text(int(seq), str(body)), str(type_), run_id)
            for seq, body, type_, run_id in session.execute(query).all()
        ]


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


# -- the same reads on the event loop (shared.db.aio: no thread hop; the fan-out's poller
# and its gap reads between replicas) ---------------------------------------------------

_FRAMES_AFTER = """
SELECT seq, body, type, run_id FROM gateway_events
WHERE project_id = :project AND seq > :after AND seq <= :until
ORDER BY seq LIMIT :limit
"""


async def frames_after_async(
    db: Database, project_id: uuid.UUID, *, after: int, until: int, limit: int
) -> list[Frame]:
    """:func:`frames_after`, read with ``db.aio``."""
    rows = await db.aio.fetch(
        _FRAMES_AFTER,
        {"project": project_id, "after": after, "until": until, "limit": limit},
        types={"run_id": "uuid"},
    )
    return [
        Frame(
            project_id,
            int(r["seq"]),
            frame_text(int(r["seq"]), str(r["body"])),
            r["type"],
            r["run_id"],
        )
        for r in rows
    ]


async def latest_seqs_async(db: Database, project_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """:func:`latest_seqs`, read with ``db.aio`` (100 projects per statement)."""
    found: dict[uuid.UUID, int] = {}
    ids = list(project_ids)
    for start in range(0, len(ids), 100):
        chunk = ids[start : start + 100]
        names = [f"p{i}" for i in range(len(chunk))]
        rows = await db.aio.fetch(
            "SELECT id, last_seq FROM gateway_projects WHERE id IN "
            f"({', '.join(':' + n for n in names)})",
            dict(zip(names, chunk, strict=True)),
            types={"id": "uuid"},
        )
        found.update({r["id"]: int(r["last_seq"]) for r in rows})
    return found


_EVENTS_AFTER = """
SELECT seq, body FROM gateway_events
WHERE project_id = :project AND seq > :after AND seq <= :until
ORDER BY seq LIMIT :limit
"""


async def events_after_async(
    db: Database, project_id: uuid.UUID, *, after: int, until: int, limit: int
) -> list[tuple[int, str]]:
    """:func:`events_after` with ``until`` (a connection's catch-up), read with ``db.aio``."""
    rows = await db.aio.fetch(
        _EVENTS_AFTER, {"project": project_id, "after": after, "until": until, "limit": limit}
    )
    return [(int(r["seq"]), str(r["body"])) for r in rows]
