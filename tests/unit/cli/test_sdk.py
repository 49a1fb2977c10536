"""The SDK against scripted servers: silent refresh, error decoding, stream resumption."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest
from websockets.sync.server import ServerConnection, serve

from cli.sdk import ApiError, Client, NotLoggedIn, ServerUnreachable, StreamClosed
from tests.support.infra import free_port


def _auth_server(calls: list[str]) -> httpx.MockTransport:
    """Access token 'old' is expired; refresh 'r1' rotates to access 'new' / refresh 'r2'."""

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if request.url.path == "/api/auth/refresh":
            if json.loads(request.content) == {"refresh_token": "r1"}:
                return httpx.Response(200, json={"access_token": "new", "refresh_token": "r2"})
            return httpx.Response(
                401, json={"error": {"code": "unauthenticated", "message": "refresh token reused"}}
            )
        if request.headers.get("authorization") != "Bearer new":
            return httpx.Response(
                401, json={"error": {"code": "unauthenticated", "message": "token expired"}}
            )
        if request.url.path == "/api/projects" and request.method == "POST":
            return httpx.Response(
                422, json={"error": {"code": "invalid_input", "message": "spec.model: bad uri"}}
            )
        return httpx.Response(200, json=[{"id": "p1", "name": "demo"}])

    return httpx.MockTransport(handle)


def test_expired_access_token_is_refreshed_silently() -> None:
    calls: list[str] = []
    saved: list[tuple[str | None, str | None]] = []
    client = Client(
        "http://x",
        access_token="old",
        refresh_token="r1",
        on_tokens=lambda a, r: saved.append((a, r)),
        transport=_auth_server(calls),
    )
    assert client.list_projects() == [{"id": "p1", "name": "demo"}]
    assert calls == ["GET /api/projects", "POST /api/auth/refresh", "GET /api/projects"]
    assert saved == [("new", "r2")] and client.refresh_token == "r2"
    assert client.find_project("demo")["id"] == "p1"


def test_spent_refresh_token_means_log_in_again() -> None:
    saved: list[tuple[str | None, str | None]] = []
    client = Client(
        "http://x",
        access_token="old",
        refresh_token="spent",
        on_tokens=lambda a, r: saved.append((a, r)),
        transport=_auth_server([]),
    )
    with pytest.raises(NotLoggedIn, match="aidp login"):
        client.list_projects()
    assert saved == [(None, None)]


def test_no_credentials() -> None:
    with pytest.raises(NotLoggedIn, match="not logged in"):
        Client("http://x", transport=_auth_server([])).list_projects()


def test_server_error_message_is_kept() -> None:
    client = Client("http://x", access_token="new", transport=_auth_server([]))
    with pytest.raises(ApiError) as info:
        client.create_project({"name": "demo"})
    assert (info.value.status, info.value.code) == (422, "invalid_input")
    assert "spec.model: bad uri" in str(info.value)


def test_unreachable_server_is_explained() -> None:
    client = Client(f"http://127.0.0.1:{free_port()}", api_token="aidp_x", timeout=2)
    with pytest.raises(ServerUnreachable, match="cannot reach the aidp server"):
        client.list_projects()


# --- the WebSocket stream ----------------------------------------------------------------


class _ScriptedWs:
    """First connection: events 1-2 then an abrupt close; second: checks after=2, sends 2-3."""

    def __init__(self) -> None:
        self.subscriptions: list[dict] = []
        self.auths: list[str] = []
        self.port = free_port()

    def handler(self, ws: ServerConnection) -> None:
        self.auths.append(json.loads(ws.recv())["token"])
        sub = json.loads(ws.recv())
        self.subscriptions.append(sub)
        if sub["project_id"] == "forbidden":
            ws.close(4403, "not yours")
            return
        ws.send(json.dumps({"type": "subscribed", "project_id": sub["project_id"]}))
        seqs = [1, 2] if len(self.subscriptions) == 1 else [2, 3]  # 2 is resent: must be dropped
        frames = [{"type": "event", "seq": seq, "event": {"type": f"E{seq}"}} for seq in seqs]
        if len(self.subscriptions) == 1:
            for frame in frames:
                ws.send(json.dumps(frame))
        else:  # the client asked for batches: the second connection sends one
            assert sub.get("batch") is True
            ws.send(json.dumps({"type": "batch", "frames": frames}))
        if len(self.subscriptions) == 1:
            ws.socket.close()  # abrupt drop, no close frame
        else:
            ws.recv()  # stay until the client leaves

    def __enter__(self) -> _ScriptedWs:
        self.server = serve(self.handler, "127.0.0.1", self.port)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def scripted() -> Iterator[_ScriptedWs]:
    with _ScriptedWs() as server:
        yield server


def test_stream_reconnects_and_resumes_after_last_seq(scripted: _ScriptedWs) -> None:
    client = Client(f"http://127.0.0.1:{scripted.port}", api_token="aidp_t")
    got = []
    for message in client.stream_events("p1"):
        if message["type"] == "event":
            got.append(message["seq"])
        if len(got) == 3:
            break
    assert got == [1, 2, 3]
    assert [s["after"] for s in scripted.subscriptions] == [0, 2]
    assert scripted.auths == ["aidp_t", "aidp_t"]


def test_stream_refused_subscription_raises(scripted: _ScriptedWs) -> None:
    client = Client(f"http://127.0.0.1:{scripted.port}", api_token="aidp_t")
    with pytest.raises(StreamClosed) as info:
        next(m for m in client.stream_events("forbidden") if m["type"] == "event")
    assert info.value.code == 4403
