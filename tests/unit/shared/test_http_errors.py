"""shared.service.http_errors: the one error shape every service answers with."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import OperationalError, ProgrammingError

from shared.errors import Conflict, NotFound, RateLimited, TransientError
from shared.service.http_errors import (
    ValidationStyle,
    install_error_handlers,
    validation_message,
)

SECRET = "hunter2-do-not-echo"


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    count: int


class Detailed(Conflict):
    code = "detailed"

    def __init__(self) -> None:
        super().__init__("it changed")
        self.details = {"spec_hash": "abc", "by": "sam"}


def _app(**kwargs: Any) -> FastAPI:
    app = FastAPI()

    @app.post("/things")
    def things(body: Body) -> dict[str, str]:
        return {"name": body.name}

    @app.get("/raise/{what}")
    def raise_(what: str) -> None:
        errors: dict[str, Exception] = {
            "not_found": NotFound("no such thing"),
            "limited": RateLimited("slow down", retry_after=7),
            "transient": TransientError("try later"),
            "detailed": Detailed(),
            "db_down": OperationalError("SELECT 1", {}, Exception("connection refused")),
            "db_bug": ProgrammingError("SELECT nope", {}, Exception(SECRET)),
            "bug": RuntimeError(SECRET),
        }
        raise errors[what]

    install_error_handlers(app, **kwargs)
    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(_app(), raise_server_exceptions=False)


def test_an_aidp_error_has_its_code_message_and_status(client: TestClient) -> None:
    r = client.get("/raise/not_found")
    assert (r.status_code, r.json()) == (
        404,
        {"error": {"code": "not_found", "message": "no such thing"}},
    )
    r = client.get("/raise/limited")
    assert (r.status_code, r.headers["Retry-After"]) == (429, "7")
    r = client.get("/raise/transient")
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"


def test_an_error_with_details_has_them_next_to_code_and_message(client: TestClient) -> None:
    r = client.get("/raise/detailed")
    assert r.status_code == 409
    assert r.json() == {
        "error": {"code": "detailed", "message": "it changed", "spec_hash": "abc", "by": "sam"}
    }


def test_the_database_down_is_503_and_a_database_bug_an_internal_error(
    client: TestClient,
) -> None:
    r = client.get("/raise/db_down")
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    assert r.json()["error"]["code"] == "database_unavailable"
    r = client.get("/raise/db_bug")
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal", "message": "internal error"}}


def test_an_unexpected_error_is_an_internal_error_without_its_text(client: TestClient) -> None:
    r = client.get("/raise/bug")
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal", "message": "internal error"}}
    assert SECRET not in r.text


def test_bad_input_is_422_naming_the_field_never_the_value(client: TestClient) -> None:
    r = client.post("/things", json={"name": SECRET, "count": SECRET, "colour": SECRET})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid"
    assert "count: " in error["message"] and "colour: unknown field" in error["message"]
    assert SECRET not in r.text
    r = client.post("/things", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid"


def test_routing_errors_have_the_shape(client: TestClient) -> None:
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get("/things")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_an_unknown_path_goes_to_the_fallback_first() -> None:
    def fallback(method: str, path: str) -> Response | None:
        return PlainTextResponse("page") if path.startswith("/ui") else None

    client = TestClient(_app(fallback=fallback))
    assert client.get("/ui/projects").text == "page"
    assert client.get("/nowhere").json()["error"]["code"] == "not_found"


def test_the_validation_style_is_the_one_per_service_difference() -> None:
    extra = "Extra inputs are not permitted"
    errors = [
        {"loc": ("body", "admin"), "msg": extra, "type": "extra_forbidden"},
        *(
            {"loc": ("query", f"f{i}"), "msg": "Field required", "type": "missing"}
            for i in range(6)
        ),
    ]
    plain = validation_message(errors)
    assert plain.startswith("admin: unknown field; f0: Field required")
    assert plain.count(";") == 4  # at most five errors named
    auth = ValidationStyle(max_errors=None, lowercase=True, unknown_field=None)
    worded = validation_message(errors, auth)
    assert worded.startswith("admin: extra inputs are not permitted; f0: field required")
    assert worded.count(";") == 6
