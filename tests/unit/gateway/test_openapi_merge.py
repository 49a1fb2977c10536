"""The gateway's OpenAPI document takes the auth service's routes in place of its proxy."""

from __future__ import annotations

from services.gateway.openapi import merge_auth_document


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def test_auth_paths_replace_the_proxy_and_clashing_schemas_are_renamed() -> None:
    gateway = {
        "paths": {"/api/auth/{path}": {"post": {}}, "/api/projects": {"get": {}}},
        "components": {"schemas": {"TokenOut": {"title": "gateway's"}, "Shared": {"x": 1}}},
    }
    auth = {
        "paths": {
            "/api/auth/login": {
                "post": {"responses": {"200": {"content": {"j": {"schema": _ref("TokenOut")}}}}}
            },
            "/internal/introspect": {"post": {}},
        },
        "components": {"schemas": {"TokenOut": {"title": "auth's"}, "Shared": {"x": 1}}},
    }
    merged = merge_auth_document(gateway, auth)
    assert set(merged["paths"]) == {"/api/auth/login", "/api/projects"}  # no proxy, no internal
    schemas = merged["components"]["schemas"]
    assert schemas["TokenOut"] == {"title": "gateway's"}
    assert schemas["AuthTokenOut"] == {"title": "auth's"}
    assert schemas["Shared"] == {"x": 1}
    login_schema = merged["paths"]["/api/auth/login"]["post"]["responses"]["200"]["content"]["j"]
    assert login_schema["schema"] == _ref("AuthTokenOut")


def test_without_auth_paths_the_proxy_stays_documented() -> None:
    gateway = {"paths": {"/api/auth/{path}": {"post": {}}}, "components": {"schemas": {}}}
    assert "/api/auth/{path}" in merge_auth_document(gateway, {"paths": {}})["paths"]
