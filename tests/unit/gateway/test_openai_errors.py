"""The OpenAI routes answer every error in OpenAI's shape (routes/openai.py)."""

from __future__ import annotations

import json

from services.gateway.routes.openai import _from_platform, _upstream_error
from shared.errors import Conflict, InvalidInput, NotFound, TransientError, Unauthenticated


def body(response: object) -> dict[str, object]:
    return json.loads(response.body)  # type: ignore[attr-defined,no-any-return]


def test_platform_errors_get_the_openai_shape_and_status() -> None:
    cases = [
        (Unauthenticated("missing bearer token"), 401, "authentication_error"),
        (NotFound("deployment not found"), 404, "not_found_error"),
        (Conflict("deployment x is stopped, not running"), 409, "conflict_error"),
        (InvalidInput("bad"), 400, "invalid_request_error"),  # 422 → 400, as OpenAI answers
        (TransientError("trainer service is unavailable"), 503, "server_error"),
    ]
    for exc, status, kind in cases:
        response = _from_platform(exc)
        error = body(response)["error"]
        assert response.status_code == status, exc
        assert error == {"message": exc.message, "type": kind, "param": None, "code": exc.code}


def test_upstream_answers_are_kept_or_converted() -> None:
    engine = {"error": {"message": "m", "type": "invalid_request_error", "param": "top_p",
                        "code": "invalid_value"}}  # fmt: skip
    response = _upstream_error(400, json.dumps(engine).encode())
    assert response.status_code == 400 and body(response) == engine  # the engine's, as it is
    trainer = {"error": {"code": "conflict", "message": "deployment is idle"}}
    response = _upstream_error(409, json.dumps(trainer).encode())
    assert body(response)["error"] == {
        "message": "deployment is idle", "type": "conflict_error", "param": None,
        "code": "conflict",
    }  # fmt: skip
    response = _upstream_error(500, b"<html>Internal Server Error</html>")
    assert response.status_code == 502 and body(response)["error"]["type"] == "server_error"  # type: ignore[index]
    response = _upstream_error(422, json.dumps({"detail": "bad path"}).encode())
    assert response.status_code == 400
