"""The aidp Python SDK: everything the CLI does goes through :class:`Client`.

Usable from a notebook::

    from cli.sdk import Client
    c = Client.login("http://127.0.0.1:8000", "me@example.com", "pw")   # or Client.from_config()
    project = c.create_project({"name": "demo", "model": "hf://...", "dataset": "hf://datasets/..."})
    for item in c.stream_events(project["id"]):
        print(item["event"]["type"])

Requests use httpx (sync). Access tokens are refreshed silently: a 401 with a refresh token
at hand triggers one ``POST /api/auth/refresh`` and one retry, and ``on_tokens`` is told the
new pair (the CLI stores them). Errors are raised as :class:`AidpError` subclasses carrying
the server's ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import json
import mimetypes
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import connect as ws_connect

__all__ = [
    "AidpError",
    "ApiError",
    "Client",
    "NotLoggedIn",
    "ServerUnreachable",
    "StreamClosed",
]

Json = dict[str, Any]


class AidpError(Exception):
    """Base of every SDK error; ``str(err)`` is a sentence fit for a user."""


class ServerUnreachable(AidpError):
    """No connection to the server (wrong URL, server down, TLS failure)."""


class NotLoggedIn(AidpError):
    """No credentials, or they expired and could not be refreshed."""


class ApiError(AidpError):
    """The server answered with an error status."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        #: the whole ``error`` object (e.g. ``spec_hash`` and ``diff`` of ``spec_changed``)
        self.details: dict[str, Any] = details or {}

    def __str__(self) -> str:
        return f"{self.message} ({self.status} {self.code})"


class StreamClosed(AidpError):
    """The server closed the event stream for good (``code`` 4401, 4403 or 1002)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"event stream closed by the server: {code} {reason}".strip())
        self.code = code


TokenCallback = Callable[[str | None, str | None], None]


class Client:
    """A connection to one aidp server.

    Give ``api_token`` (an ``aidp_…`` token, for CI) or an ``access_token`` /
    ``refresh_token`` pair (from :meth:`login`). ``on_tokens(access, refresh)`` is called
    whenever a refresh rotates the pair.
    """

    def __init__(
        self,
        server: str,
        *,
        access_token: str | None = None,
        refresh_token: str | None = None,
        api_token: str | None = None,
        on_tokens: TokenCallback | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.api_token = api_token
        self.on_tokens = on_tokens
        self._http = httpx.Client(base_url=self.server, timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"Client({self.server!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- constructors -----------------------------------------------------------------

    @classmethod
    def from_config(cls, path: Path | None = None, **kwargs: Any) -> Client:
        """A client from the CLI config file (see :mod:`cli.config`); rotated tokens are saved."""
        from cli.config import load_config, save_config

        config = load_config(path)

        def store(access: str | None, refresh: str | None) -> None:
            config.access_token, config.refresh_token = access, refresh
            save_config(config, path)

        return cls(
            config.server,
            access_token=config.access_token,
            refresh_token=config.refresh_token,
            api_token=config.api_token,
            on_tokens=store,
            **kwargs,
        )

    @classmethod
    def login(cls, server: str, email: str, password: str, **kwargs: Any) -> Client:
        """Log in with email and password and return an authenticated client."""
        client = cls(server, **kwargs)
        client.sign_in(email, password)
        return client

    # --- plumbing ---------------------------------------------------------------------

    @property
    def bearer(self) -> str | None:
        """The token sent as ``Authorization: Bearer``."""
        return self.api_token or self.access_token

    def _send(self, method: str, path: str, *, auth: bool, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if auth:
            if self.bearer is None and self.refresh_token:
                self.refresh()
            if self.bearer is None:
                raise NotLoggedIn("not logged in: run `aidp login` (or set AIDP_TOKEN)")
            headers["Authorization"] = f"Bearer {self.bearer}"
        try:
            return self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"cannot reach the aidp server at {self.server}: {exc.__class__.__name__}"
                f"{': ' + str(exc) if str(exc) else ''}. Is it running (`aidp up`)?"
            ) from exc

    def request(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> Any:
        """Send a request; return the decoded JSON body (None when empty). Raises AidpError."""
        response = self._send(method, path, auth=auth, **kwargs)
        if response.status_code == 401 and auth and self.refresh_token and not self.api_token:
            self.refresh()
            response = self._send(method, path, auth=auth, **kwargs)
        return _decode(response, authenticated=auth)

    def refresh(self) -> None:
        """Rotate the refresh token for a fresh access token (docs/design.md §5)."""
        if not self.refresh_token:
            raise NotLoggedIn("session expired: run `aidp login` again")
        response = self._send(
            "POST", "/api/auth/refresh", auth=False, json={"refresh_token": self.refresh_token}
        )
        if response.status_code in (400, 401, 403):
            self.access_token = self.refresh_token = None
            if self.on_tokens:
                self.on_tokens(None, None)
            raise NotLoggedIn("session expired: run `aidp login` again")
        self._take_tokens(_decode(response, authenticated=False))

    def _take_tokens(self, body: Json) -> None:
        self.access_token = body["access_token"]
        self.refresh_token = body.get("refresh_token")
        if self.on_tokens:
            self.on_tokens(self.access_token, self.refresh_token)

    # --- auth -------------------------------------------------------------------------

    def register(self, email: str, password: str) -> Json:
        """Create an account (``POST /api/auth/register``)."""
        return self.request(
            "POST", "/api/auth/register", auth=False, json={"email": email, "password": password}
        )

    def sign_in(self, email: str, password: str) -> Json:
        """Log in; keeps the access and refresh tokens on this client and returns them.
        Asks for the refresh token in the body (browsers get it as an HttpOnly cookie)."""
        credentials = {"email": email, "password": password, "refresh_token_delivery": "body"}
        body = self.request("POST", "/api/auth/login", auth=False, json=credentials)
        self.api_token = None
        self._take_tokens(body)
        return body

    def logout(self) -> None:
        """Revoke the session's refresh token on the server and forget the tokens."""
        if self.refresh_token:
            try:
                self.request("POST", "/api/auth/logout", json={"refresh_token": self.refresh_token})
            except AidpError:
                pass  # logging out of a dead session is still logging out
        self.access_token = self.refresh_token = None
        if self.on_tokens:
            self.on_tokens(None, None)

    def me(self) -> Json:
        """The caller: ``{"id", "email", ...}``."""
        return self.request("GET", "/api/auth/me")

    def create_api_token(
        self,
        name: str,
        *,
        scopes: list[str] | None = None,
        expires_in_days: int | None = None,
    ) -> Json:
        """A new API token for CI (default scope: read); the value appears only in this
        answer."""
        body: dict[str, Any] = {"name": name}
        if scopes:
            body["scopes"] = scopes
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        return self.request("POST", "/api/auth/tokens", json=body)

    def list_api_tokens(self) -> list[Json]:
        return self.request("GET", "/api/auth/tokens")

    def revoke_api_token(self, token_id: str) -> None:
        """Revoke one of your API tokens: anything using it stops working."""
        self.request("DELETE", f"/api/auth/tokens/{token_id}")

    # --- secrets ----------------------------------------------------------------------

    def set_secret(self, name: str, value: str) -> None:
        """Store a secret in the server's vault; only its name is ever returned."""
        self.request("PUT", f"/api/secrets/{name}", json={"value": value})

    def list_secrets(self) -> list[str]:
        names: list[Any] = _items(self.request("GET", "/api/secrets"))
        return [n if isinstance(n, str) else str(n.get("name")) for n in names]

    def delete_secret(self, name: str) -> None:
        self.request("DELETE", f"/api/secrets/{name}")

    # --- projects and runs ------------------------------------------------------------

    def create_project(self, spec: Json, *, name: str | None = None) -> Json:
        """Create a project from a spec (docs/design.md §4); starts run 1. Returns the project."""
        return self.request(
            "POST", "/api/projects", json={"name": name or spec.get("name"), "spec": spec}
        )

    def list_projects(self) -> list[Json]:
        return _items(self.request("GET", "/api/projects"))

    def get_project(self, project_id: str) -> Json:
        return self.request("GET", f"/api/projects/{project_id}")

    def find_project(self, ref: str) -> Json:
        """A project by id, unique id prefix or name (your own first; see cli/resolve.py)."""
        from cli.resolve import resolve_project

        return resolve_project(self, ref)

    def delete_project(self, project_id: str) -> None:
        """Delete a project: its runs stop, nodes are released, deployments removed."""
        self.request("DELETE", f"/api/projects/{project_id}")

    # --- members and invitations -----------------------------------------------------

    def add_member(self, project_id: str, email: str, role: str) -> Json:
        """Invite ``email`` with ``role`` (owner). The answer is the pending invitation
        (``status: "invited"``, the same whether or not the email is registered), or the
        member with the new role when ``email`` already is one."""
        return self.request(
            "POST", f"/api/projects/{project_id}/members", json={"email": email, "role": role}
        )

    def list_members(self, project_id: str) -> list[Json]:
        return _items(self.request("GET", f"/api/projects/{project_id}/members"))

    def remove_member(self, project_id: str, user_id: str) -> None:
        """Remove a member (owner), or leave the project (your own user id)."""
        self.request("DELETE", f"/api/projects/{project_id}/members/{user_id}")

    def list_project_invitations(self, project_id: str) -> list[Json]:
        """A project's pending invitations (owner)."""
        return _items(self.request("GET", f"/api/projects/{project_id}/invitations"))

    def withdraw_invitation(self, project_id: str, invitation_id: str) -> None:
        """Withdraw a pending invitation (owner)."""
        self.request("DELETE", f"/api/projects/{project_id}/invitations/{invitation_id}")

    def list_invitations(self) -> list[Json]:
        """Invitations addressed to you, oldest first."""
        return _items(self.request("GET", "/api/invitations"))

    def accept_invitation(self, invitation_id: str) -> Json:
        """Join the project with the invited role; returns your membership."""
        return self.request("POST", f"/api/invitations/{invitation_id}/accept")

    def decline_invitation(self, invitation_id: str) -> None:
        self.request("POST", f"/api/invitations/{invitation_id}/decline")

    def start_run(
        self, project_id: str, *, spec: Json | None = None, confirm_spec_hash: str | None = None
    ) -> Json:
        """Start a new run of a project, optionally with a changed spec.

        Without ``spec`` the stored spec runs; if another member changed it since you wrote
        or approved it the gateway answers 409 ``spec_changed`` (its ``spec_hash`` and
        ``diff``): pass ``confirm_spec_hash`` to approve it and start.
        """
        body: dict[str, Any] = {"spec": spec} if spec is not None else {}
        if confirm_spec_hash is not None:
            body["confirm_spec_hash"] = confirm_spec_hash
        return self.request("POST", f"/api/projects/{project_id}/runs", json=body)

    def list_runs(self, project_id: str) -> list[Json]:
        return _items(self.request("GET", f"/api/projects/{project_id}/runs"))

    def get_run(self, run_id: str) -> Json:
        return self.request("GET", f"/api/runs/{run_id}")

    def cancel_run(self, run_id: str) -> Json:
        return self.request("POST", f"/api/runs/{run_id}/cancel")

    def run_events(self, run_id: str, *, after: int = 0) -> list[Json]:
        """Stored events of a run after ``seq`` (each ``{"seq", "event"}`` or an envelope)."""
        return _items(self.request("GET", f"/api/runs/{run_id}/events", params={"after": after}))

    def run_logs(self, run_id: str) -> list[str]:
        """The run's training log lines (text only)."""
        lines = _items(self.request("GET", f"/api/runs/{run_id}/logs"))
        return [line if isinstance(line, str) else str(line.get("text", line)) for line in lines]

    # --- artifacts, models, deployments ----------------------------------------------

    def list_artifacts(self) -> list[Json]:
        return _items(self.request("GET", "/api/artifacts"))

    def upload(self, path: Path, *, progress: Callable[[int, int], None] | None = None) -> Json:
        """Upload a dataset file (streamed); returns ``{"id", "uri": "upload://…", ...}``."""
        size = path.stat().st_size

        def chunks(fh: BinaryIO) -> Iterator[bytes]:
            done = 0
            while chunk := fh.read(1 << 20):
                done += len(chunk)
                if progress:
                    progress(done, size)
                yield chunk

        with path.open("rb") as fh:
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            return self.request(
                "POST",
                "/api/uploads",
                params={"filename": path.name},
                content=chunks(fh),
                headers={"Content-Type": kind, "Content-Length": str(size)},
            )

    def list_models(self, project_id: str) -> list[Json]:
        """Model versions of a project, newest last, each with its lineage."""
        return _items(self.request("GET", f"/api/projects/{project_id}/models"))

    def download_model(self, model_id: str, dest: Path) -> Path:
        """Stream a model version's archive to ``dest``."""
        headers = {"Authorization": f"Bearer {self.bearer}"} if self.bearer else {}
        with self._http.stream("GET", f"/api/models/{model_id}/download", headers=headers) as r:
            if r.status_code >= 400:
                r.read()
                _decode(r)
            with dest.open("wb") as fh:
                for chunk in r.iter_bytes():
                    fh.write(chunk)
        return dest

    def deploy(self, model_id: str) -> Json:
        """Deploy a model version; returns at once with the deployment id."""
        return self.request("POST", f"/api/models/{model_id}/deploy")

    def get_deployment(self, deployment_id: str) -> Json:
        return self.request("GET", f"/api/deployments/{deployment_id}")

    def delete_deployment(self, deployment_id: str) -> None:
        self.request("DELETE", f"/api/deployments/{deployment_id}")

    def list_deployments(self, project_id: str | None = None) -> list[Json]:
        """Deployments of your projects (newest first), optionally of one project."""
        params = {"project_id": project_id} if project_id else None
        return list(self.request("GET", "/api/deployments", params=params))

    def deployment_action(self, deployment_id: str, action: str, **body: Any) -> Json:
        """``stop``, ``start`` or ``promote`` a deployment; returns it."""
        return self.request("POST", f"/api/deployments/{deployment_id}/{action}", json=body or None)

    def project_endpoint(self, project_id: str) -> Json:
        """The project's live alias: which deployment its endpoint serves."""
        return self.request("GET", f"/api/projects/{project_id}/endpoint")

    def rollback_endpoint(self, project_id: str) -> Json:
        return self.request("POST", f"/api/projects/{project_id}/endpoint/rollback")

    def predict(self, deployment_id: str, inputs: list[Any]) -> list[Any]:
        """Send inputs to a deployed model; returns its outputs, one per input."""
        body = self.request(
            "POST", f"/api/deployments/{deployment_id}/predict", json={"inputs": inputs}
        )
        return body["outputs"]

    # --- the OpenAI-compatible API of LLM deployments -----------------------------------

    def openai_base_url(self, deployment_id: str) -> str:
        """``base_url`` for the ``openai`` client (its ``api_key`` is :attr:`bearer`)."""
        return f"{self.server}/api/deployments/{deployment_id}/v1"

    def chat_model(self, deployment_id: str) -> str:
        """The model id the deployment serves (``GET /v1/models``)."""
        body = self.request("GET", f"/api/deployments/{deployment_id}/v1/models")
        return str(body["data"][0]["id"])

    def chat_stream(
        self, deployment_id: str, messages: list[Json], *, model: str | None = None, **params: Any
    ) -> Iterator[str]:
        """Stream a chat completion: yields the reply's text pieces as they are generated.
        ``params``: ``max_tokens``, ``temperature``, ``top_p``, ``stop``, ``seed``."""
        body = {
            "model": model or self.chat_model(deployment_id),
            "messages": messages,
            "stream": True,
            **{k: v for k, v in params.items() if v is not None},
        }
        path = f"/api/deployments/{deployment_id}/v1/chat/completions"
        for attempt in (0, 1):
            if self.bearer is None and self.refresh_token:
                self.refresh()
            if self.bearer is None:
                raise NotLoggedIn("not logged in: run `aidp login` (or set AIDP_TOKEN)")
            headers = {"Authorization": f"Bearer {self.bearer}"}
            try:
                with self._http.stream(
                    "POST", path, json=body, headers=headers, timeout=httpx.Timeout(30, read=600)
                ) as response:
                    if response.status_code == 401 and attempt == 0 and self.refresh_token:
                        if not self.api_token:
                            self.refresh()
                            continue
                    if response.status_code >= 400:
                        response.read()
                        _decode(response)
                    yield from _sse_text(response.iter_lines())
                    return
            except httpx.TransportError as exc:
                raise ServerUnreachable(f"lost the connection to {self.server}: {exc}") from exc

    # --- live events ------------------------------------------------------------------

    def ws_url(self) -> str:
        base = self.server.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return f"{base}/api/ws"

    def stream_events(
        self,
        project_id: str,
        *,
        after: int = 0,
        reconnect: bool = True,
        max_retries: int = 20,
        idle_timeout: float | None = None,
    ) -> Iterator[Json]:
        """Yield ``{"type": "event", "seq", "event": envelope}`` for a project, for ever.

        Follows docs/design.md §6: authenticate, subscribe after ``seq``, get the backfill then live
        events. On a dropped connection it reconnects (with backoff) and resubscribes after
        the last seq seen, so no event is lost or repeated. Stop by breaking out of the loop.
        ``idle_timeout`` yields ``{"type": "idle"}`` after that many quiet seconds, letting
        the caller poll something else.
        """
        last, failures = after, 0
        while True:
            try:
                for message in self._stream_once(project_id, last, idle_timeout):
                    failures = 0
                    if message.get("type") == "event":
                        seq = int(message.get("seq", last + 1))
                        if seq <= last:
                            continue  # already seen before a reconnect
                        last = seq
                    yield message
                return
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else 1006
                if code == 4401 and self.refresh_token and not self.api_token and failures == 0:
                    self.refresh()
                elif code in (4401, 4403, 1002, 1008):
                    raise StreamClosed(code, exc.rcvd.reason if exc.rcvd else "") from exc
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403, 404):
                    raise StreamClosed(status, "websocket upgrade refused") from exc
            except (OSError, WebSocketException, TimeoutError) as exc:
                if not reconnect or failures >= max_retries:
                    raise ServerUnreachable(f"lost the event stream: {exc}") from exc
            if not reconnect or failures >= max_retries:
                raise ServerUnreachable("lost the event stream and could not reconnect")
            failures += 1
            time.sleep(min(0.25 * 2**failures, 5.0))

    def _stream_once(
        self, project_id: str, after: int, idle_timeout: float | None
    ) -> Iterator[Json]:
        if self.bearer is None:
            self.refresh()
        with ws_connect(self.ws_url(), open_timeout=10, max_size=2**22) as ws:
            ws.send(json.dumps({"type": "auth", "token": self.bearer}))
            # batch: the server may send several queued messages as one (gateway README)
            ws.send(
                json.dumps(
                    {"type": "subscribe", "project_id": project_id, "after": after, "batch": True}
                )
            )
            while True:
                try:
                    raw = ws.recv(timeout=idle_timeout)
                except TimeoutError:
                    yield {"type": "idle"}
                    continue
                message = json.loads(raw)
                frames = message.get("frames") if message.get("type") == "batch" else [message]
                for frame in frames if isinstance(frames, list) else []:
                    if frame.get("type") == "error":
                        raise StreamClosed(4400, str(frame.get("message", frame)))
                    yield frame


def _items(body: Any) -> list[Json]:
    """Accept both a bare JSON list and ``{"items": [...]}`` pages."""
    if isinstance(body, dict):
        for key in ("items", "events", "lines", "names", "results", "data"):
            if isinstance(body.get(key), list):
                return body[key]
    return body if isinstance(body, list) else []


def _decode(response: httpx.Response, *, authenticated: bool = True) -> Any:
    """Return the JSON body or raise :class:`ApiError` with the server's message."""
    if response.status_code >= 400:
        code, message = f"http_{response.status_code}", response.reason_phrase
        details: dict[str, Any] | None = None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict):
                code = str(err.get("code", code))
                message = str(err.get("message", message))
                details = err
            elif "detail" in body:
                message = _detail_message(body["detail"])
        if response.status_code == 401 and authenticated:
            raise NotLoggedIn(f"{message}: run `aidp login`")
        raise ApiError(response.status_code, code, message, details)
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def _sse_text(lines: Iterator[str]) -> Iterator[str]:
    """The content pieces of an OpenAI chat stream (``data: {...}`` lines, ``[DONE]``)."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        chunk = json.loads(data)
        if isinstance(chunk, dict) and isinstance(chunk.get("error"), dict):
            raise ApiError(502, "stream_error", str(chunk["error"].get("message", "")))
        for choice in chunk.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                yield str(piece)


def _detail_message(detail: Any) -> str:
    """FastAPI's validation ``detail`` list turned into 'field: message; …'."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            loc = ".".join(str(p) for p in item.get("loc", []) if p not in ("body",))
            parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
        return "; ".join(parts)
    return str(detail)
