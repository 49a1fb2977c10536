"""A local Intel Tiber AI Cloud: the documented compute API (shared/reference/idc-api.md),
served over real HTTP for the idc driver's tests.

- ``POST /oauth2/token`` (Basic auth, client credentials) → tokens that expire after
  ``token_ttl`` seconds; an expired or unknown bearer token answers 401.
- ``…/sshpublickeys`` and ``…/instances`` (create, get by id/name, list, search by labels,
  delete). Instances start ``Provisioning`` and turn ``Ready`` after ``ready_after`` polls
  (or ``Failed`` with a message for types in ``fail_types``). On Ready the registered keys
  are appended to the node's and the jump host's ``authorized_keys``, as cloud-init and
  the account's jump host would.
- Faults: ``inject(method, path_prefix, status, times, retry_after)`` answers the next
  ``times`` matching requests with ``status`` (a 429 carries ``Retry-After: <retry_after>``);
  ``max_instances`` is a quota whose breach answers 429 with code 8 and a "quota" message;
  creating an instance of a type in ``no_capacity_types`` answers 429 with code 8
  (RESOURCE_EXHAUSTED) and an "insufficient capacity" message, as the cloud does when a type
  is sold out in the zone.
- ``preempt(resource_id)`` deletes an instance behind the user's back (a preempted spot
  instance, or one deleted in the console); its node's sshd is the test's to stop.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support.infra import free_port

if TYPE_CHECKING:
    from tests.support.sshd_hosts import SshHost

__all__ = ["IdcCloud", "NodeSlot", "idc_server", "jumped_cloud"]

#: Every compute API path starts here; the account is checked where the cloud checks it.
_BASE = "/v1/cloudaccounts/{account}"


@dataclass
class NodeSlot:
    """Where a Ready instance really lives: an sshd the tests started."""

    private_ip: str
    user: str
    authorized_keys: Path


@dataclass
class _Fault:
    method: str
    prefix: str
    status: int
    times: int
    retry_after: str = "0"


@dataclass
class IdcCloud:
    client_id: str = "aidp-test-client"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    cloudaccount: str = "123456789012"
    token_ttl: float = 3600.0
    ready_after: int = 2  # GETs of an instance before it is Ready
    fail_types: dict[str, str] = field(default_factory=dict)
    max_instances: int = 10
    no_capacity_types: set[str] = field(default_factory=set)
    slots: list[NodeSlot] = field(default_factory=list)
    proxy: tuple[str, str, int] | None = None  # (user, address, port) of the jump host
    proxy_authorized_keys: Path | None = None
    tokens: dict[str, float] = field(default_factory=dict)
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[_Fault] = field(default_factory=list)
    log: list[tuple[str, str, int]] = field(default_factory=list)
    tokens_issued: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def inject(
        self, method: str, prefix: str, status: int, times: int = 1, retry_after: str = "0"
    ) -> None:
        self.faults.append(_Fault(method, prefix, status, times, retry_after))

    def preempt(self, resource_id: str) -> None:
        with self.lock:
            self.instances.pop(resource_id, None)

    def live_instances(self) -> list[dict[str, Any]]:
        return list(self.instances.values())

    def statuses(self, status: int) -> int:
        return sum(1 for _, _, code in self.log if code == status)


def _error(status: int, code: int, message: str, **headers: str) -> JSONResponse:
    body = {"code": code, "message": message, "details": []}
    return JSONResponse(body, status_code=status, headers=headers or None)


def build_app(cloud: IdcCloud) -> FastAPI:
    """The fake cloud's app: the routes below, on ``cloud`` (``app.state.cloud``)."""
    app = FastAPI()
    app.state.cloud = cloud
    app.middleware("http")(_faults_and_auth)
    app.include_router(_oauth)
    app.include_router(_keys)
    app.include_router(_instances)
    return app


def _cloud(request: Request) -> IdcCloud:
    return request.app.state.cloud  # type: ignore[no-any-return]


Cloud = Annotated[IdcCloud, Depends(_cloud)]


# -- faults and auth -----------------------------------------------------------------------


async def _faults_and_auth(request: Request, call_next: Callable[..., Any]) -> Any:
    """An injected fault answers first; then every ``/v1/`` call needs a live token."""
    cloud = _cloud(request)
    path, method = request.url.path, request.method
    response = _injected_fault(cloud, method, path)
    if response is None and path.startswith("/v1/"):
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        expires = cloud.tokens.get(token)
        if expires is None or expires < time.monotonic():
            response = _error(401, 16, "token expired or invalid")
    if response is None:
        response = await call_next(request)
    cloud.log.append((method, path, response.status_code))
    return response


def _injected_fault(cloud: IdcCloud, method: str, path: str) -> JSONResponse | None:
    """The answer of the first injected fault matching the request (one of its ``times``)."""
    with cloud.lock:
        for fault in cloud.faults:
            if fault.times > 0 and fault.method == method and path.startswith(fault.prefix):
                fault.times -= 1
                headers = {"Retry-After": fault.retry_after} if fault.status == 429 else {}
                return _error(fault.status, 14, "injected fault", **headers)
    return None


_oauth = APIRouter()


@_oauth.post("/oauth2/token")
async def token(request: Request, cloud: Cloud) -> Any:
    expected = base64.b64encode(f"{cloud.client_id}:{cloud.client_secret}".encode()).decode()
    form = (await request.body()).decode()
    if request.headers.get("Authorization") != f"Basic {expected}":
        return _error(401, 16, "invalid client credentials")
    if "grant_type=client_credentials" not in form:
        return _error(400, 3, "unsupported grant_type")
    value = secrets.token_urlsafe(24)
    cloud.tokens[value] = time.monotonic() + cloud.token_ttl
    cloud.tokens_issued += 1
    return {"access_token": value, "token_type": "Bearer", "expires_in": cloud.token_ttl}


def _account_ok(cloud: IdcCloud, account: str) -> JSONResponse | None:
    if account != cloud.cloudaccount:
        return _error(403, 7, f"no access to cloud account {account}")
    return None


# -- ssh keys ------------------------------------------------------------------------------

_keys = APIRouter(prefix=_BASE + "/sshpublickeys")


@_keys.post("")
async def create_key(account: str, body: dict[str, Any], cloud: Cloud) -> Any:
    if (denied := _account_ok(cloud, account)) is not None:
        return denied
    name = body["metadata"]["name"]
    if name in cloud.keys:
        return _error(409, 6, f"ssh key {name} already exists")
    key = {
        "metadata": {"name": name, "resourceId": str(uuid.uuid4())},
        "spec": {"sshPublicKey": body["spec"]["sshPublicKey"]},
    }
    cloud.keys[name] = key
    return key


@_keys.get("")
async def list_keys(account: str, cloud: Cloud) -> Any:
    return {"items": list(cloud.keys.values())}


@_keys.get("/name/{name}")
async def get_key(account: str, name: str, cloud: Cloud) -> Any:
    key = cloud.keys.get(name)
    return key if key else _error(404, 5, f"ssh key {name} not found")


@_keys.delete("/name/{name}")
async def delete_key(account: str, name: str, cloud: Cloud) -> Any:
    if cloud.keys.pop(name, None) is None:
        return _error(404, 5, f"ssh key {name} not found")
    return {}


# -- instances -----------------------------------------------------------------------------

_instances = APIRouter(prefix=_BASE + "/instances")


def _advance(cloud: IdcCloud, instance: dict[str, Any]) -> None:
    """One more poll of a ``Provisioning`` instance: ``Failed`` for a type in
    ``fail_types``, else ``Ready`` (on its slot, the run's keys authorized) after
    ``ready_after`` polls."""
    status = instance["status"]
    if status["phase"] != "Provisioning":
        return
    instance["_polls"] += 1
    itype = instance["spec"]["instanceType"]
    if itype in cloud.fail_types:
        status.update(phase="Failed", message=cloud.fail_types[itype])
        return
    if instance["_polls"] < cloud.ready_after:
        return
    slot = cloud.slots[instance["_slot"] % len(cloud.slots)]
    public_keys = [
        cloud.keys[n]["spec"]["sshPublicKey"]
        for n in instance["spec"]["sshPublicKeyNames"]
        if n in cloud.keys
    ]
    for path in (slot.authorized_keys, cloud.proxy_authorized_keys):
        if path is not None:
            with path.open("a") as handle:
                handle.writelines(k + "\n" for k in public_keys)
    status.update(
        phase="Ready",
        message="Instance ready",
        interfaces=[{"name": "eth0", "addresses": [slot.private_ip]}],
        userName=slot.user,
    )
    if cloud.proxy:
        user, address, port = cloud.proxy
        status["sshProxy"] = {"proxyUser": user, "proxyAddress": address, "proxyPort": port}


def _public(instance: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in instance.items() if not k.startswith("_")}


def _create_refused(cloud: IdcCloud, account: str, body: dict[str, Any]) -> JSONResponse | None:
    """Why the cloud refuses to create the instance ``body`` asks for (None: it does not)."""
    if (denied := _account_ok(cloud, account)) is not None:
        return denied
    name = body["metadata"]["name"]
    if any(i["metadata"]["name"] == name for i in cloud.instances.values()):
        return _error(409, 6, f"instance {name} already exists")
    if len(cloud.instances) >= cloud.max_instances:
        return _error(
            429, 8, f"quota exceeded: at most {cloud.max_instances} instances per account"
        )
    itype = body["spec"].get("instanceType", "")
    if itype in cloud.no_capacity_types:
        zone = body["spec"].get("availabilityZone", "")
        return _error(429, 8, f"insufficient capacity: no {itype} instances available in {zone}")
    for key in body["spec"].get("sshPublicKeyNames", []):
        if key not in cloud.keys:
            return _error(400, 3, f"ssh key {key} not found")
    return None


@_instances.post("")
async def create_instance(account: str, body: dict[str, Any], cloud: Cloud) -> Any:
    if (refused := _create_refused(cloud, account, body)) is not None:
        return refused
    resource_id = str(uuid.uuid4())
    instance = {
        "metadata": {
            "name": body["metadata"]["name"],
            "resourceId": resource_id,
            "labels": body["metadata"].get("labels", {}),
            "cloudAccountId": account,
        },
        "spec": body["spec"],
        "status": {"phase": "Provisioning", "message": "Instance is provisioning"},
        "_polls": 0,
        # The n-th created instance lives on slot n (round robin).
        "_slot": sum(
            1 for m, p, c in cloud.log if m == "POST" and p.endswith("/instances") and c == 200
        ),
    }
    cloud.instances[resource_id] = instance
    return _public(instance)


@_instances.get("")
async def list_instances(account: str, cloud: Cloud) -> Any:
    return {"items": [_public(i) for i in cloud.instances.values()]}


@_instances.post("/search")
async def search_instances(account: str, body: dict[str, Any], cloud: Cloud) -> Any:
    wanted = (body.get("metadata") or {}).get("labels") or {}
    items = [
        _public(i)
        for i in cloud.instances.values()
        if all(i["metadata"]["labels"].get(k) == v for k, v in wanted.items())
    ]
    return {"items": items}


@_instances.get("/id/{resource_id}")
async def get_instance(account: str, resource_id: str, cloud: Cloud) -> Any:
    instance = cloud.instances.get(resource_id)
    if instance is None:
        return _error(404, 5, f"instance {resource_id} not found")
    _advance(cloud, instance)
    return _public(instance)


@_instances.get("/name/{name}")
async def get_instance_by_name(account: str, name: str, cloud: Cloud) -> Any:
    instance = next((i for i in cloud.instances.values() if i["metadata"]["name"] == name), None)
    if instance is None:
        return _error(404, 5, f"instance {name} not found")
    _advance(cloud, instance)
    return _public(instance)


@_instances.delete("/id/{resource_id}")
async def delete_instance(account: str, resource_id: str, cloud: Cloud) -> Any:
    if cloud.instances.pop(resource_id, None) is None:
        return _error(404, 5, f"instance {resource_id} not found")
    return {}


@contextmanager
def idc_server(cloud: IdcCloud) -> Iterator[str]:
    """Serve ``cloud`` on a free local port; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(
        build_app(cloud), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("idc test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


@contextmanager
def jumped_cloud(jump: SshHost, node: SshHost, private_ip: str) -> Iterator[tuple[IdcCloud, str]]:
    """A cloud with one VM, ``node`` at ``private_ip``, reachable only through ``jump``
    (the account's jump host); yields the cloud and its API's base URL."""
    made = IdcCloud(
        slots=[NodeSlot(private_ip=private_ip, user="root", authorized_keys=node.authorized_keys)],
        proxy=("root", jump.address, jump.port),
        proxy_authorized_keys=jump.authorized_keys,
    )
    with idc_server(made) as url:
        yield made, url
