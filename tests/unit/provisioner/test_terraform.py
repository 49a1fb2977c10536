"""deploy/terraform/idc parsed with python-hcl2, and when the idc driver uses Terraform."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import hcl2
import pytest

from services.provisioner.drivers.base import RunContext
from services.provisioner.drivers.idc import TF_INSTANCE_FIELDS, IdcDriver
from services.provisioner.drivers.terraform import terraform_binary
from services.provisioner.settings import ProvisionerSettings
from shared.secrets import InMemoryVault
from shared.spec import ProjectSpec
from tests.unit.provisioner.harness import spec_dict

MODULE = Path(__file__).resolve().parents[3] / "deploy" / "terraform" / "idc"


def _load(name: str) -> dict:
    with (MODULE / name).open() as handle:
        return hcl2.load(handle)


def _names(blocks: list[dict]) -> dict[str, dict]:
    return {key.strip('"'): value for block in blocks for key, value in block.items()}


def _ctx(tmp_path: Path) -> RunContext:
    spec = ProjectSpec.model_validate(spec_dict(provider="idc", nodes=2))
    return RunContext(uuid.uuid4(), uuid.uuid4(), None, spec, tmp_path)


def test_module_declares_what_the_driver_passes(tmp_path: Path) -> None:
    variables = _names(_load("variables.tf")["variable"])
    driver = IdcDriver(
        ProvisionerSettings(data_dir=tmp_path), secrets=InMemoryVault(), owner_id=None
    )
    passed = driver.terraform_variables(_ctx(tmp_path), "aidp-key")
    assert set(passed) <= set(variables), set(passed) - set(variables)
    for name, body in variables.items():
        assert body.get("description"), f"variable {name} has no description"
    assert "default" not in variables["run_id"]  # required: every resource is per run


def test_module_outputs_what_the_driver_reads() -> None:
    outputs = _names(_load("outputs.tf")["output"])
    assert {"instances", "ssh_key_name", "run_id"} <= set(outputs)
    value = outputs["instances"]["value"]
    for field in TF_INSTANCE_FIELDS:
        assert re.search(rf"\b{field}\s*=", value), f"instances output lacks {field}"


def test_module_uses_the_intel_provider() -> None:
    versions = _load("versions.tf")
    providers = versions["terraform"][0]["required_providers"][0]
    assert providers["intelcloud"]["source"].strip('"') == "intel/intelcloud"
    resources = {key.strip('"') for block in _load("main.tf")["resource"] for key in block}
    assert {"intelcloud_instance", "intelcloud_sshkey"} <= resources


def test_terraform_is_used_only_when_configured_and_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert terraform_binary() is None
    on = IdcDriver(
        ProvisionerSettings(data_dir=tmp_path, idc_use_terraform=True),
        secrets=InMemoryVault(),
        owner_id=None,
    )
    assert on.use_terraform() is None  # configured, but no binary: direct API calls

    tofu = empty / "tofu"
    tofu.write_text("#!/bin/sh\nexit 0\n")
    tofu.chmod(0o755)
    assert on.use_terraform() == str(tofu)
    off = IdcDriver(ProvisionerSettings(data_dir=tmp_path), secrets=InMemoryVault(), owner_id=None)
    assert off.use_terraform() is None  # on PATH, but not configured
