"""docs/ (the design, docs/design.md, and its sibling tables) stays true to the code where
that can be checked mechanically: every event class of ``shared/events.py``, every public
route of the gateway (its own and the auth routes it proxies), every field of the project
spec (and every ``train.args`` key a built-in task reads) and every environment variable of
every service's settings class must be named in docs/*.md. A name is looked for in
backticks (`` `NodeLost` ``, `` `/api/runs/{run_id}` ``, `` `AIDP_DATA_DIR` ``), so
``/api/projects`` does not count as documented because ``/api/projects/{project_id}`` is.
Nothing is started: the apps are built from code alone, as ``scripts/openapi_json.py``
does.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices, BaseModel

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SERVICES = ("auth", "gateway", "provisioner", "fetcher", "trainer")


def _docs_text() -> str:
    files = sorted(DOCS.glob("*.md"))
    assert DOCS / "design.md" in files, "docs/design.md is missing"
    return "\n".join(path.read_text(encoding="utf-8") for path in files)


def _missing(names: Iterable[str], text: str) -> list[str]:
    return sorted({name for name in names if f"`{name}`" not in text})


def _assert_documented(kind: str, names: Iterable[str]) -> None:
    names = list(names)
    assert names, f"found no {kind} to check: the test no longer reads the code"
    missing = _missing(names, _docs_text())
    assert not missing, (
        f"{kind} missing from docs/*.md (name each in backticks; see docs/design.md): "
        + ", ".join(missing)
    )


# -- events --------------------------------------------------------------------------------


def test_every_event_class_is_documented() -> None:
    from shared.events import EVENT_TYPES

    _assert_documented("event classes", EVENT_TYPES)


# -- routes --------------------------------------------------------------------------------


def _leaf_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Routes of an app, included routers unfolded (FastAPI keeps them nested)."""
    for route in routes:
        nested = getattr(route, "original_router", None)
        if nested is not None:
            yield from _leaf_routes(nested.routes)
        else:
            yield route


def _paths(app: Any) -> set[str]:
    """Route templates, ``{name:path}`` written as ``{name}``; mounts (static files) left out."""
    found: set[str] = set()
    for route in _leaf_routes(app.routes):
        if getattr(route, "methods", None) is None and "WebSocket" not in type(route).__name__:
            continue
        found.add(re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path))
    return found


def public_route_paths(tmp_path: Path) -> set[str]:
    from services.auth.main import create_app as auth_app
    from services.auth.settings import AuthSettings
    from services.gateway.main import create_app as gateway_app
    from services.gateway.settings import GatewaySettings

    data: dict[str, Any] = {"data_dir": tmp_path, "database_url": f"sqlite:///{tmp_path}/u.db"}
    gateway = _paths(gateway_app(GatewaySettings(**data)))
    # the gateway proxies /api/auth/{path} to these (auth's own /internal/* stays private)
    auth = {p for p in _paths(auth_app(AuthSettings(**data))) if p.startswith("/api/auth/")}
    return gateway | auth


@pytest.fixture
def no_aidp_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The apps and settings as the code declares them, not as this shell sets them."""
    import os

    for name in [n for n in os.environ if n.startswith("AIDP_")]:
        monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_aidp_env")
def test_every_public_route_is_documented(tmp_path: Path) -> None:
    paths = public_route_paths(tmp_path)
    assert {"/api/ws", "/api/projects", "/api/auth/login", "/healthz"} <= paths
    _assert_documented("routes", paths)


# -- spec ----------------------------------------------------------------------------------


def _fields(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


def test_every_spec_field_is_documented() -> None:
    from shared.data_sources import DatasetSpec
    from shared.spec import (
        DeploySpec,
        EnvironmentSpec,
        HostSpec,
        ProjectSpec,
        ResourcesSpec,
        TrainSpec,
    )

    _assert_documented("spec fields", _fields(ProjectSpec))
    # nested fields: by name, in backticks or inside a backticked mapping such as
    # `{uri, endpoint?, region?, query?, table?}` or `[{address, user=root, ...}]`
    nested = set().union(
        *(_fields(m) for m in (TrainSpec, EnvironmentSpec, ResourcesSpec, DeploySpec)),
    )
    inline = _fields(HostSpec) | _fields(DatasetSpec)
    text = _docs_text()
    missing = sorted(n for n in nested if f"`{n}`" not in text) + sorted(
        n for n in inline if not re.search(rf"`[^`\n]*\b{re.escape(n)}\b[^`\n]*`", text)
    )
    assert not missing, "spec fields missing from docs/*.md: " + ", ".join(missing)


def test_every_train_arg_key_is_documented() -> None:
    from shared.train_args import METHOD_ARGS, TASK_ARGS

    keys = set().union(*(k for k in TASK_ARGS.values() if k), *METHOD_ARGS.values())
    _assert_documented("train.args keys", keys)


# -- settings ------------------------------------------------------------------------------


def env_names(settings_class: type[BaseModel]) -> set[str]:
    """The environment variables a settings class reads: ``AIDP_<FIELD>``, or the upper-case
    names of a field's ``AliasChoices`` (``HF_ENDPOINT``, ``AIDP_IDC_REGION``/``ITAC_REGION``)."""
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field, info in settings_class.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {c for c in alias.choices if isinstance(c, str) and c.isupper()}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{field}".upper())
    return names


def settings_classes() -> list[type[BaseModel]]:
    from shared.settings import BaseServiceSettings

    found: list[type[BaseModel]] = [BaseServiceSettings]
    for service in SERVICES:
        module = importlib.import_module(f"services.{service}.settings")
        found += [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, BaseServiceSettings)
            and value.__module__ == module.__name__
        ]
    return found


def test_every_setting_is_documented() -> None:
    classes = settings_classes()
    assert len(classes) > len(SERVICES), "a service's settings class was not found"
    names = set().union(*(env_names(cls) for cls in classes))
    assert {"AIDP_DATA_DIR", "AIDP_BUS_URL", "HF_ENDPOINT"} <= names
    _assert_documented("settings", names)


# -- the checks can fail -------------------------------------------------------------------


def test_a_name_missing_from_the_docs_is_reported() -> None:
    text = "`NodeLost` and `/api/projects/{project_id}`"
    assert _missing(["NodeLost", "/api/projects", "AIDP_NOT_A_SETTING"], text) == [
        "/api/projects",
        "AIDP_NOT_A_SETTING",
    ]
