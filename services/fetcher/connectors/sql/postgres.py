"""PostgreSQL (psycopg): a read-only session to a checked address, the query as a
server-side cursor (one statement only), its rows into the export.

Never the fetcher's own ``~/.pgpass`` (``passfile=/dev/null``) or Kerberos ticket
(``gssencmode=disable``); ``hostaddr`` is the checked address, the host name is kept for
TLS.
"""

from __future__ import annotations

import os
from typing import Any

from services.fetcher.connectors.sql.columns import PG_TYPES
from services.fetcher.connectors.sql.errors import (
    auth_failure,
    connect_failed,
    connection_lost,
    pg_message,
    timed_out,
)
from services.fetcher.connectors.sql.export import ExportJob
from services.fetcher.errors import FetchFailed

__all__ = ["export_postgres"]


def _connect(job: ExportJob) -> Any:
    """A connection to the first checked address that takes it (refused credentials stop
    the search: another address would refuse them too)."""
    import psycopg

    location = job.location
    timeout_ms = int(job.statement_timeout * 1000)
    failure: Exception | None = None
    for address in job.addresses:
        try:
            return psycopg.connect(
                host=location.host,
                hostaddr=str(address),
                port=location.port,
                dbname=location.database,
                user=job.user,
                password=job.creds.db_password or "",
                connect_timeout=max(1, int(job.connect_timeout)),
                sslmode=location.sslmode or "prefer",
                gssencmode="disable",  # never the fetcher's own Kerberos ticket
                passfile=os.devnull,  # never the fetcher's own ~/.pgpass
                application_name="aidp-fetcher",
                options=f"-c default_transaction_read_only=on -c statement_timeout={timeout_ms}",
            )
        except psycopg.OperationalError as exc:
            failure = exc
            if auth_failure(str(exc)):
                break
    raise connect_failed(job.label, job.user, failure, job.creds)


def export_postgres(job: ExportJob) -> None:
    """Run ``job.query`` read-only and write its rows to ``job.target``; FetchFailed."""
    import psycopg

    conn = _connect(job)
    try:
        with conn:
            conn.execute("SET TRANSACTION READ ONLY")
            with conn.cursor(name="aidp_export") as cur:
                cur.itersize = job.batch_rows
                cur.execute(job.query)
                names = [c.name for c in cur.description or []]
                kinds = [PG_TYPES.get(c.type_code) for c in cur.description or []]
                export = job.export(names, kinds)
                while rows := cur.fetchmany(job.batch_rows):
                    export.write(rows)
                export.close()
            conn.rollback()  # read only: nothing to commit
    except psycopg.errors.QueryCanceled:
        raise timed_out(job.label, job.statement_timeout) from None
    except psycopg.Error as exc:
        if isinstance(exc, psycopg.OperationalError) and conn.closed:
            raise connection_lost(job.label) from None
        raise FetchFailed(
            f"The query on {job.label} failed: {pg_message(exc, job.creds)}"
        ) from None
    finally:
        conn.close()
