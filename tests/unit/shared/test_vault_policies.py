"""The per-service Vault policies: what each grants, and the deploy/ copies stay in sync."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.secrets.__main__ import main as secrets_cli
from shared.secrets.policies import (
    RECOVERY_POLICY,
    SERVICE_NAMES,
    PolicyParams,
    digest,
    policy_name,
    render,
    render_all,
)

REPO = Path(__file__).resolve().parents[3]
_PATH = re.compile(r'path "([^"]+)" \{\n  capabilities = \[([^\]]*)\]\n\}')


def _grants(hcl: str) -> dict[str, set[str]]:
    return {path: set(re.findall(r'"(\w+)"', caps)) for path, caps in _PATH.findall(hcl)}


def test_each_service_is_granted_exactly_its_paths() -> None:
    users = "secret/data/aidp/users/*"
    key = {
        "transit/keys/aidp-artifacts": {"read"},
        "transit/datakey/plaintext/aidp-artifacts": {"update"},
        "transit/decrypt/aidp-artifacts": {"update"},
    }
    naming = {"secret/data/aidp/platform/store-naming-key": {"create", "read"}}

    def signs_as(service: str) -> dict[str, set[str]]:
        return {
            f"transit/sign/aidp-svc-{service}": {"update"},
            "transit/keys/aidp-svc-*": {"read"},
        }

    assert {s: _grants(render(s)) for s in SERVICE_NAMES} == {
        "auth": {
            "secret/data/aidp/platform/auth-signing-keys": {"create", "read", "update"},
            "secret/data/aidp/platform/oidc": {"read"},
            **signs_as("auth"),
        },
        "gateway": {
            users: {"create", "update"},
            "secret/metadata/aidp/users/*": {"list", "read", "delete"},
            "secret/data/aidp/platform/webhook-key": {"create", "read"},
            **signs_as("gateway"),
        },
        "provisioner": {
            users: {"read"},
            "secret/data/aidp/platform/idc": {"read"},
            **signs_as("provisioner"),
        },
        "fetcher": {users: {"read"}, **key, **naming, **signs_as("fetcher")},
        "trainer": {users: {"read"}, **key, **naming, **signs_as("trainer")},
    }
    assert _grants(render(RECOVERY_POLICY)) == {
        "sys/generate-root-token/*": {"create", "read", "update", "delete"}
    }


def test_no_policy_grants_sudo_or_wildcard_mounts() -> None:
    for hcl in render_all(recovery=True).values():
        assert "sudo" not in hcl and "$" not in hcl
        for path in _grants(hcl):
            assert not path.startswith(("sys/mounts", "sys/policies", "auth/"))
            assert path.split("/")[0] in {"secret", "transit", "sys"}


def test_names_follow_the_params() -> None:
    params = PolicyParams(
        kv_mount="kv",
        transit_mount="tr",
        prefix="p1",
        transit_key="k9",
        signing_secret="sk",
        naming_secret="nk",
        oidc_secret="oc",
    )
    assert set(_grants(render("fetcher", params))) >= {
        "kv/data/p1/users/*",
        "tr/keys/k9",
        "tr/datakey/plaintext/k9",
        "tr/decrypt/k9",
        "kv/data/p1/platform/nk",
    }
    assert set(_grants(render("auth", params))) == {
        "kv/data/p1/platform/sk",
        "kv/data/p1/platform/oc",
        "tr/sign/aidp-svc-auth",
        "tr/keys/aidp-svc-*",
    }
    assert digest(params) != digest() == digest(PolicyParams())


def test_policy_names() -> None:
    assert [policy_name(s) for s in SERVICE_NAMES] == [f"aidp-{s}" for s in SERVICE_NAMES]
    with pytest.raises(ValueError):
        policy_name("tenant")


def test_deploy_copies_are_the_rendered_defaults() -> None:
    folder = REPO / "deploy" / "vault" / "policies"
    assert {p.name for p in folder.glob("*.hcl")} == {f"{n}.hcl" for n in render_all()}
    for name, hcl in render_all().items():
        assert (folder / f"{name}.hcl").read_text() == hcl, f"regenerate {name}.hcl"


def test_cli_writes_the_policies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert secrets_cli(["policies", "--out", str(tmp_path), "--transit-key", "k2"]) == 0
    written = {p.stem: p.read_text() for p in tmp_path.glob("*.hcl")}
    assert written == render_all(PolicyParams(transit_key="k2"))
    assert secrets_cli(["policies"]) == 0
    assert 'path "secret/data/aidp/platform/auth-signing-keys"' in capsys.readouterr().out


def test_cli_without_an_embedded_vault(tmp_path: Path) -> None:
    assert secrets_cli(["root-token", "--data-dir", str(tmp_path)]) == 2
