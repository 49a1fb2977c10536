"""Database access: one engine per service from one URL (SQLite or PostgreSQL).

Each service owns its tables (prefixed with its name) and its Alembic migration chain
(``services/<name>/migrations``, version table ``alembic_version_<name>``); the shared
outbox and inbox tables have their own chain in ``shared/db/migrations``.
:meth:`Database.migrate` upgrades a deployed database in place.

Async code never calls a session on the event loop: it reads through
:attr:`Database.aio` or runs a synchronous unit of work with :func:`run_sync`
(:mod:`shared.db.offload`, the rule; ``tests/unit/test_async_rule.py`` enforces it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, create_engine

from shared.db.aio import AsyncDatabase
from shared.db.migrate import upgrade
from shared.db.offload import run_sync

__all__ = ["SHARED_MIGRATIONS", "AsyncDatabase", "Database", "run_sync"]

SHARED_MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Database:
    """An engine plus session factory for one service; :attr:`aio` reads the same
    database asynchronously (hot read routes, :mod:`shared.db.aio`)."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 32) -> None:
        self.url = url
        if url.startswith("sqlite"):
            kwargs: dict[str, object] = {"connect_args": {"check_same_thread": False}}
            if url in ("sqlite://", "sqlite:///:memory:"):
                kwargs["poolclass"] = StaticPool
            self.engine: Engine = create_engine(url, echo=echo, **kwargs)  # type: ignore[arg-type]
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(
                url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20
            )
        #: async read-only access (no connection is opened until its first use)
        self.aio = AsyncDatabase(url, pool_size=pool_size, sync_engine=self.engine)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session; the caller commits. Rolled back if the block raises.

        Blocking: from async code only inside a function run with :func:`run_sync`."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
            except BaseException:
                session.rollback()
                raise

    def migrate(self, *script_locations: Path, service: str) -> None:
        """Upgrade the shared chain and then each of ``script_locations`` to head."""
        upgrade(self.engine, SHARED_MIGRATIONS, version_table=f"alembic_version_{service}_shared")
        for location in script_locations:
            upgrade(self.engine, location, version_table=f"alembic_version_{service}")

    def dispose(self) -> None:
        self.aio.close_nowait()
        self.engine.dispose()
