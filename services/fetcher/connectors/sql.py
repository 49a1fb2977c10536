"""``postgresql://`` and ``mysql://`` sources: one read-only query exported to Parquet.

The spec gives ``dataset.query`` or ``dataset.table`` (``SELECT * FROM "<table>"``); the
result is streamed in batches of ``AIDP_DB_BATCH_ROWS`` rows into one ``data.parquet``
(pyarrow), at most ``AIDP_DB_MAX_BYTES``, which is the dataset (the training templates and
custom scripts read Parquet). Revision: sha256 over the source, the query and the result's
blob name, known once the export is stored — so each fetch runs the query again, and an
unchanged result is stored once. Add ``ORDER BY`` for a revision that only changes with
the data (rows in another order are another file).

Connection: the host passes the SSRF guard's address rules (:func:`~..ssrf.check_host`:
internal addresses only when ``AIDP_FETCH_ALLOW_HOSTS`` names them) and the connection goes
to a checked address (PostgreSQL: ``hostaddr`` with the name kept for TLS; MySQL: the
address). User: the ``DB_USER`` secret, else the URI's user; password: the ``DB_PASSWORD``
secret. Never the fetcher's own ``~/.pgpass``, Kerberos ticket or environment.

Read-only: PostgreSQL sessions start with ``default_transaction_read_only=on`` and a
``statement_timeout``, the transaction is ``SET TRANSACTION READ ONLY`` and the query runs
as a server-side cursor (``DECLARE … CURSOR FOR``: one statement only); MySQL/MariaDB runs
``SET SESSION TRANSACTION READ ONLY``, ``START TRANSACTION READ ONLY``, the statement time
limit (``max_execution_time`` / MariaDB ``max_statement_time``), an unbuffered cursor, and
no multi-statements or ``LOCAL INFILE``. A write, a second statement or a timeout fails the
fetch with the server's message; the password never appears in a message or log.

Types: integers → int64, floating and decimal → float64, booleans, text/varchar/uuid →
string, json → string (JSON text), bytes → binary, dates → date32, timestamps → timestamp
(µs; with time zone in UTC); other types take the type pyarrow infers from the first batch
(a string when it cannot).
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.fetcher.connectors.base import Connector, Credentials, Progress, RemoteFile
from services.fetcher.errors import FetchFailed
from services.fetcher.ssrf import Address, check_host
from shared.data_sources import DbLocation, parse_db_uri
from shared.spec import Source
from shared.store import ManifestFile

__all__ = ["SqlConnector"]

log = logging.getLogger(__name__)

FILE_NAME = "data.parquet"

# PostgreSQL type OIDs (pg_type) → the Arrow type names of _arrow_type
_PG_TYPES = {
    16: "bool",
    20: "int64",
    21: "int64",
    23: "int64",
    26: "int64",
    700: "float64",
    701: "float64",
    1700: "float64",
    25: "string",
    19: "string",
    1042: "string",
    1043: "string",
    2950: "string",
    114: "json",
    3802: "json",
    17: "binary",
    1082: "date",
    1114: "timestamp",
    1184: "timestamptz",
}


def _mysql_types() -> dict[int, str]:
    from pymysql.constants import FIELD_TYPE as T

    return {
        T.TINY: "int64",
        T.SHORT: "int64",
        T.LONG: "int64",
        T.LONGLONG: "int64",
        T.INT24: "int64",
        T.YEAR: "int64",
        T.FLOAT: "float64",
        T.DOUBLE: "float64",
        T.DECIMAL: "float64",
        T.NEWDECIMAL: "float64",
        T.DATE: "date",
        T.DATETIME: "timestamp",
        T.TIMESTAMP: "timestamp",
        T.JSON: "json",
        T.VARCHAR: "text",
        T.VAR_STRING: "text",
        T.STRING: "text",
        T.ENUM: "string",
        T.SET: "string",
        # BLOB/TEXT columns: text or bytes, decided by the first value (see _column)
        T.TINY_BLOB: "text",
        T.MEDIUM_BLOB: "text",
        T.LONG_BLOB: "text",
        T.BLOB: "text",
    }


def _arrow_type(name: str) -> Any:
    import pyarrow as pa

    return {
        "bool": pa.bool_(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "string": pa.string(),
        "json": pa.string(),
        "binary": pa.binary(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us"),
        "timestamptz": pa.timestamp("us", tz="UTC"),
    }[name]


def _text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (uuid.UUID, decimal.Decimal, dt.date, dt.time, dt.timedelta)):
        return str(value)
    return str(value)


def _convert(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind in ("string",):
        return _text(value)
    if kind == "json":
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if kind == "float64":
        return float(value)
    if kind == "int64":
        return int(value)
    if kind == "binary":
        return bytes(value)
    return value


class _Export:
    """Rows of a cursor into one Parquet file, batch by batch, with a fixed schema."""

    def __init__(
        self,
        target: Path,
        names: list[str],
        kinds: list[str | None],
        max_bytes: int,
        progress: Progress,
        label: str,
    ) -> None:
        self.target, self.max_bytes, self.progress, self.label = target, max_bytes, progress, label
        seen: dict[str, int] = {}
        self.names = []
        for name in names:  # duplicate column names (SELECT 1, 1) get a suffix
            n = seen.get(name, 0)
            seen[name] = n + 1
            self.names.append(name if n == 0 else f"{name}_{n}")
        self.kinds = kinds  # None: decided from the first batch
        self.writer: Any = None
        self.schema: Any = None
        self.written = 0
        self.rows = 0

    def _decide(self, columns: list[list[Any]]) -> None:
        import pyarrow as pa

        fields = []
        for i, (name, kind) in enumerate(zip(self.names, self.kinds, strict=True)):
            values = [v for v in columns[i] if v is not None]
            if kind == "text":  # MySQL text/blob: bytes mean binary
                kind = "binary" if values and isinstance(values[0], bytes) else "string"
            if kind is None:
                try:
                    inferred = pa.array(values[:1000]).type if values else pa.string()
                except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                    inferred = pa.string()
                if pa.types.is_null(inferred):
                    inferred = pa.string()
                self.kinds[i] = "string" if pa.types.is_string(inferred) else "inferred"
                fields.append(pa.field(name, inferred))
                continue
            self.kinds[i] = kind
            fields.append(pa.field(name, _arrow_type(kind)))
        self.schema = pa.schema(fields)

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns: list[list[Any]] = [[row[i] for row in rows] for i in range(len(self.names))]
        if self.schema is None:
            self._decide(columns)
            self.writer = pq.ParquetWriter(self.target, self.schema, compression="zstd")
        arrays = []
        for i, field in enumerate(self.schema):
            kind = self.kinds[i] or "inferred"
            values = columns[i] if kind == "inferred" else [_convert(kind, v) for v in columns[i]]
            try:
                arrays.append(pa.array(values, type=field.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                raise FetchFailed(
                    f"{self.label}: the values of column {field.name!r} do not fit one type "
                    f"({field.type}); cast the column in the query."
                ) from None
        self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        self.rows += len(rows)
        self._account()

    def _account(self) -> None:
        size = self.target.stat().st_size if self.target.exists() else 0
        if size > self.max_bytes:
            raise FetchFailed(
                f"{self.label}: the result is larger than the {self.max_bytes} bytes allowed "
                "for database exports (AIDP_DB_MAX_BYTES); select fewer rows or columns."
            )
        if size > self.written:
            self.progress(size - self.written)
            self.written = size

    def close(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:  # no rows: an empty file with the declared columns
            self._decide([[] for _ in self.names])
            self.writer = pq.ParquetWriter(self.target, self.schema, compression="zstd")
            self.writer.write_table(pa.Table.from_pylist([], schema=self.schema))
        self.writer.close()
        self._account()


class SqlConnector(Connector):
    def __init__(
        self,
        *,
        allow_hosts: list[str],
        connect_timeout: float,
        statement_timeout: float,
        max_bytes: int,
        batch_rows: int,
    ) -> None:
        self.allow_hosts = allow_hosts
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.max_bytes = max_bytes
        self.batch_rows = batch_rows

    def pinned_revision(self, source: Source) -> str | None:
        return None

    def resolve(self, source: Source, creds: Credentials) -> str:
        return ""  # known once the result is stored (content_revision)

    def credentialed(self, creds: Credentials) -> bool:
        return bool(creds.db_password or creds.db_user)

    def content_revision(self, source: Source, files: list[ManifestFile]) -> str | None:
        text = f"{source.id}\n{source.query}\n{files[0].digest}"
        return hashlib.sha256(text.encode()).hexdigest()

    def list_files(self, source: Source, revision: str, creds: Credentials) -> list[RemoteFile]:
        return [RemoteFile(path=FILE_NAME, size=None)]

    def download(
        self,
        source: Source,
        revision: str,
        creds: Credentials,
        files: list[RemoteFile],
        workdir: Path,
        progress: Progress,
    ) -> Iterator[tuple[str, Path]]:
        location = parse_db_uri(source.uri)
        label = location.base
        user = creds.db_user or location.user
        if not user:
            raise FetchFailed(
                f"{label}: name the database user in the URI ({location.scheme}://user@host/db) "
                "or in a DB_USER secret."
            )
        addresses = check_host(location.host, location.port, allow=self.allow_hosts, label=label)
        target = workdir / FILE_NAME
        query = source.query or ""
        if location.scheme == "postgresql":
            self._postgres(location, addresses, user, creds, query, target, progress)
        else:
            self._mysql(location, addresses, user, creds, query, target, progress)
        yield FILE_NAME, target

    # -- PostgreSQL ----------------------------------------------------------------------

    def _postgres(
        self,
        location: DbLocation,
        addresses: list[Address],
        user: str,
        creds: Credentials,
        query: str,
        target: Path,
        progress: Progress,
    ) -> None:
        import psycopg

        label = location.base
        timeout_ms = int(self.statement_timeout * 1000)
        conn: Any = None
        failure: Exception | None = None
        for address in addresses:
            try:
                conn = psycopg.connect(
                    host=location.host,
                    hostaddr=str(address),
                    port=location.port,
                    dbname=location.database,
                    user=user,
                    password=creds.db_password or "",
                    connect_timeout=max(1, int(self.connect_timeout)),
                    sslmode=location.sslmode or "prefer",
                    gssencmode="disable",  # never the fetcher's own Kerberos ticket
                    passfile=os.devnull,  # never the fetcher's own ~/.pgpass
                    application_name="aidp-fetcher",
                    options="-c default_transaction_read_only=on "
                    f"-c statement_timeout={timeout_ms}",
                )
                break
            except psycopg.OperationalError as exc:
                failure = exc
                if _auth_failure(str(exc)):
                    break
        if conn is None:
            raise self._connect_failed(label, user, failure, creds)
        try:
            with conn:
                conn.execute("SET TRANSACTION READ ONLY")
                with conn.cursor(name="aidp_export") as cur:
                    cur.itersize = self.batch_rows
                    cur.execute(query)
                    names = [c.name for c in cur.description or []]
                    kinds = [_PG_TYPES.get(c.type_code) for c in cur.description or []]
                    export = _Export(target, names, kinds, self.max_bytes, progress, label)
                    while rows := cur.fetchmany(self.batch_rows):
                        export.write(rows)
                    export.close()
                conn.rollback()  # read only: nothing to commit
        except psycopg.errors.QueryCanceled:
            raise FetchFailed(
                f"The query on {label} ran longer than {self.statement_timeout:g} s "
                "(AIDP_DB_STATEMENT_TIMEOUT) and was cancelled."
            ) from None
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError) and conn.closed:
                raise FetchFailed(
                    f"The connection to {label} was lost during the query; it will be retried.",
                    retryable=True,
                ) from None
            raise FetchFailed(f"The query on {label} failed: {_pg_message(exc, creds)}") from None
        finally:
            conn.close()

    # -- MySQL / MariaDB -----------------------------------------------------------------

    def _mysql(
        self,
        location: DbLocation,
        addresses: list[Address],
        user: str,
        creds: Credentials,
        query: str,
        target: Path,
        progress: Progress,
    ) -> None:
        import pymysql
        import pymysql.cursors

        label = location.base
        conn: Any = None
        failure: Exception | None = None
        for address in addresses:
            try:
                conn = pymysql.connect(
                    host=str(address),
                    port=location.port,
                    user=user,
                    password=creds.db_password or "",
                    database=location.database,
                    connect_timeout=max(1, int(self.connect_timeout)),
                    read_timeout=max(1, int(self.statement_timeout) + 30),
                    charset="utf8mb4",
                    cursorclass=pymysql.cursors.SSCursor,
                    local_infile=False,
                    client_flag=0,  # no CLIENT.MULTI_STATEMENTS
                    autocommit=False,
                    read_default_file=None,
                )
                break
            except pymysql.err.OperationalError as exc:
                failure = exc
                if exc.args and exc.args[0] in (1044, 1045, 1698):
                    break
        if conn is None:
            raise self._connect_failed(label, user, failure, creds)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION TRANSACTION READ ONLY")
                limit_ms = int(self.statement_timeout * 1000)
                try:
                    cur.execute(f"SET SESSION max_execution_time = {limit_ms}")  # MySQL
                except pymysql.err.MySQLError:
                    cur.execute(f"SET SESSION max_statement_time = {limit_ms / 1000:.3f}")
                cur.execute("START TRANSACTION READ ONLY")
                cur.execute(query)
                names = [str(c[0]) for c in cur.description or []]
                types = _mysql_types()
                kinds = [types.get(int(c[1])) for c in cur.description or []]
                export = _Export(target, names, kinds, self.max_bytes, progress, label)
                while rows := cur.fetchmany(self.batch_rows):
                    export.write(list(rows))
                export.close()
            conn.rollback()
        except pymysql.err.MySQLError as exc:
            code = exc.args[0] if exc.args else 0
            message = str(exc.args[1]) if len(exc.args) > 1 else type(exc).__name__
            if code in (1317, 1969, 3024):  # interrupted / statement time exceeded
                raise FetchFailed(
                    f"The query on {label} ran longer than {self.statement_timeout:g} s "
                    "(AIDP_DB_STATEMENT_TIMEOUT) and was cancelled."
                ) from None
            if code in (2006, 2013):
                raise FetchFailed(
                    f"The connection to {label} was lost during the query; it will be retried.",
                    retryable=True,
                ) from None
            raise FetchFailed(f"The query on {label} failed: {_scrub(message, creds)}") from None
        finally:
            conn.close()

    # -- shared --------------------------------------------------------------------------

    @staticmethod
    def _connect_failed(
        label: str, user: str, failure: Exception | None, creds: Credentials
    ) -> FetchFailed:
        text = str(failure or "")
        if _auth_failure(text) or "1045" in text or "Access denied" in text:
            return FetchFailed(
                f"Could not log in to {label} as {user!r}: the server refused the credentials. "
                "Check the DB_PASSWORD (and DB_USER) secrets named in the spec."
            )
        reason = _scrub(text.strip().splitlines()[-1] if text.strip() else "no answer", creds)
        return FetchFailed(
            f"Could not connect to {label} ({reason}); it will be retried.", retryable=True
        )


def _auth_failure(text: str) -> bool:
    lowered = text.lower()
    return (
        "password authentication failed" in lowered
        or "no password supplied" in lowered
        or ("authentication failed" in lowered)
        or ("does not exist" in lowered and "role" in lowered)
    )


def _scrub(text: str, creds: Credentials) -> str:
    """A driver message without the password (servers never echo it; this makes sure)."""
    for secret in (creds.db_password,):
        if secret:
            text = text.replace(secret, "***")
    return text[:500]


def _pg_message(exc: Any, creds: Credentials) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return _scrub(str(primary or exc).strip().splitlines()[0], creds)
