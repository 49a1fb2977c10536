"""Spec values that later reach uv, ssh or Ansible are held to strict patterns (issue 12)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.spec import HostSpec, ProjectSpec, check_requirement, is_host_address

BASE = {"name": "demo", "model": "hf://org/model@main", "dataset": "hf://datasets/org/d"}


def _spec(packages: list[str]) -> ProjectSpec:
    return ProjectSpec.model_validate({**BASE, "environment": {"packages": packages}})


@pytest.mark.parametrize(
    "package",
    [
        "transformers>=4.40",
        "scikit-learn",
        "accelerate[testing]==0.30.1",
        "numpy>=1.26,<3",
        "peft~=0.11",
        "Pillow",
    ],
)
def test_plain_requirements_pass(package: str) -> None:
    assert _spec([package]).environment.packages == [package]


@pytest.mark.parametrize(
    ("package", "reason"),
    [
        ("--index-url=https://evil.example/simple", "options are not allowed"),
        ("-e git+https://evil.example/x.git", "options are not allowed"),
        ("-r /etc/passwd", "options are not allowed"),
        ("--extra-index-url https://evil.example", "options are not allowed"),
        ("evil @ https://evil.example/evil-1.0.tar.gz", "direct references"),
        ("evil@file:///tmp/evil", "direct references"),
        ("https://evil.example/evil-1.0-py3-none-any.whl", "invalid package requirement"),
        ("./local/path", "invalid package requirement"),
        ("six; python_version > '3'", "markers are not allowed"),
        ('six ; sys_platform == "linux"', "markers are not allowed"),
        ("{{ lookup('pipe', 'id') }}", "template syntax"),
        ("six{%if 1%}{%endif%}", "template syntax"),
        ("six\n--index-url=https://evil.example", "control or non-ASCII"),
        ("six && touch /tmp/x", "invalid package requirement"),
        ("six`id`", "invalid package requirement"),
        ("", "1 to 200 characters"),
        ("a" * 201, "1 to 200 characters"),
    ],
)
def test_hostile_requirements_are_refused(package: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _spec(["six", package])
    error = caught.value.errors()[0]
    assert error["loc"] == ("environment", "packages")
    assert reason in error["msg"]
    with pytest.raises(ValueError, match=reason):
        check_requirement(package)


@pytest.mark.parametrize(
    "address",
    ["10.1.2.3", "node-1.example.com", "gpu01", "::1", "fe80::1", "2001:db8::5", "a." * 100 + "b"],
)
def test_host_addresses_pass(address: str) -> None:
    assert HostSpec(address=address).address == address


@pytest.mark.parametrize(
    "address",
    [
        '{{lookup("pipe","id")}}',
        "-oProxyCommand=touch /tmp/x",
        "host name",
        "host;id",
        "user@host",
        "host:22",
        "fe80::1%eth0",
        "-host",
        "host-.example",
        "1.2.3",
        "$(id).example",
        "a" * 64 + ".example",
        "",
    ],
)
def test_hostile_host_addresses_are_refused(address: str) -> None:
    assert not is_host_address(address)
    with pytest.raises(ValidationError) as caught:
        ProjectSpec.model_validate(
            {
                **BASE,
                "resources": {"provider": "ssh", "hosts": [{"address": address}]},
            }
        )
    assert caught.value.errors()[0]["loc"][:3] == ("resources", "hosts", 0)


def test_identity_must_be_a_secret_name() -> None:
    with pytest.raises(ValidationError):
        HostSpec(address="h", identity="{{ x }}")
    assert HostSpec(address="h", identity="NODE_KEY").identity == "NODE_KEY"
