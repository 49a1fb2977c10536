"""MySQL / MariaDB (pymysql): a read-only session to a checked address with the statement
time limit, the query on an unbuffered cursor, its rows into the export.

No multi-statements (``client_flag=0``), no ``LOCAL INFILE``, no option files.
"""

from __future__ import annotations

from typing import Any

from services.fetcher.connectors.sql.columns import mysql_types
from services.fetcher.connectors.sql.errors import (
    connect_failed,
    connection_lost,
    scrub,
    timed_out,
)
from services.fetcher.connectors.sql.export import ExportJob
from services.fetcher.errors import FetchFailed

__all__ = ["export_mysql"]

#: Access denied (to the database, for the user, for a socket-auth user): stop trying.
_REFUSED = (1044, 1045, 1698)
#: Interrupted, or the statement time limit (MariaDB, MySQL) exceeded.
_TIMED_OUT = (1317, 1969, 3024)
#: Server gone away, connection lost during the query.
_LOST = (2006, 2013)


def _connect(job: ExportJob) -> Any:
    """A connection to the first checked address that takes it (refused credentials stop
    the search: another address would refuse them too)."""
    import pymysql
    import pymysql.cursors

    failure: Exception | None = None
    for address in job.addresses:
        try:
            return pymysql.connect(
                host=str(address),
                port=job.location.port,
                user=job.user,
                password=job.creds.db_password or "",
                database=job.location.database,
                connect_timeout=max(1, int(job.connect_timeout)),
                read_timeout=max(1, int(job.statement_timeout) + 30),
                charset="utf8mb4",
                cursorclass=pymysql.cursors.SSCursor,
                local_infile=False,
                client_flag=0,  # no CLIENT.MULTI_STATEMENTS
                autocommit=False,
                read_default_file=None,
            )
        except pymysql.err.OperationalError as exc:
            failure = exc
            if exc.args and exc.args[0] in _REFUSED:
                break
    raise connect_failed(job.label, job.user, failure, job.creds)


def export_mysql(job: ExportJob) -> None:
    """Run ``job.query`` read-only and write its rows to ``job.target``; FetchFailed."""
    import pymysql

    conn = _connect(job)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION READ ONLY")
            limit_ms = int(job.statement_timeout * 1000)
            try:
                cur.execute(f"SET SESSION max_execution_time = {limit_ms}")  # MySQL
            except pymysql.err.MySQLError:
                cur.execute(f"SET SESSION max_statement_time = {limit_ms / 1000:.3f}")
            cur.execute("START TRANSACTION READ ONLY")
            cur.execute(job.query)
            names = [str(c[0]) for c in cur.description or []]
            types = mysql_types()
            kinds = [types.get(int(c[1])) for c in cur.description or []]
            export = job.export(names, kinds)
            while rows := cur.fetchmany(job.batch_rows):
                export.write(list(rows))
            export.close()
        conn.rollback()
    except pymysql.err.MySQLError as exc:
        code = exc.args[0] if exc.args else 0
        message = str(exc.args[1]) if len(exc.args) > 1 else type(exc).__name__
        if code in _TIMED_OUT:
            raise timed_out(job.label, job.statement_timeout) from None
        if code in _LOST:
            raise connection_lost(job.label) from None
        raise FetchFailed(f"The query on {job.label} failed: {scrub(message, job.creds)}") from None
    finally:
        conn.close()
