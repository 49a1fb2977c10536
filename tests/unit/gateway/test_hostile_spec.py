"""Hostile spec values are refused by the API with 422 naming the field (issue 12)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.gateway.conftest import SPEC, Harness


@pytest.mark.parametrize(
    "package",
    [
        "--index-url=https://evil.example/simple",
        "-e git+https://evil.example/x.git",
        "evil @ https://evil.example/evil-1.0.tar.gz",
        "https://evil.example/evil-1.0-py3-none-any.whl",
        "six; python_version > '3'",
        "{{ lookup('pipe', 'touch /tmp/marker') }}",
        "six{% if true %}{% endif %}",
    ],
)
async def test_hostile_package_is_422_naming_the_field(harness: Harness, package: str) -> None:
    _, headers = harness.login()
    spec: dict[str, Any] = {**SPEC, "environment": {"packages": ["six", package]}}
    r = await harness.client.post(
        "/api/projects", json={"name": "p", "spec": spec}, headers=headers
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid"
    assert "spec.environment.packages" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "address", ['{{lookup("pipe","id")}}', "-oProxyCommand=id", "host;id", "fe80::1%eth0"]
)
async def test_hostile_host_address_is_422(harness: Harness, address: str) -> None:
    _, headers = harness.login()
    resources = {"provider": "ssh", "hosts": [{"address": address}]}
    spec: dict[str, Any] = {**SPEC, "resources": resources}
    r = await harness.client.post(
        "/api/projects", json={"name": "p", "spec": spec}, headers=headers
    )
    assert r.status_code == 422, r.text
    assert "spec.resources.hosts.0.address" in r.json()["error"]["message"]
