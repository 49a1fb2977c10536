"""The local driver with the real uv + Ansible environment build (torch==2.13.0 + six).

The build runs in the bubblewrap sandbox as the builder uid: a fresh env dir is built with a
probe package whose ``.pth`` file runs when the env's python first starts (the build's verify
step) and records who it ran as, what environment it saw and what it could reach.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
import stat
import subprocess
import tarfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.provisioner.envs.sandboxed_build import BUILDER_TENANT
from services.provisioner.settings import ProvisionerSettings
from shared.events import ProjectCreated, RunRequested
from shared.sandbox import Sandboxes, sandbox_argv, sandbox_env
from tests.support.pep503_index import serve_index
from tests.unit.provisioner.harness import Harness, spec_dict

pytestmark = pytest.mark.timeout(900)

SENTINEL = "s.vault-token-sentinel-" + uuid.uuid4().hex


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


_PROBE = """\
import json, os, socket, sys

def record():
    path = os.path.join(sys.prefix, os.pardir, "build-probe.json")
    try:  # only the first start of the env's python (the build's verify step) records
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError:
        return
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
        reached = True
    except OSError:
        reached = False
    seen = {{"uid": os.getuid(), "gid": os.getgid(), "env": dict(os.environ),
            "reached_loopback": reached, "cache_visible": os.path.exists({cache!r})}}
    with os.fdopen(fd, "w") as handle:
        json.dump(seen, handle)
"""


def _probe_wheel(folder: Path, *, port: int, cache: str) -> Path:
    """A wheel whose ``.pth`` file runs code whenever the env's python starts."""
    name, version = "aidp_build_probe", "1.0"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": _PROBE.format(port=port, cache=cache).encode(),
        f"{name}.pth": f"import {name}; {name}.record()\n".encode(),
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: aidp-build-probe\nVersion: {version}\n".encode()
        ),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: aidp-tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for file, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{file},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for file, data in files.items():
            archive.writestr(file, data)
    return path


@pytest.fixture
def loopback_service() -> Iterator[int]:
    """A TCP listener on the host's loopback (what RabbitMQ, Postgres or OpenBao would be)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.mark.slow
async def test_local_build_runs_sandboxed_as_the_builder_uid(
    tmp_path: Path, loopback_service: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the service's own environment holds must never reach the build.
    monkeypatch.setenv("AIDP_VAULT_TOKEN", SENTINEL)
    monkeypatch.setenv("ITAC_CLIENT_SECRET", SENTINEL)
    env_root = tmp_path / "envs"  # fresh: this test's run builds the env itself
    cache = str(env_root / ".build-cache")
    wheels = tmp_path / "wheels"
    _probe_wheel(wheels, port=loopback_service, cache=cache)
    defaults = ProvisionerSettings(bus_url="memory://x").torch_find_links
    settings = ProvisionerSettings(
        data_dir=tmp_path / "data",
        env_dir=env_root,
        torch_find_links=[*defaults, str(wheels)],
        retry_delay=0.2,
        reaper_interval=3600,
        bus_url="memory://provisioner-sandboxed-build",
    )
    spec = _spec(packages=["six", "aidp-build-probe"])
    async with Harness(settings, bus_url=settings.bus_url) as h:
        _, run = await _run(h, spec)
        ready = await h.wait_for("NodesReady", run, timeout=900)
    env = ready.payload["env"]
    assert env["torch_version"].startswith("2.13.0")
    env_dir = Path(env["python"]).parent.parent.parent
    sandboxes = Sandboxes(settings.sandbox_policy())
    builder = sandboxes.leases.lease(BUILDER_TENANT)  # the lease the build took
    assert settings.sandbox_uid_min <= builder <= settings.sandbox_uid_max

    # Installed as the builder uid; readable and traversable by everyone (runs' uids).
    venv = env_dir / "venv"
    assert env_dir.stat().st_uid == builder
    count = 0
    for folder, dirs, files in os.walk(venv):
        for name in [*dirs, *files]:
            info = os.lstat(os.path.join(folder, name))
            if stat.S_ISLNK(info.st_mode):
                continue
            count += 1
            assert info.st_uid == builder, os.path.join(folder, name)
            wanted = 0o005 if stat.S_ISDIR(info.st_mode) else 0o004
            assert info.st_mode & wanted == wanted, os.path.join(folder, name)
    assert count > 1000  # torch is in there
    assert os.lstat(env_dir / ".aidp-ready").st_uid == builder
    assert Path(cache).stat().st_uid == builder  # the builder's own package cache

    # The package's code ran (its .pth at the verify step) as the builder uid, with only
    # the build's environment, without the host's network and without the package cache.
    seen = json.loads((env_dir / "build-probe.json").read_text())
    assert (seen["uid"], seen["gid"]) == (builder, builder)
    allowed = {
        "PATH", "HOME", "TMPDIR", "LANG", "UV_NO_CONFIG", "UV_LINK_MODE", "PWD", "SHLVL",
        "UV_CACHE_DIR", "UV_PYTHON_DOWNLOADS", "UV_NO_PROGRESS", "_",
        "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy",
        "SSL_CERT_FILE", "SSL_CERT_DIR",
    }  # fmt: skip
    assert set(seen["env"]) <= allowed, set(seen["env"]) - allowed
    assert SENTINEL not in json.dumps(seen)
    assert seen["env"]["HOME"] == "/tmp"
    assert seen["reached_loopback"] is False and seen["cache_visible"] is False
    with socket.create_connection(("127.0.0.1", loopback_service), timeout=3):
        pass  # the service is up: only the sandbox could not reach it

    # A run's sandbox (another uid, the env read-only, as the trainer mounts it) uses it.
    workspace = tmp_path / "run-workspace"
    workspace.mkdir()
    tenant = f"reader-{uuid.uuid4()}"
    try:
        sandbox = sandboxes.prepare(tenant=tenant, workspace=str(workspace), python=env["python"])
        assert sandbox.uid != builder
        code = "import torch, six, transformers, safetensors; print(torch.__version__)"
        argv = sandbox_argv(sandbox, [env["python"], "-c", code])
        used = subprocess.run(
            argv,
            env=sandbox_env({"PATH": "/usr/bin:/bin", "HOME": str(workspace)}),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        sandboxes.leases.release(tenant)
    assert used.returncode == 0, used.stderr
    assert used.stdout.strip() == env["torch_version"]


async def test_local_build_without_bubblewrap_fails_clearly(tmp_path: Path) -> None:
    settings = ProvisionerSettings(
        data_dir=tmp_path / "data",
        env_dir=tmp_path / "envs",
        sandbox_bwrap="/nonexistent/bwrap",
        retry_delay=0.2,
        reaper_interval=3600,
        bus_url="memory://provisioner-no-bwrap",
    )
    async with Harness(settings, bus_url=settings.bus_url) as h:
        _, run = await _run(h, _spec(packages=["six"]))
        failed = await h.wait_for("NodesFailed", run, timeout=300)
    assert failed.payload["step"] == "configure"
    assert failed.payload["retryable"] is False
    reason = failed.payload["reason"]
    assert "sandbox" in reason and "/nonexistent/bwrap" in reason
    assert "apt-get install bubblewrap" in reason
    assert not list((tmp_path / "envs").glob("*/venv"))  # nothing was built unsandboxed
    assert not any((settings.data_dir / "workspaces").iterdir())


_BACKEND = """\
import base64, hashlib, json, os, zipfile

NAME, VERSION = "hookpkg", "1.0"
INFO = f"{NAME}-{VERSION}.dist-info"
METADATA = f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n"


def _record():  # into uv's cache: the one folder both the resolver and the builder write
    cache = os.environ.get("UV_CACHE_DIR")
    if cache:
        with open(os.path.join(cache, f"hook-{os.getuid()}.json"), "w") as handle:
            json.dump({"uid": os.getuid(), "gid": os.getgid(), "env": dict(os.environ)}, handle)


def get_requires_for_build_wheel(config_settings=None):
    _record()
    return []


def prepare_metadata_for_build_wheel(directory, config_settings=None):
    _record()
    os.makedirs(os.path.join(directory, INFO))
    with open(os.path.join(directory, INFO, "METADATA"), "w") as handle:
        handle.write(METADATA)
    return INFO


def build_wheel(directory, config_settings=None, metadata_directory=None):
    _record()
    files = {f"{NAME}.py": b"", f"{INFO}/METADATA": METADATA.encode(),
             f"{INFO}/WHEEL": b"Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}
    record = [f"{INFO}/RECORD,,"]
    for file, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.insert(0, f"{file},sha256={digest.decode()},{len(data)}")
    files[f"{INFO}/RECORD"] = ("\\n".join(record) + "\\n").encode()
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, name), "w") as archive:
        for file, data in files.items():
            archive.writestr(file, data)
    return name
"""


def _hook_sdist(index: Path) -> None:
    """``hookpkg`` as an sdist only (no wheel): installing it runs its build backend."""
    folder = index / "simple" / "hookpkg"
    folder.mkdir(parents=True)
    path = folder / "hookpkg-1.0.tar.gz"
    members = {
        "hookpkg-1.0/PKG-INFO": "Metadata-Version: 2.1\nName: hookpkg\nVersion: 1.0\n",
        "hookpkg-1.0/pyproject.toml": "[build-system]\nrequires = []\n"
        'build-backend = "backend"\nbackend-path = ["."]\n',
        "hookpkg-1.0/backend.py": _BACKEND,
    }
    with tarfile.open(path, "w:gz") as archive:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / "index.html").write_text(f'<a href="{path.name}#sha256={digest}">{path.name}</a>\n')
    (index / "simple" / "index.html").write_text('<a href="hookpkg/">hookpkg</a>\n')


@pytest.mark.slow
async def test_allowed_source_build_runs_as_the_builder_uid_with_a_scrubbed_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIDP_VAULT_TOKEN", SENTINEL)
    monkeypatch.setenv("ITAC_CLIENT_SECRET", SENTINEL)
    index = tmp_path / "index"
    _hook_sdist(index)
    env_root = tmp_path / "envs"
    with serve_index(index) as url:
        settings = ProvisionerSettings(
            data_dir=tmp_path / "data",
            env_dir=env_root,
            allow_source_builds=True,
            torch_indexes={"cpu": url},  # the local index as the extra index, PyPI first
            use_torch_index=True,
            retry_delay=0.2,
            reaper_interval=3600,
            bus_url="memory://provisioner-source-build",
        )
        async with Harness(settings, bus_url=settings.bus_url) as h:
            _, run = await _run(h, _spec(packages=["hookpkg"]))
            ready = await h.wait_for("NodesReady", run, timeout=900)
    env_dir = Path(ready.payload["env"]["python"]).parent.parent.parent
    builder = Sandboxes(settings.sandbox_policy()).leases.lease(BUILDER_TENANT)
    seen = json.loads((env_root / ".build-cache" / f"hook-{builder}.json").read_text())
    assert (seen["uid"], seen["gid"]) == (builder, builder)
    assert not [k for k in seen["env"] if k.startswith("AIDP_")]
    assert SENTINEL not in json.dumps(seen)
    assert seen["env"]["HOME"] == "/tmp"
    assert seen["env"]["UV_CACHE_DIR"] == str(env_root / ".build-cache")
    assert not (env_root / ".build-cache" / "hook-0.json").exists()  # never as root
    # the lock's resolution ran the hook too, sandboxed with a private cache: never as root
    assert not list(env_root.glob("**/hook-0.json"))
    installed = list((env_dir / "venv").glob("lib/python*/site-packages/hookpkg.py"))
    assert installed and installed[0].stat().st_uid == builder
