"""Every ``/internal/*`` route of every service requires a service credential: a route
audit over the real apps, so a new internal router without ``require_caller`` fails here
(issue 12: internal APIs authenticate their callers)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from services import SERVICES
from shared.secrets import InMemoryVault


def _guards(dependant: Dependant) -> Iterator[frozenset[str]]:
    for dep in dependant.dependencies:
        allowed = getattr(dep.call, "allowed_callers", None)
        if allowed is not None:
            yield allowed
        yield from _guards(dep)


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Every API route, also inside included routers (FastAPI wraps those)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from _api_routes(route.original_router.routes)


def _app(name: str, tmp_path: Path) -> Any:
    settings_class = getattr(
        importlib.import_module(f"services.{name}.settings"), f"{name.capitalize()}Settings"
    )
    settings = settings_class(data_dir=tmp_path / name, bus_url="memory://route-audit")
    vault = InMemoryVault()
    module = importlib.import_module(f"services.{name}.main")
    return module.create_app(settings, vault=(vault, vault))  # no lifespan: routes only


@pytest.mark.parametrize("name", SERVICES)
def test_every_internal_route_requires_a_service_credential(name: str, tmp_path: Path) -> None:
    routes = list(_api_routes(_app(name, tmp_path).routes))
    internal = [r for r in routes if r.path.startswith("/internal")]
    for route in internal:
        guards = list(_guards(route.dependant))
        assert guards, f"{name}: {route.methods} {route.path} has no require_caller"
        assert all(g <= set(SERVICES) and name not in g for g in guards), (route.path, guards)
    if name != "gateway":  # the gateway has no internal API; the others do
        assert internal, f"{name} has no internal routes"
    public = {r.path for r in routes} & {"/healthz", "/readyz", "/metrics"}
    for route in (r for r in routes if r.path in public):
        assert not list(_guards(route.dependant)), f"{route.path} must stay public"
