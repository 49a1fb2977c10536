"""The fetcher's storage-quota refusal reaches the uploader unchanged through the gateway:
413 with code ``quota_exceeded`` and the message naming the quota and its setting."""

from __future__ import annotations

import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.fetcher.quota import StorageQuota
from shared.internal import register_inproc, unregister_inproc
from tests.unit.gateway.conftest import Harness


async def test_upload_over_quota_is_413_quota_exceeded(harness: Harness) -> None:
    refusal = StorageQuota(db=None, limit_bytes=1000).upload_refused(  # type: ignore[arg-type]
        600, used=500
    )
    stub = FastAPI()
    received: list[int] = []

    @stub.post("/internal/uploads")
    async def uploads(request: Request) -> JSONResponse:
        received.append(len(await request.body()))
        return JSONResponse(
            {"error": {"code": refusal.code, "message": refusal.message}}, status_code=413
        )

    name = f"fetcher-{uuid.uuid4().hex[:6]}"
    register_inproc(name, stub)
    downstream = harness.app.state.gateway.downstream.fetcher
    downstream.url, downstream._client = f"inproc://{name}", None
    try:
        _, headers = harness.login()
        r = await harness.client.post(
            "/api/uploads", params={"filename": "d.csv"}, content=b"x" * 600, headers=headers
        )
    finally:
        unregister_inproc(name)
    assert received == [600]
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "quota_exceeded"
    assert "AIDP_USER_STORAGE_QUOTA_BYTES" in r.json()["error"]["message"]
