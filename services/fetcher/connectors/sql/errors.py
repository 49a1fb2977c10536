"""Driver failures as FetchFailed with a readable message; the password never appears
(servers never echo it, and :func:`scrub` makes sure)."""

from __future__ import annotations

from typing import Any

from services.fetcher.connectors.base import Credentials
from services.fetcher.errors import FetchFailed

__all__ = ["auth_failure", "connect_failed", "connection_lost", "pg_message", "scrub", "timed_out"]


def connect_failed(
    label: str, user: str, failure: Exception | None, creds: Credentials
) -> FetchFailed:
    """No checked address took the connection: refused credentials (final) or no answer
    (retried)."""
    text = str(failure or "")
    if auth_failure(text) or "1045" in text or "Access denied" in text:
        return FetchFailed(
            f"Could not log in to {label} as {user!r}: the server refused the credentials. "
            "Check the DB_PASSWORD (and DB_USER) secrets named in the spec."
        )
    reason = scrub(text.strip().splitlines()[-1] if text.strip() else "no answer", creds)
    return FetchFailed(
        f"Could not connect to {label} ({reason}); it will be retried.", retryable=True
    )


def timed_out(label: str, statement_timeout: float) -> FetchFailed:
    """The server cancelled the query at the statement time limit (final)."""
    return FetchFailed(
        f"The query on {label} ran longer than {statement_timeout:g} s "
        "(AIDP_DB_STATEMENT_TIMEOUT) and was cancelled."
    )


def connection_lost(label: str) -> FetchFailed:
    """The connection broke during the query (retried)."""
    return FetchFailed(
        f"The connection to {label} was lost during the query; it will be retried.",
        retryable=True,
    )


def auth_failure(text: str) -> bool:
    """Whether a PostgreSQL connection error means refused credentials."""
    lowered = text.lower()
    return (
        "password authentication failed" in lowered
        or "no password supplied" in lowered
        or ("authentication failed" in lowered)
        or ("does not exist" in lowered and "role" in lowered)
    )


def scrub(text: str, creds: Credentials) -> str:
    """A driver message without the password (servers never echo it; this makes sure)."""
    for secret in (creds.db_password,):
        if secret:
            text = text.replace(secret, "***")
    return text[:500]


def pg_message(exc: Any, creds: Credentials) -> str:
    """A psycopg error's primary message (its first line), scrubbed."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return scrub(str(primary or exc).strip().splitlines()[0], creds)
