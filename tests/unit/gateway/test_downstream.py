"""Routes answered by other services: authorised by project, streamed, 503 when down."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from shared.internal import register_inproc, unregister_inproc
from tests.unit.gateway.conftest import Harness


class Services:
    """Stand-ins for the fetcher, trainer and provisioner internal APIs."""

    def __init__(self) -> None:
        self.models: dict[str, dict[str, Any]] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        self.seen_users: list[str] = []
        self.fetcher, self.trainer, self.provisioner = FastAPI(), FastAPI(), FastAPI()
        f, t, p = self.fetcher, self.trainer, self.provisioner

        @f.post("/internal/uploads", status_code=201)
        async def upload(request: Request, filename: str) -> dict[str, Any]:
            self.seen_users.append(request.headers["x-aidp-user"])
            digest, size = hashlib.sha256(), 0
            async for chunk in request.stream():
                digest.update(chunk)
                size += len(chunk)
            return {
                "id": "up-123456",
                "uri": "upload://up-123456",
                "size_bytes": size,
                "digest": digest.hexdigest(),
                "filename": filename,
                "secret_path": "/x",
            }

        @f.get("/internal/artifacts")
        def artifacts() -> list[dict[str, Any]]:
            return [
                {
                    "source": "hf://a/b",
                    "kind": "model",
                    "resolved_revision": "abc",
                    "digest": "d" * 64,
                    "size_bytes": 3,
                    "cache_key": "k",
                    "pinned": False,
                }
            ]

        @t.get("/internal/projects/{pid}/models")
        def models(pid: str) -> list[dict[str, Any]]:
            return [m for m in self.models.values() if m["project_id"] == pid]

        @t.get("/internal/models/{mid}")
        def model(mid: str) -> JSONResponse:
            if mid not in self.models:
                return JSONResponse({"error": {"code": "not_found", "message": "no"}}, 404)
            return JSONResponse(self.models[mid])

        @t.get("/internal/models/{mid}/download")
        def download(mid: str) -> StreamingResponse:
            def chunks() -> Iterator[bytes]:
                yield from (b"x" * 1000 for _ in range(100))

            return StreamingResponse(chunks(), media_type="application/x-tar")

        @t.post("/internal/models/{mid}/deploy", status_code=202)
        def deploy(mid: str) -> dict[str, Any]:
            dep = {
                "id": "dep-1",
                "project_id": self.models[mid]["project_id"],
                "model_id": mid,
                "status": "starting",
                "endpoint": "/api/deployments/dep-1/predict",
            }
            self.deployments["dep-1"] = dep
            # the contract's answer: the deployment, its id repeated as deployment_id
            return {**dep, "deployment_id": "dep-1"}

        @t.get("/internal/deployments/{did}")
        def deployment(did: str) -> JSONResponse:
            if did not in self.deployments:
                return JSONResponse({"error": {"code": "not_found", "message": "no"}}, 404)
            return JSONResponse(self.deployments[did])

        @t.get("/internal/deployments/{did}/v1/models")
        def openai_models(did: str) -> dict[str, Any]:
            return {"object": "list", "data": [{"id": did, "object": "model"}]}

        @t.post("/internal/deployments/{did}/predict")
        def predict(did: str, body: dict[str, Any]) -> dict[str, Any]:
            return {"outputs": [{"label": "pos", "input": x} for x in body["inputs"]]}

        @p.get("/internal/runs/{rid}/environment")
        def environment(rid: str) -> dict[str, Any]:
            return {
                "lock_hash": "h",
                "lock": "torch==2",
                "python": "3.11",
                "torch_version": "2",
                "accelerator": "cpu",
            }


@pytest.fixture
def services(harness: Harness) -> Iterator[Services]:
    stub = Services()
    names = {}
    for kind in ("fetcher", "trainer", "provisioner"):
        names[kind] = f"{kind}-{uuid.uuid4().hex[:6]}"
        register_inproc(names[kind], getattr(stub, kind))
        downstream = getattr(harness.app.state.gateway.downstream, kind)
        downstream.url, downstream._client = f"inproc://{names[kind]}", None
    yield stub
    for name in names.values():
        unregister_inproc(name)


async def test_unreachable_services_answer_503(harness: Harness) -> None:
    _, headers = harness.login()
    r = await harness.client.get("/api/artifacts", headers=headers)
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
    downstream = harness.app.state.gateway.downstream.fetcher
    downstream.url, downstream._client = "http://127.0.0.1:9", None
    r = await harness.client.get("/api/artifacts", headers=headers)
    assert r.status_code == 503


async def test_upload_streams_and_answers_without_extra_fields(
    harness: Harness, services: Services
) -> None:
    user_id, headers = harness.login()
    data = bytes(range(256)) * 4096  # 1 MiB

    async def body() -> Any:
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    r = await harness.client.post("/api/uploads?filename=d.csv", content=body(), headers=headers)
    assert r.status_code == 201, r.text
    assert r.json() == {
        "id": "up-123456",
        "uri": "upload://up-123456",
        "size_bytes": len(data),
        "digest": hashlib.sha256(data).hexdigest(),
        "filename": "d.csv",
    }
    assert services.seen_users == [str(user_id)]
    assert (await harness.client.get("/api/artifacts", headers=headers)).json()[0][
        "kind"
    ] == "model"


async def test_models_and_deployments_are_authorised_by_project(
    harness: Harness, services: Services
) -> None:
    _, owner = harness.login("o@example.com")
    _, viewer = harness.login("v@example.com")
    _, stranger = harness.login()
    project = await harness.create_project(owner)
    pid = project["id"]
    await harness.add_member(pid, owner, "v@example.com", "viewer")
    services.models["m1"] = {
        "id": "m1",
        "project_id": pid,
        "run_id": project["current_run_id"],
        "version": 1,
        "digest": "d",
        "metrics": {"acc": 0.9},
        "lineage": {"model": "hf://a/b"},
    }
    c = harness.client

    listed = (await c.get(f"/api/projects/{pid}/models", headers=viewer)).json()
    assert listed[0]["id"] == "m1" and listed[0]["lineage"] == {"model": "hf://a/b"}
    assert (await c.get(f"/api/projects/{pid}/models", headers=stranger)).status_code == 404

    r = await c.get("/api/models/m1/download", headers=viewer)
    assert r.status_code == 200 and len(r.content) == 100_000
    assert (await c.get("/api/models/m1/download", headers=stranger)).status_code == 404
    assert (await c.get("/api/models/nope/download", headers=owner)).status_code == 404

    assert (await c.post("/api/models/m1/deploy", headers=viewer)).status_code == 403
    r = await c.post("/api/models/m1/deploy", headers=owner)
    assert r.status_code == 202 and r.json()["deployment_id"] == "dep-1"
    assert (await c.get("/api/deployments/dep-1", headers=viewer)).json()["status"] == "starting"
    assert (await c.get("/api/deployments/dep-1", headers=stranger)).status_code == 404
    r = await c.post("/api/deployments/dep-1/predict", json={"inputs": ["great"]}, headers=owner)
    assert r.json() == {"outputs": [{"label": "pos", "input": "great"}]}
    r = await c.post("/api/deployments/dep-1/predict", json={"inputs": ["x"]}, headers=viewer)
    assert r.status_code == 403
    r = await c.post("/api/deployments/dep-1/predict", json={"inputs": []}, headers=owner)
    assert r.status_code == 422

    env = await c.get(f"/api/runs/{project['current_run_id']}/environment", headers=viewer)
    assert env.status_code == 200 and env.json()["lock_hash"] == "h"


async def test_auth_routes_are_proxied_verbatim(harness: Harness) -> None:
    r = await harness.client.post("/api/auth/login", json={"email": "a@b.c", "password": "x"})
    assert r.status_code == 200 and r.json() == {"echo": {"email": "a@b.c", "password": "x"}}
    assert r.headers["x-stub"] == "yes"
    assert len(r.headers.get_list("set-cookie")) == 2
    r = await harness.client.get("/api/auth/me?x=1", headers={"X-Forwarded-For": "6.6.6.6"})
    seen = r.json()
    assert seen["query"] == "x=1"
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"  # the peer, never the client's claim
    assert (await harness.client.get("/api/auth/jwks")).json()["keys"]


async def test_trainer_answers_out_of_contract_are_502s(
    harness: Harness, services: Services
) -> None:
    _, owner = harness.login("o@example.com")
    pid = (await harness.create_project(owner))["id"]
    services.deployments["dep-1"] = {"id": "dep-1", "project_id": pid, "status": "exploded"}
    services.deployments["dep-2"] = {"id": "dep-2", "project_id": "nobody's", "status": "running"}
    for dep in ("dep-1", "dep-2"):
        r = await harness.client.get(f"/api/deployments/{dep}", headers=owner)
        assert r.status_code == 502, r.text
        assert r.json()["error"]["message"] == "trainer service answered an unexpected body"


async def test_an_upload_name_the_fetcher_would_refuse_is_refused_first(
    harness: Harness, services: Services
) -> None:
    _, headers = harness.login()
    for name in ("..", "."):
        r = await harness.client.post(
            f"/api/uploads?filename={name}", content=b"x", headers=headers
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"]["message"] == "filename must be a plain file name"
    assert services.seen_users == []  # the fetcher was never asked


async def test_openai_routes_authorise_through_the_trainers_record(
    harness: Harness, services: Services
) -> None:
    _, owner = harness.login("o@example.com")
    _, stranger = harness.login()
    pid = (await harness.create_project(owner))["id"]
    good, broken = str(uuid.uuid4()), str(uuid.uuid4())
    services.deployments[good] = {"id": good, "project_id": pid, "status": "running"}
    services.deployments[broken] = {"id": broken, "project_id": pid}  # no status
    c = harness.client

    r = await c.get(f"/api/deployments/{good}/v1/models", headers=owner)
    assert r.status_code == 200 and r.json()["data"][0]["id"] == good
    r = await c.get(f"/api/deployments/{good}/v1/models", headers=stranger)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    # a record out of contract: a 502 in the OpenAI shape, not a 500 nor a guess
    r = await c.get(f"/api/deployments/{broken}/v1/models", headers=owner)
    assert r.status_code == 502, r.text
    assert r.json()["error"]["message"] == "trainer service answered an unexpected body"
