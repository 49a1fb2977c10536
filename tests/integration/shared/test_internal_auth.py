"""Service-to-service authentication in distributed mode (issue 12): the five services as
real processes on RabbitMQ, PostgreSQL and OpenBao. Every service's internal API answers
401 without a service credential (or with a forged, misdirected one), 403 to a service
that is not on the route's list, and works for the gateway's token; the gateway's own
calls (API-token introspection at auth, the artifact list at the fetcher) go through."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.secrets.vault import VaultClient
from shared.service_auth import ServiceCredentials, TransitSigningKeys
from tests.support.cluster import Cluster, running_cluster
from tests.support.pipeline import ApiUser

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: One internal route per service, with what the gateway's token gets from it.
ROUTES: dict[str, tuple[str, str, dict[str, Any], int]] = {
    "auth": ("GET", "/internal/users/lookup", {"params": {"email": "nobody@example.com"}}, 404),
    "fetcher": ("GET", "/internal/artifacts", {}, 200),
    "trainer": ("GET", f"/internal/projects/{uuid.uuid4()}/models", {}, 200),
    "provisioner": ("GET", f"/internal/runs/{uuid.uuid4()}/environment", {}, 404),
}


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    amqp_base: str,
    postgres_base: str,
    bao_server: tuple[str, str],
) -> Iterator[Cluster]:
    from tests.support.infra import create_database, create_vhost, delete_vhost, drop_database

    root = tmp_path_factory.mktemp("internal-auth")
    amqp_url, vhost = create_vhost(amqp_base)
    postgres_url, database = create_database(postgres_base)
    env = {
        "AIDP_BUS_URL": amqp_url,
        "AIDP_DATABASE_URL": postgres_url,
        "AIDP_VAULT_ADDR": bao_server[0],
        "AIDP_VAULT_TOKEN": bao_server[1],
        "AIDP_STORE_DIR": str(root / "store"),
        "AIDP_LOG_LEVEL": "WARNING",
    }
    try:
        with running_cluster(root / "cluster", env) as running:
            yield running
    finally:
        delete_vhost(amqp_base, vhost)
        drop_database(postgres_base, database)


@pytest.fixture(scope="module")
def tokens(bao_server: tuple[str, str]) -> dict[str, ServiceCredentials]:
    """Credentials of each service, minted through Vault transit (the cluster's token)."""
    keys = TransitSigningKeys(VaultClient(bao_server[0], token=bao_server[1]))
    return {name: ServiceCredentials(name, keys) for name in ("gateway", "trainer", "fetcher")}


def _call(cluster: Cluster, service: str, headers: dict[str, str]) -> httpx.Response:
    method, path, kwargs, _ = ROUTES[service]
    url = cluster.processes[service][0].url
    return httpx.request(method, url + path, headers=headers, timeout=30, **kwargs)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("service", sorted(ROUTES))
def test_internal_routes_need_the_gateways_service_credential(
    service: str, cluster: Cluster, tokens: dict[str, ServiceCredentials]
) -> None:
    r = _call(cluster, service, {})
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "unauthenticated"
    assert _call(cluster, service, {"X-Aidp-User": str(uuid.uuid4())}).status_code == 401
    assert _call(cluster, service, _bearer("e30.e30.e30")).status_code == 401
    genuine = tokens["gateway"].token_for(service)
    head, claims, signature = genuine.split(".")
    assert _call(cluster, service, _bearer(f"{head}.{claims}x.{signature}")).status_code == 401
    other = "auth" if service != "auth" else "fetcher"
    misdirected = tokens["gateway"].token_for(other)
    assert _call(cluster, service, _bearer(misdirected)).status_code == 401
    intruder = "fetcher" if service == "trainer" else "trainer"
    r = _call(cluster, service, _bearer(tokens[intruder].token_for(service)))
    assert r.status_code == 403, r.text
    r = _call(cluster, service, _bearer(genuine))
    assert r.status_code == ROUTES[service][3], r.text


def test_public_routes_stay_open(cluster: Cluster) -> None:
    for process in cluster.all():
        assert httpx.get(f"{process.url}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"{process.url}/readyz", timeout=10).status_code == 200


def test_the_gateway_calls_the_services_with_its_credential(
    cluster: Cluster, bao_server: tuple[str, str]
) -> None:
    user = ApiUser(cluster.gateway_url)
    r = user.http.get("/api/artifacts")  # gateway -> fetcher /internal/artifacts
    assert r.status_code == 200, r.text + cluster.logs()
    created = user.http.post("/api/auth/tokens", json={"name": "ci"})
    assert created.status_code == 201, created.text
    api = httpx.Client(base_url=cluster.gateway_url, timeout=30)
    api.headers["Authorization"] = f"Bearer {created.json()['token']}"
    r = api.get("/api/projects")  # an API token: gateway -> auth /internal/introspect
    assert r.status_code == 200, r.text + cluster.logs()
    vault = VaultClient(bao_server[0], token=bao_server[1])
    for service in ROUTES | {"gateway": ROUTES["auth"]}:
        # each service made sure of its own signing key at start
        assert vault.public_keys(f"aidp-svc-{service}"), service
