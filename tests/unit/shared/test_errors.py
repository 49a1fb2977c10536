"""The error taxonomy's two mappings: HTTP status and message delivery."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from shared.bus import PublishFailed, PublishTimeout, UnroutableError
from shared.errors import (
    ClientError,
    Conflict,
    DeliveryAction,
    Forbidden,
    InvalidInput,
    NotFound,
    ProviderError,
    RateLimited,
    TransientError,
    Unauthenticated,
    delivery_action,
    http_status_for,
)
from shared.events import UnknownEventError


class _Strict(BaseModel):
    n: int


def _validation_error() -> ValidationError:
    try:
        _Strict.model_validate({"n": "x"})
    except ValidationError as exc:
        return exc
    raise AssertionError("expected a validation error")


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (ClientError("bad"), 400),
        (Unauthenticated("who?"), 401),
        (Forbidden("no"), 403),
        (NotFound("none"), 404),
        (Conflict("taken"), 409),
        (InvalidInput("spec.model: bad"), 422),
        (RateLimited("slow down", retry_after=30), 429),
        (TransientError("db down"), 503),
        (ProviderError("hf said 500", retryable=True), 502),
        (_validation_error(), 422),
        (RuntimeError("bug"), 500),
    ],
)
def test_http_status_for(exc: BaseException, status: int) -> None:
    assert http_status_for(exc) == status


@pytest.mark.parametrize(
    ("exc", "action"),
    [
        (None, DeliveryAction.ACK),
        (NotFound("gone"), DeliveryAction.DEAD_LETTER),
        (InvalidInput("bad spec"), DeliveryAction.DEAD_LETTER),
        (_validation_error(), DeliveryAction.DEAD_LETTER),
        (UnknownEventError("v9"), DeliveryAction.DEAD_LETTER),
        (KeyError("x"), DeliveryAction.DEAD_LETTER),
        (TypeError("x"), DeliveryAction.DEAD_LETTER),
        (ProviderError("401 from kaggle", retryable=False), DeliveryAction.DEAD_LETTER),
        (ProviderError("503 from hf", retryable=True), DeliveryAction.RETRY),
        (TransientError("db hiccup"), DeliveryAction.RETRY),
        (PublishTimeout("no confirm"), DeliveryAction.RETRY),
        (PublishFailed("nack"), DeliveryAction.RETRY),
        (UnroutableError("no queue"), DeliveryAction.RETRY),
        (OSError("connection reset"), DeliveryAction.RETRY),
        (TimeoutError(), DeliveryAction.RETRY),
        (RuntimeError("unexpected"), DeliveryAction.RETRY),
    ],
)
def test_delivery_action(exc: BaseException | None, action: DeliveryAction) -> None:
    assert delivery_action(exc) is action


def test_error_messages_and_codes_are_safe_to_show() -> None:
    exc = Conflict("name taken", code="project_exists")
    assert (exc.code, exc.message, exc.status) == ("project_exists", "name taken", 409)
    assert RateLimited("wait", retry_after=7).retry_after == 7
