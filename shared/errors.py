"""One error taxonomy for every service.

``ClientError``      the caller's fault (bad input, not found, not allowed); never retried.
``TransientError``   may succeed if tried again (a broker or database hiccup, a timeout).
``ProviderError``    an outside provider (HuggingFace, Kaggle, Intel Tiber AI Cloud, pip)
                     refused or failed; ``retryable`` says whether trying again can help.

The mapping to HTTP lives in :func:`http_status_for` (used by one FastAPI handler) and the
mapping to message delivery in :func:`delivery_action` (used by every bus consumer).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import ValidationError

__all__ = [
    "AidpError",
    "ClientError",
    "Conflict",
    "DeliveryAction",
    "DependencyDown",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "ProviderError",
    "RateLimited",
    "TransientError",
    "Unauthenticated",
    "delivery_action",
    "dependency_outage",
    "http_status_for",
]


class AidpError(Exception):
    """Base of every error aidp raises on purpose. ``message`` is safe to show to users."""

    code = "error"
    status = 500
    retryable = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ClientError(AidpError):
    code = "bad_request"
    status = 400


class Unauthenticated(ClientError):
    code = "unauthenticated"
    status = 401


class Forbidden(ClientError):
    code = "forbidden"
    status = 403


class NotFound(ClientError):
    code = "not_found"
    status = 404


class Conflict(ClientError):
    code = "conflict"
    status = 409


class InvalidInput(ClientError):
    code = "invalid"
    status = 422


class RateLimited(ClientError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientError(AidpError):
    code = "unavailable"
    status = 503
    retryable = True


class DependencyDown(TransientError):
    """A dependency every request needs (the database, Vault) is down, sealed or unreachable:
    HTTP 503 with ``Retry-After``; a consumer holds the message and tries again (without
    spending its delivery budget) until the dependency is back."""

    retry_after = 5

    def __init__(self, dependency: str, message: str) -> None:
        super().__init__(message, code=f"{dependency}_unavailable")
        self.dependency = dependency


def dependency_outage(exc: BaseException) -> str | None:
    """``"database"`` or ``"vault"`` when ``exc`` says that dependency is down (not that a
    statement or a request was wrong); else None."""
    if isinstance(exc, DependencyDown):
        return exc.dependency
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return "database"
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.DisconnectionError):
        text = str(exc).lower()
        if "locked" in text:  # SQLite's busy database: an ordinary retry, not an outage
            return None
        return "database"
    if isinstance(exc, sa_exc.TimeoutError):  # no connection from the pool in time
        return "database"
    import psycopg  # the async read path (shared.db.aio) uses the driver directly

    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return "database"
    return None


class ProviderError(AidpError):
    code = "provider_error"
    status = 502

    def __init__(self, message: str, *, retryable: bool = False, code: str | None = None):
        super().__init__(message, code=code)
        self.retryable = retryable


def http_status_for(exc: BaseException) -> int:
    """HTTP status for an exception; anything unplanned is a 500."""
    if isinstance(exc, AidpError):
        return exc.status
    if isinstance(exc, ValidationError):
        return 422
    return 500


class DeliveryAction(StrEnum):
    ACK = "ack"  # handled (or nothing more to do)
    RETRY = "retry"  # hand back for redelivery (bounded by the queue's delivery limit)
    DEAD_LETTER = "dead_letter"  # will never succeed: straight to aidp.dead


def delivery_action(exc: BaseException | None) -> DeliveryAction:
    """What a consumer does with a message whose handler raised ``exc`` (None = success)."""
    if exc is None:
        return DeliveryAction.ACK
    if isinstance(exc, ClientError | ValidationError | ValueError | KeyError | TypeError):
        return DeliveryAction.DEAD_LETTER
    if isinstance(exc, AidpError) and not exc.retryable:
        return DeliveryAction.DEAD_LETTER
    # Transient, retryable provider errors and unexpected exceptions (OSError, timeouts,
    # driver errors) are retried; the delivery limit stops an endless loop.
    return DeliveryAction.RETRY
