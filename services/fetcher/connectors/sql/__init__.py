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

Modules: :mod:`.connector` (the connector contract), :mod:`.postgres` and :mod:`.mysql` (one
driver each: connect, read-only session, cursor), :mod:`.export` (rows into Parquet),
:mod:`.columns` (database types to Arrow types), :mod:`.errors` (driver errors as readable
FetchFailed, never with the password).

Types: integers → int64, floating and decimal → float64, booleans, text/varchar/uuid →
string, json → string (JSON text), bytes → binary, dates → date32, timestamps → timestamp
(µs; with time zone in UTC); other types take the type pyarrow infers from the first batch
(a string when it cannot).
"""

from __future__ import annotations

from services.fetcher.connectors.sql.connector import SqlConnector

__all__ = ["SqlConnector"]
