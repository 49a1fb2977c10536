"""Database column types as Arrow types, and values converted to them.

A column's kind is one of the names of :func:`arrow_type`, ``"text"`` (MySQL text/blob:
string or binary, decided by the first value) or None (inferred from the first batch).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from typing import Any

__all__ = ["PG_TYPES", "arrow_type", "convert", "mysql_types"]

# PostgreSQL type OIDs (pg_type) → the Arrow type names of arrow_type
PG_TYPES = {
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


def mysql_types() -> dict[int, str]:
    """MySQL field types (pymysql's FIELD_TYPE) → the kinds of :func:`arrow_type`."""
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
        # BLOB/TEXT columns: text or bytes, decided by the first value (see export.Export)
        T.TINY_BLOB: "text",
        T.MEDIUM_BLOB: "text",
        T.LONG_BLOB: "text",
        T.BLOB: "text",
    }


def arrow_type(name: str) -> Any:
    """The Arrow type of a column kind."""
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


def convert(kind: str, value: Any) -> Any:
    """A driver's value as the Arrow type of ``kind`` takes it."""
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
