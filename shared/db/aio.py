"""Async reads on the event loop: no thread-pool hop, no ORM, no pre-ping.

:class:`AsyncDatabase` runs read-only SQL for hot API routes and hands back rows as
dicts keyed by column name, decoded to the Python types the ORM would give
(``uuid.UUID``, parsed JSON, ``datetime``), so a route can serialise them straight to JSON.

- PostgreSQL: psycopg ``AsyncConnection`` s in autocommit (one round trip per statement,
  no BEGIN/COMMIT) and ``default_transaction_read_only`` (the server refuses a write sent
  here), kept in a small pool of at most ``pool_size`` connections opened on demand.
  There is no ping on checkout: a connection that turns out to be dead (the server
  restarted) is dropped and the statement retried once on a fresh one — safe because
  everything here only reads.
- SQLite file (embedded mode): aiosqlite connections (one worker thread each, opened
  with ``PRAGMA query_only``), at most ``min(pool_size, 4)``; WAL readers never wait for
  the writer.
- Anything else (an in-memory SQLite database, which a second connection could not see):
  the statement runs on the service's synchronous engine in a worker thread.

SQL is written once with ``:name`` parameters; ``uuid.UUID`` parameters are bound as the
ORM stores them (native on PostgreSQL, 32 hex digits on SQLite). ``types`` names the
result columns to decode on SQLite (``"uuid"``, ``"json"``, ``"datetime"`` — aware, in
UTC); PostgreSQL's driver decodes them itself (the session's time zone is UTC).

The pool belongs to one event loop: used from another loop (tests start several), it
starts over with new connections. Call :meth:`AsyncDatabase.close` when the service stops.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from shared.db.offload import run_sync

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["AsyncDatabase", "Row"]

log = logging.getLogger(__name__)

Row = dict[str, Any]

_SQLITE_MAX_CONNECTIONS = 4
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def _decode_uuid(value: Any) -> Any:
    return uuid.UUID(value) if isinstance(value, str) else value


def _decode_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _decode_datetime(value: Any) -> Any:
    """UTC, as the ORM's ``UTCDateTime`` returns it (SQLite stores UTC without offset)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)
    return value


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "uuid": _decode_uuid,
    "json": _decode_json,
    "datetime": _decode_datetime,
}


class _Pool:
    """At most ``size`` connections of one event loop, opened on demand, reused LIFO."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[Any]],
        close: Callable[[Any], Awaitable[None]],
        size: int,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self._connect = connect
        self._close = close
        self._idle: list[Any] = []
        self._open: list[Any] = []
        self._slots = asyncio.Semaphore(size)

    async def acquire(self) -> Any:
        await self._slots.acquire()
        if self._idle:
            return self._idle.pop()
        try:
            conn = await self._connect()
        except BaseException:
            self._slots.release()
            raise
        self._open.append(conn)
        return conn

    def release(self, conn: Any) -> None:
        self._idle.append(conn)
        self._slots.release()

    async def discard(self, conn: Any) -> None:
        """Forget a broken connection (its slot is freed)."""
        if conn in self._open:
            self._open.remove(conn)
        self._slots.release()
        try:
            await self._close(conn)
        except Exception as exc:  # already broken: closing it may fail too
            log.debug("closing a broken connection failed: %r", exc)

    async def close(self) -> None:
        conns, self._open, self._idle = self._open, [], []
        for conn in conns:
            try:
                await self._close(conn)
            except Exception as exc:
                log.debug("closing a pooled connection failed: %r", exc)


class AsyncDatabase:
    """Read-only async access to a service's database (see the module docstring)."""

    def __init__(self, url: str, *, pool_size: int = 32, sync_engine: Engine | None = None) -> None:
        self.url = url
        self.pool_size = pool_size
        self._sync_engine = sync_engine
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend == "postgresql":
            self.kind = "postgresql"
            query = {k: v if isinstance(v, str) else v[-1] for k, v in parsed.query.items()}
            self._conninfo: dict[str, Any] = {
                k: v
                for k, v in {
                    "host": parsed.host,
                    "port": parsed.port,
                    "user": parsed.username,
                    "password": parsed.password,
                    "dbname": parsed.database,
                    **query,
                }.items()
                if v is not None
            }
            # this pool only reads (the server refuses a write sent through it), and
            # timestamps come back in UTC, as the ORM's UTCDateTime returns them
            self._conninfo["options"] = " ".join(
                filter(
                    None,
                    [
                        self._conninfo.get("options"),
                        "-c default_transaction_read_only=on -c TimeZone=UTC",
                    ],
                )
            )
        elif backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
            self.kind = "sqlite"
            self._path = str(parsed.database)
        else:
            if sync_engine is None:
                raise ValueError(f"no async driver for {parsed.drivername} without a sync engine")
            self.kind = "sync"
        self._pool: _Pool | None = None
        self._sql: dict[str, str] = {}

    # -- connections -----------------------------------------------------------------------

    async def _connect_postgres(self) -> Any:
        import psycopg

        return await psycopg.AsyncConnection.connect(autocommit=True, **self._conninfo)

    async def _connect_sqlite(self) -> Any:
        import aiosqlite

        pending = aiosqlite.connect(self._path, timeout=10.0)
        # a read-only worker; as a daemon it never holds up interpreter exit
        thread = getattr(pending, "_thread", None)
        if thread is not None:
            thread.daemon = True
        conn = await pending
        conn.row_factory = sqlite3.Row  # column names without a cursor round trip
        await conn.execute("PRAGMA query_only=ON")
        await conn.execute("PRAGMA busy_timeout=10000")
        return conn

    @staticmethod
    async def _close_conn(conn: Any) -> None:
        await conn.close()

    def _current_pool(self) -> _Pool:
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is None or pool.loop is not loop:
            if pool is not None:
                self._abandon(pool)
            if self.kind == "postgresql":
                pool = _Pool(self._connect_postgres, self._close_conn, self.pool_size)
            else:
                size = min(self.pool_size, _SQLITE_MAX_CONNECTIONS)
                pool = _Pool(self._connect_sqlite, self._close_conn, size)
            self._pool = pool
        return pool

    def _abandon(self, pool: _Pool) -> None:
        """Drop the connections of a pool whose event loop is gone, without awaiting."""
        for conn in pool._open:
            try:
                if self.kind == "postgresql":
                    conn.pgconn.finish()
                else:
                    conn.stop()
            except Exception as exc:
                log.debug("dropping a connection of a finished loop failed: %r", exc)
        pool._open, pool._idle = [], []

    def close_nowait(self) -> None:
        """Drop every pooled connection without awaiting (from synchronous code)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            self._abandon(pool)

    async def close(self) -> None:
        """Close every pooled connection (of the running loop's pool)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if pool.loop is asyncio.get_running_loop():
            await pool.close()
        else:
            self._abandon(pool)

    # -- statements ------------------------------------------------------------------------

    def _statement(self, sql: str) -> str:
        """``sql`` in the driver's parameter style (cached per text)."""
        done = self._sql.get(sql)
        if done is None:
            done = _PARAM.sub(r"%(\1)s", sql) if self.kind == "postgresql" else sql
            self._sql[sql] = done
        return done

    def _params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        if not params:
            return {}
        if self.kind == "postgresql":
            return dict(params)
        return {k: v.hex if isinstance(v, uuid.UUID) else v for k, v in params.items()}

    async def fetch(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        types: Mapping[str, str] | None = None,
    ) -> list[Row]:
        """Every row of a read-only statement, as dicts keyed by column name."""
        statement, values = self._statement(sql), self._params(params)
        if self.kind == "postgresql":
            names, rows = await self._fetch_postgres(statement, values)
            return [dict(zip(names, row, strict=True)) for row in rows]
        if self.kind == "sqlite":
            names, rows = await self._fetch_sqlite(statement, values)
        else:
            names, rows = await run_sync(self._fetch_sync, statement, values)
        decoders = [
            (name, _DECODERS[kind]) for name, kind in (types or {}).items() if name in names
        ]
        result = []
        for row in rows:
            item = dict(zip(names, row, strict=True))
            for name, decode in decoders:
                item[name] = decode(item[name])
            result.append(item)
        return result

    async def fetch_one(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        types: Mapping[str, str] | None = None,
    ) -> Row | None:
        rows = await self.fetch(sql, params, types=types)
        return rows[0] if rows else None

    async def _fetch_postgres(
        self, sql: str, params: dict[str, Any]
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        import psycopg

        pool = self._current_pool()
        for attempt in (1, 2):
            conn = await pool.acquire()
            try:
                cursor = await conn.execute(sql, params)
                rows = await cursor.fetchall()
                names = [column.name for column in cursor.description or ()]
            except psycopg.OperationalError:
                await pool.discard(conn)
                if attempt == 2 or not conn.closed:
                    raise
                continue  # the connection died (server restart): once more on a new one
            except BaseException:
                if conn.closed or conn.info.transaction_status != 0:  # not IDLE
                    await pool.discard(conn)
                else:
                    pool.release(conn)
                raise
            pool.release(conn)
            return names, rows
        raise AssertionError("unreachable")

    async def _fetch_sqlite(
        self, sql: str, params: dict[str, Any]
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        pool = self._current_pool()
        conn = await pool.acquire()
        try:
            # one hop to the connection's thread: execute, fetch and close the cursor there
            rows = list(await conn.execute_fetchall(sql, params))
        except ValueError:  # aiosqlite: the connection is closed
            await pool.discard(conn)
            raise
        except BaseException:
            pool.release(conn)
            raise
        pool.release(conn)
        names = list(rows[0].keys()) if rows else []
        return names, [tuple(row) for row in rows]

    def _fetch_sync(self, sql: str, params: dict[str, Any]) -> tuple[list[str], list[Any]]:
        assert self._sync_engine is not None
        with self._sync_engine.connect() as conn:
            result = conn.execute(text(sql), params)
            return list(result.keys()), [tuple(row) for row in result.all()]
