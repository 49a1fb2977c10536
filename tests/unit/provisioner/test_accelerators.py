"""Accelerator checks before any work (issue 16 item 3): the local node refuses what this
machine lacks, IDC instance types refuse what their name says they lack."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.provisioner import accelerators
from services.provisioner.drivers.base import RunContext
from services.provisioner.drivers.local import LocalDriver
from services.provisioner.settings import ProvisionerSettings
from shared.errors import ProviderError
from shared.spec import ProjectSpec
from tests.unit.provisioner.harness import spec_dict


def _ctx(**resources: object) -> RunContext:
    return RunContext(
        run_id=uuid.uuid4(),
        project_id=uuid.uuid4(),
        owner_id=uuid.uuid4(),
        spec=ProjectSpec.model_validate(spec_dict(**resources)),
        state_dir=Path("/nonexistent"),
    )


async def test_a_cpu_only_local_node_refuses_cuda(settings: ProvisionerSettings) -> None:
    driver = LocalDriver(
        settings.model_copy(update={"local_accelerators": ["cpu"]}), runs_holding_node=set
    )
    with pytest.raises(ProviderError) as caught:
        await driver.check_request(_ctx(accelerator="cuda"))
    assert caught.value.code == "accelerator_unavailable"
    assert "'cuda' is not available on this machine" in caught.value.message
    assert "nvidia-smi" in caught.value.message
    await driver.check_request(_ctx(accelerator="cpu"))


async def test_a_declared_gpu_passes(settings: ProvisionerSettings) -> None:
    driver = LocalDriver(
        settings.model_copy(update={"local_accelerators": ["cuda"]}), runs_holding_node=set
    )
    await driver.check_request(_ctx(accelerator="cuda"))
    assert driver.offered_accelerators() == {"cpu", "cuda"}


def test_detection_counts_nvidia_smi_gpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-1)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    accelerators.detect_local_accelerators.cache_clear()
    try:
        assert accelerators.detect_local_accelerators() == {"cpu", "cuda"}
        fake.write_text("#!/bin/sh\necho 'No devices were found'\nexit 6\n")
        accelerators.detect_local_accelerators.cache_clear()
        assert accelerators.detect_local_accelerators() == {"cpu"}
    finally:
        accelerators.detect_local_accelerators.cache_clear()


@pytest.mark.parametrize(
    ("itype", "offered"),
    [
        ("vm-spr-sml", {"cpu"}),
        ("bm-spr", {"cpu"}),
        ("bm-icp-gaudi2", {"cpu", "gaudi"}),
        ("bm-spr-pvc-1100-4", {"cpu", "xpu"}),
        ("something-new", None),
    ],
)
def test_idc_instance_types(itype: str, offered: set[str] | None) -> None:
    assert accelerators.idc_instance_accelerators(itype) == offered


def test_unknown_is_not_judged() -> None:
    assert accelerators.missing_accelerator("xpu", None, "x") is None
    assert "'xpu' is not available on instance type vm-spr-sml" in (
        accelerators.missing_accelerator(
            "xpu", accelerators.idc_instance_accelerators("vm-spr-sml"), "instance type vm-spr-sml"
        )
        or ""
    )
