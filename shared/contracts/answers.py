"""Reading a downstream's answer through its contract model.

An answer that does not fit the callee's declared model is the callee's fault, not the
caller's request: it is a :class:`shared.errors.ProviderError` (502, ``provider_error``)
naming the service, never a 500 and never passed on as it came.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.errors import ProviderError

__all__ = ["JsonCaller", "parse_answer", "parse_answers"]

log = logging.getLogger(__name__)

Answer = TypeVar("Answer", bound=BaseModel)


class JsonCaller(Protocol):
    """What the typed calls need of a client: one JSON request, error answers raised as the
    taxonomy's errors (the gateway's ``Downstream``, whose ``name`` says which service)."""

    name: str

    async def json(self, method: str, path: str, **kwargs: Any) -> Any: ...


def parse_answer(model: type[Answer], body: Any, *, service: str) -> Answer:
    """``body`` as ``model``; a body that does not fit raises ``ProviderError`` (502)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _out_of_contract(service, exc) from None


def parse_answers(model: type[Answer], body: Any, *, service: str) -> list[Answer]:
    """A JSON list of ``model``; anything else (not a list, an item that does not fit)
    raises ``ProviderError`` (502)."""
    try:
        return TypeAdapter(list[model]).validate_python(body)  # type: ignore[valid-type]
    except ValidationError as exc:
        raise _out_of_contract(service, exc) from None


def _out_of_contract(service: str, exc: ValidationError) -> ProviderError:
    log.warning("%s answered an unexpected body: %s", service, exc.errors()[:3])
    return ProviderError(f"{service} service answered an unexpected body")
