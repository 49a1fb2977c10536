"""One query's result into one Parquet file: what the drivers are given (:class:`ExportJob`)
and the writer they feed batch by batch (:class:`Export`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.fetcher.connectors.base import Credentials, Progress
from services.fetcher.connectors.sql.columns import arrow_type, convert
from services.fetcher.errors import FetchFailed
from services.fetcher.ssrf import Address
from shared.data_sources import DbLocation

__all__ = ["Export", "ExportJob"]


@dataclass(frozen=True)
class ExportJob:
    """One export for a driver: the server (and its checked addresses), the login, the
    query, the Parquet file to write and the administrator's limits (``AIDP_DB_*``)."""

    location: DbLocation
    addresses: list[Address]
    user: str
    creds: Credentials
    query: str
    target: Path
    progress: Progress
    connect_timeout: float
    statement_timeout: float
    max_bytes: int
    batch_rows: int

    @property
    def label(self) -> str:
        """The database in messages (no user, no password)."""
        return self.location.base

    def export(self, names: list[str], kinds: list[str | None]) -> Export:
        """The writer for a result with these columns."""
        return Export(self.target, names, kinds, self.max_bytes, self.progress, self.label)


class Export:
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
            fields.append(pa.field(name, arrow_type(kind)))
        self.schema = pa.schema(fields)

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        """Append one batch of rows (the first one fixes the schema)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns: list[list[Any]] = [[row[i] for row in rows] for i in range(len(self.names))]
        if self.schema is None:
            self._decide(columns)
            self.writer = pq.ParquetWriter(self.target, self.schema, compression="zstd")
        arrays = []
        for i, field in enumerate(self.schema):
            kind = self.kinds[i] or "inferred"
            values = columns[i] if kind == "inferred" else [convert(kind, v) for v in columns[i]]
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
        """Finish the file (an empty result: a file with the declared columns)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:  # no rows: an empty file with the declared columns
            self._decide([[] for _ in self.names])
            self.writer = pq.ParquetWriter(self.target, self.schema, compression="zstd")
            self.writer.write_table(pa.Table.from_pylist([], schema=self.schema))
        self.writer.close()
        self._account()
