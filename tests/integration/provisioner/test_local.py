"""The local driver with the real uv + Ansible environment build (torch==2.13.0 + six)."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from services.provisioner.settings import ProvisionerSettings
from shared.events import ProjectCreated, RunRequested
from tests.unit.provisioner.harness import Harness, spec_dict

pytestmark = pytest.mark.timeout(900)


def _spec(**kw: object) -> dict:
    return spec_dict(provider="local", **kw)


async def _run(h: Harness, spec: dict) -> tuple[uuid.UUID, uuid.UUID]:
    project, run = uuid.uuid4(), uuid.uuid4()
    owner = uuid.uuid4()
    await h.publish(ProjectCreated(owner_id=owner, spec=spec), project_id=project, run_id=run)
    return project, run


@pytest.mark.slow
async def test_full_build_then_warm_rerun(real_settings: ProvisionerSettings) -> None:
    spec = _spec(packages=["six"])
    async with Harness(real_settings, bus_url=real_settings.bus_url) as h:
        project, run1 = await _run(h, spec)
        ready = await h.wait_for("NodesReady", run1, timeout=900)
        env = ready.payload["env"]
        node = ready.payload["nodes"][0]
        assert env["torch_version"].startswith("2.13.0") and node["python"] == env["python"]
        code = "import torch, six, transformers, safetensors; print(torch.__version__)"
        check = subprocess.run(
            [env["python"], "-c", code], capture_output=True, text=True, check=True
        )
        assert check.stdout.strip() == env["torch_version"]
        lock_path = f"{env['python'].rsplit('/venv/', 1)[0]}/requirements.lock"
        with open(lock_path) as handle:
            assert "--hash=sha256:" in handle.read()

        run2 = uuid.uuid4()
        started = time.perf_counter()
        await h.publish(RunRequested(spec=spec, run_number=2), project_id=project, run_id=run2)
        ready2 = await h.wait_for("NodesReady", run2, timeout=60)
        warm = time.perf_counter() - started
        print(f"\nwarm re-run with the same lock: {warm:.2f} s")
        assert warm < 2.0
        assert ready2.payload["env"] == env
        stages = [e.payload["message"] for e in h.of("ProvisioningProgress", run2)]
        assert any("already built" in m for m in stages)
        with h.provisioner.runtime.db.session() as s:
            from services.provisioner.models import RunNodes

            a, b = s.get(RunNodes, run1), s.get(RunNodes, run2)
            assert a is not None and b is not None and a.lock == b.lock
        assert node["workdir"] != ready2.payload["nodes"][0]["workdir"]  # a workspace per run


async def test_misspelt_package_fails_with_uv_message(real_settings: ProvisionerSettings) -> None:
    async with Harness(real_settings, bus_url=real_settings.bus_url) as h:
        _, run = await _run(h, _spec(packages=["sixx-no-such-package-aidp"]))
        failed = await h.wait_for("NodesFailed", run, timeout=120)
    assert failed.payload["step"] == "lock"
    reason = failed.payload["reason"]
    assert "sixx-no-such-package-aidp" in reason and "not found" in reason
    assert not list((real_settings.data_dir / "workspaces").glob("*"))


async def test_missing_python_fails_clearly(real_settings: ProvisionerSettings) -> None:
    async with Harness(real_settings, bus_url=real_settings.bus_url) as h:
        _, run = await _run(h, _spec(packages=["six"], python="3.12"))
        failed = await h.wait_for("NodesFailed", run, timeout=300)
    assert failed.payload["step"] == "configure"
    assert "Python 3.12 cannot be found" in failed.payload["reason"]
    assert not any((real_settings.data_dir / "workspaces").iterdir())
