"""The ``postgresql://`` / ``mysql://`` connector: no revision before the export (the
result's blob name makes it), one file (``data.parquet``), written by the scheme's driver."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from services.fetcher.connectors.base import Connector, Credentials, Progress, RemoteFile
from services.fetcher.connectors.sql.export import ExportJob
from services.fetcher.connectors.sql.mysql import export_mysql
from services.fetcher.connectors.sql.postgres import export_postgres
from services.fetcher.errors import FetchFailed
from services.fetcher.ssrf import check_host
from shared.data_sources import parse_db_uri
from shared.spec import Source
from shared.store import ManifestFile

__all__ = ["FILE_NAME", "SqlConnector"]

FILE_NAME = "data.parquet"


class SqlConnector(Connector):
    """One read-only query of a PostgreSQL or MySQL/MariaDB database, as one Parquet file
    (see the package docstring)."""

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
        job = ExportJob(
            location=location,
            addresses=check_host(location.host, location.port, allow=self.allow_hosts, label=label),
            user=user,
            creds=creds,
            query=source.query or "",
            target=workdir / FILE_NAME,
            progress=progress,
            connect_timeout=self.connect_timeout,
            statement_timeout=self.statement_timeout,
            max_bytes=self.max_bytes,
            batch_rows=self.batch_rows,
        )
        if location.scheme == "postgresql":
            export_postgres(job)
        else:
            export_mysql(job)
        yield FILE_NAME, job.target
