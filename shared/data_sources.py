"""Proprietary data sources in the spec (issue 18): ``s3://`` object stores and
``postgresql://`` / ``mysql://`` databases.

``dataset`` stays a plain URI for every source, or becomes a mapping for the options these
sources take::

    dataset: s3://my-bucket/reviews/                 # endpoint: AWS, or the S3_ENDPOINT_URL secret
    dataset: {uri: s3://my-bucket/reviews/, endpoint: https://minio.example.com, region: eu-west-1}
    dataset: {uri: postgresql://db.example.com:5432/sales, query: "SELECT text, label FROM reviews"}
    dataset: {uri: mysql://db.example.com/sales, table: reviews}

Rules held here (422 from the API, the field named):

- ``s3://bucket[/prefix]``: a DNS-compatible bucket name (3-63 lowercase letters, digits,
  dots, dashes); the prefix printable, without ``.``/``..`` segments. ``endpoint`` is an
  ``https://`` (or ``http://``) base URL without user info, query or fragment; ``region`` a
  region name. Neither with a database source.
- ``postgresql://[user@]host[:port]/database[?sslmode=…]`` (``postgres://`` too) and
  ``mysql://[user@]host[:port]/database``: the host a hostname or IP literal, never a
  password in the URI (it belongs in the ``DB_PASSWORD`` secret); exactly one of ``query``
  (one statement, at most 100 000 characters) or ``table`` (``name`` or ``schema.name``,
  letters, digits, ``_`` and ``$``; quoted by the connector).

The fetcher turns these into :class:`shared.spec.Source` objects whose ``id`` is the cache
name: ``s3://bucket/prefix``, and for a database ``<scheme>://host:port/db?table=<name>`` or
``?query=<first 16 hex of sha256(query)>`` (so two queries on one database are two entries).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "DB_SCHEMES",
    "DEFAULT_PORTS",
    "DatasetSpec",
    "DbLocation",
    "SOURCE_SCHEMES",
    "parse_db_uri",
    "parse_s3_uri",
    "table_query",
]

DB_SCHEMES = ("postgresql", "mysql")
SOURCE_SCHEMES = ("s3", *DB_SCHEMES)
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
MAX_QUERY_CHARS = 100_000

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_DB_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_$.-]{0,62}$")
_DB_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.$-]{0,62}$")
_IDENT = r"[A-Za-z_][A-Za-z0-9_$]{0,62}"
_TABLE = re.compile(rf"^{_IDENT}(\.{_IDENT})?$")
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _printable(value: str) -> bool:
    return all(c.isprintable() for c in value)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket[/prefix]`` → (bucket, prefix); raises ValueError with a readable message."""
    rest = uri.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(
            f"{uri!r}: an S3 source is s3://bucket/prefix with a bucket name of 3 to 63 "
            "lowercase letters, digits, dots and dashes"
        )
    if len(prefix) > 1024 or not _printable(prefix):
        raise ValueError(f"{uri!r}: the S3 prefix must be printable, at most 1024 characters")
    if any(part in (".", "..") for part in prefix.split("/")):
        raise ValueError(f"{uri!r}: the S3 prefix may not contain '.' or '..' segments")
    return bucket, prefix


class DbLocation(BaseModel):
    """A database URI, parsed (never a password: that is a secret)."""

    model_config = ConfigDict(frozen=True)

    scheme: Literal["postgresql", "mysql"]
    host: str
    port: int
    database: str
    user: str | None = None
    sslmode: str | None = None

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/{self.database}"


def parse_db_uri(uri: str) -> DbLocation:
    """``postgresql://[user@]host[:port]/db[?sslmode=…]`` or ``mysql://[user@]host[:port]/db``."""
    from shared.spec import is_host_address

    if not _printable(uri) or len(uri) > 1024:
        raise ValueError(f"{uri!r}: a database URI must be printable, at most 1024 characters")
    parts = urlsplit(uri)
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    if scheme not in DB_SCHEMES:
        raise ValueError(f"{uri!r}: a database source is postgresql:// or mysql://")
    if parts.password is not None:
        raise ValueError(
            f"{scheme}:// URI: never put a password in the URI (it would be stored and shown "
            "with the spec); store it as the secret DB_PASSWORD and name it in secrets"
        )
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise ValueError(f"{uri!r}: invalid port") from None
    host = parts.hostname or ""
    if not is_host_address(host):
        raise ValueError(f"{uri!r}: the database host must be a hostname or an IP address")
    database = parts.path.removeprefix("/")
    if not _DB_NAME.fullmatch(database):
        raise ValueError(f"{uri!r}: name the database in the path: {scheme}://host[:port]/database")
    user = parts.username
    if user is not None and not _DB_USER.fullmatch(user):
        raise ValueError(f"{uri!r}: invalid database user name")
    if parts.fragment:
        raise ValueError(f"{uri!r}: a database URI has no fragment")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    sslmode = params.pop("sslmode", None)
    if params or (sslmode is not None and scheme != "postgresql"):
        allowed = "sslmode" if scheme == "postgresql" else "none"
        raise ValueError(f"{uri!r}: unsupported URI parameters (allowed: {allowed})")
    if sslmode is not None and sslmode not in _SSLMODES:
        raise ValueError(f"{uri!r}: sslmode is one of {', '.join(_SSLMODES)}")
    return DbLocation(
        scheme=scheme,  # type: ignore[arg-type]
        host=host,
        port=port,
        database=database,
        user=user,
        sslmode=sslmode,
    )


def table_query(scheme: str, table: str) -> str:
    """``SELECT * FROM <table>`` with each part of a validated table name quoted."""
    if not _TABLE.fullmatch(table):
        raise ValueError(f"invalid table name {table!r}")
    quote = "`" if scheme == "mysql" else '"'
    return "SELECT * FROM " + ".".join(f"{quote}{part}{quote}" for part in table.split("."))


def query_tag(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()[:16]


class DatasetSpec(BaseModel):
    """``dataset`` as a mapping: a source URI and the options of S3 and database sources."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(min_length=1, max_length=2048)
    endpoint: str | None = Field(
        None, max_length=512, description="s3: the S3-compatible endpoint URL (default AWS)"
    )
    region: str | None = Field(None, description="s3: the region requests are signed for")
    query: str | None = Field(
        None, max_length=MAX_QUERY_CHARS, description="database: one read-only SELECT"
    )
    table: str | None = Field(None, description="database: a table, name or schema.name")

    @model_validator(mode="after")
    def _options_fit_the_source(self) -> DatasetSpec:
        from shared.spec import parse_source

        source = parse_source(self.uri, kind="dataset", options=self)
        if source.scheme != "s3" and (self.endpoint is not None or self.region is not None):
            raise ValueError("dataset.endpoint and dataset.region are for s3:// sources only")
        if source.scheme not in DB_SCHEMES and (self.query is not None or self.table is not None):
            raise ValueError(
                "dataset.query and dataset.table are for postgresql:// and mysql:// sources only"
            )
        return self


def check_s3_options(endpoint: str | None, region: str | None) -> None:
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"dataset.endpoint {endpoint!r}: an https:// (or http://) URL")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError(
                "dataset.endpoint: no user info, query or fragment (credentials are the "
                "S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY secrets)"
            )
        if parts.path not in ("", "/"):
            raise ValueError("dataset.endpoint: a base URL without a path")
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError:
            raise ValueError(f"dataset.endpoint {endpoint!r}: invalid port") from None
    if region is not None and not _REGION.fullmatch(region):
        raise ValueError(f"dataset.region {region!r}: a region name like eu-west-1")


def check_db_options(scheme: str, query: str | None, table: str | None) -> str:
    """The query to run: exactly one of ``query`` / ``table``; raises ValueError."""
    if (query is None) == (table is None):
        raise ValueError(
            f"a {scheme}:// dataset needs exactly one of dataset.query or dataset.table "
            "(write dataset as a mapping: {uri: ..., query: SELECT ...})"
        )
    if table is not None:
        try:
            return table_query(scheme, table)
        except ValueError:
            raise ValueError(
                f"dataset.table {table!r}: a table name (letters, digits, _ and $), "
                "optionally schema.table"
            ) from None
    text = (query or "").strip().rstrip(";").strip()
    if not text or "\x00" in text:
        raise ValueError("dataset.query is empty or contains a NUL character")
    return text


def source_fields(scheme: str, uri: str, options: Any) -> dict[str, Any]:
    """The :class:`shared.spec.Source` fields of an s3/database URI with its options."""
    endpoint = getattr(options, "endpoint", None)
    region = getattr(options, "region", None)
    query = getattr(options, "query", None)
    table = getattr(options, "table", None)
    if scheme == "s3":
        bucket, prefix = parse_s3_uri(uri)
        check_s3_options(endpoint, region)
        return {
            "scheme": "s3",
            "id": f"s3://{bucket}/{prefix}",
            "endpoint": endpoint,
            "region": region,
        }
    location = parse_db_uri(uri)
    text = check_db_options(location.scheme, query, table)
    tag = f"table={table}" if table is not None else f"query={query_tag(text)}"
    return {
        "scheme": location.scheme,
        "id": f"{location.base}?{tag}",
        "query": text,
        "table": table,
    }
