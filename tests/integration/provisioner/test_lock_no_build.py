"""Lock resolution never runs a package's build hook (issue 12, item 2).

A local PEP 503 index (served over HTTP) offers ``evilpkg`` only as an sdist whose PEP 517
backend writes a marker file holding the environment it saw. By default uv resolves with
``--no-build``: no marker, and the failure says "no wheel for evilpkg". With
``AIDP_ALLOW_SOURCE_BUILDS`` the hook runs in the run sandbox as the resolver uid, sees
an empty environment (none of the service's variables) and writes nothing outside its
sandbox. On nodes, ``uv pip sync`` gets
``--no-build`` too (the torch_env role's script, rendered by real Ansible).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.provisioner.drivers.base import Node
from services.provisioner.drivers.fake import FakeCloud, FakeDriver
from services.provisioner.envs.ansible import run_playbook
from services.provisioner.envs.lock import (
    EnvRequest,
    network_env,
    resolve_lock,
    uv_compile_argv,
)
from services.provisioner.envs.sandboxed_lock import RESOLVER_TENANT
from services.provisioner.settings import ProvisionerSettings
from shared.errors import ProviderError
from shared.events import ProjectCreated
from shared.sandbox import UidLeases
from tests.support.pep503_index import hook_sdist, plain_wheel, probe_sdist, reports, serve_index
from tests.unit.provisioner.harness import Harness, spec_dict

pytestmark = pytest.mark.timeout(300)

SENTINEL = "s.vault-token-sentinel-" + uuid.uuid4().hex
#: Variables uv itself sets for the build backend it starts.
_UV_BUILD_VARS = ("VIRTUAL_ENV", "PYTHON", "PYO3_PYTHON", "SOURCE_DATE_EPOCH", "PWD", "UV_INTERNAL")
_UV_SELF = "UV"  # the uv binary, for build backends that call it


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "build-hook-ran.json"


@pytest.fixture
def index_url(tmp_path: Path, marker: Path) -> Iterator[str]:
    root = tmp_path / "index"
    hook_sdist(root, "evilpkg", "1.0", marker)
    plain_wheel(root, "goodpkg", "1.0")
    with serve_index(root) as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ProvisionerSettings:
    # What the service's own environment holds must never reach uv or a build hook.
    monkeypatch.setenv("AIDP_VAULT_TOKEN", SENTINEL)
    monkeypatch.setenv("ITAC_CLIENT_SECRET", SENTINEL)
    return ProvisionerSettings(
        data_dir=tmp_path / "data",
        env_dir=tmp_path / "envs",
        bus_url="memory://lock-no-build",
        retry_delay=0.2,
        reaper_interval=3600,
        torch_find_links=[],
        always_packages=[],
    )


def _request(index_url: str, *packages: str, builds: bool = False) -> EnvRequest:
    return EnvRequest(
        python="3.11",
        accelerator="cpu",
        torch=None,
        packages=packages,
        find_links=(),
        index_url=index_url,
        extra_index_urls=(),
        source_builds=builds,
    )


async def test_an_sdist_is_never_built(
    settings: ProvisionerSettings, index_url: str, marker: Path
) -> None:
    assert "--no-build" in uv_compile_argv(_request(index_url, "evilpkg"), settings)
    with pytest.raises(ProviderError) as caught:
        await resolve_lock(_request(index_url, "goodpkg", "evilpkg"), settings)
    assert not marker.exists(), "a build hook ran on the controller"
    assert caught.value.code == "no_wheel" and not caught.value.retryable
    assert str(caught.value).startswith("no wheel for evilpkg:")
    assert "AIDP_ALLOW_SOURCE_BUILDS" in str(caught.value)


async def test_wheels_resolve_without_builds(
    settings: ProvisionerSettings, index_url: str, marker: Path
) -> None:
    lock = await resolve_lock(_request(index_url, "goodpkg"), settings)
    assert "goodpkg==1.0" in lock.text and "--hash=sha256:" in lock.text
    assert not marker.exists()


async def test_allowed_builds_run_sandboxed_with_an_empty_environment(
    tmp_path: Path, settings: ProvisionerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With builds allowed the hook runs, but as the resolver's sandbox uid, with none of
    the service's environment, and writes nothing outside its sandbox."""
    assert settings.allow_source_builds is False
    monkeypatch.setenv("AIDP_ALLOW_SOURCE_BUILDS", "true")
    allowed = ProvisionerSettings(
        data_dir=tmp_path / "data", env_dir=tmp_path / "envs", torch_find_links=[]
    )
    assert allowed.allow_source_builds is True
    host_tmp = Path("/tmp") / f"aidp-hook-{uuid.uuid4().hex}"
    outside = [
        tmp_path / "outside-marker",  # the test's (and the service's user's) files
        allowed.resolved_env_dir() / "poisoned",  # the shared env dir and lock cache
        allowed.data_dir / "poisoned",  # the service's data dir (databases, keys)
        host_tmp,  # the host's /tmp (the sandbox has a private one)
    ]
    root = tmp_path / "probe-index"
    (root / "simple").mkdir(parents=True)
    with serve_index(root) as url:
        probe_sdist(
            root, "probepkg", "1.0", report_url=url.removesuffix("/simple") + "/report",
            outside=outside,
        )  # fmt: skip
        req = _request(url, "probepkg", builds=True)
        assert "--no-build" not in uv_compile_argv(req, allowed)
        assert req.key() != _request(url, "probepkg").key()  # locks never mix
        lock = await resolve_lock(req, allowed)
    assert "probepkg==1.0" in lock.text
    seen = reports(root)
    assert seen, "the build hook did not run"
    policy = allowed.sandbox_policy()
    resolver_uid = UidLeases(policy).lease(RESOLVER_TENANT)
    for report in seen:
        assert report["uid"] == report["gid"] == resolver_uid != os.getuid()
        assert policy.uid_min <= resolver_uid <= policy.uid_max
        env = report["env"]
        assert isinstance(env, dict)
        assert SENTINEL not in json.dumps(env)
        assert not [k for k in env if k.startswith(("AIDP_", "ITAC_", "VAULT", "BAO"))]
        ours = {
            "PATH", "HOME", "TMPDIR", "LANG", "UV_NO_CONFIG", "UV_NO_PROGRESS",
            "UV_CACHE_DIR", "UV_PYTHON_DOWNLOADS", *network_env(),
        }  # fmt: skip
        extra = set(env) - ours - {_UV_SELF}
        assert not [k for k in extra if not k.startswith(_UV_BUILD_VARS)]
        assert env["UV_CACHE_DIR"] != str(allowed.resolved_env_dir() / ".uv-cache")
        writes = report["writes"]
        assert isinstance(writes, dict)
        for path in outside[:3]:
            assert writes[str(path)] != "written", path
    for path in outside:
        assert not path.exists(), f"the build hook wrote {path}"
    assert not (allowed.controller_dir() / "resolve").exists() or not any(
        (allowed.controller_dir() / "resolve").iterdir()
    )  # the workspace is gone


async def test_the_run_fails_naming_the_package(
    settings: ProvisionerSettings, index_url: str, marker: Path
) -> None:
    # gaudi: torch comes with the machine image, so the lock needs only the spec's packages
    # (declared offered: the local node's accelerator check would refuse it first).
    settings = settings.model_copy(update={"index_url": index_url, "local_accelerators": ["gaudi"]})
    spec = spec_dict(accelerator="gaudi", packages=["evilpkg"])
    async with Harness(settings, bus_url=settings.bus_url) as h:
        run = uuid.uuid4()
        await h.publish(
            ProjectCreated(owner_id=uuid.uuid4(), spec=spec), project_id=uuid.uuid4(), run_id=run
        )
        failed = (await h.wait_for("NodesFailed", run, timeout=120)).payload
    assert "no wheel for evilpkg" in failed["reason"]
    assert not failed["retryable"]
    assert not marker.exists()


_RENDER = """\
- name: Render the torch_env build script
  hosts: all
  gather_facts: false
  tasks:
    - name: Template it
      ansible.builtin.template:
        src: "{{ aidp_template }}"
        dest: "{{ aidp_out }}"
"""


@pytest.mark.parametrize("allow", [False, True])
async def test_nodes_install_without_builds(tmp_path: Path, allow: bool) -> None:
    ansible_dir = tmp_path / "ansible"
    ansible_dir.mkdir()
    (ansible_dir / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = False\n")
    (ansible_dir / "provision.yml").write_text(_RENDER)
    template = (
        Path(__file__).resolve().parents[3]
        / "deploy/ansible/roles/torch_env/templates/build_env.sh.j2"
    )
    out = tmp_path / "build_env.sh"
    host_vars = {
        "aidp_template": str(template),
        "aidp_out": str(out),
        "aidp_lock_hash": "f" * 64,
        "aidp_env_dir": str(tmp_path / "env"),
        "aidp_env_root": str(tmp_path),
        "aidp_tools_dir": str(tmp_path / "bin"),
        "aidp_python_downloads": "never",
        "aidp_python_version": "3.11",
        "aidp_accelerator": "cpu",
        "aidp_package_source": "index",
        "aidp_find_links": [],
        "aidp_index_url": "",
        "aidp_extra_index_urls": [],
        "aidp_allow_source_builds": allow,
        "aidp_serving_modules": ["json"],
    }

    class Local(FakeDriver):
        def ansible_vars(self, node: Node) -> dict[str, object]:
            return {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}

    async def progress(stage: str, message: str, pct: float | None) -> None:
        return None

    node = Node(
        name="local-0",
        index=0,
        provider="fake",
        address="localhost",
        workdir=str(tmp_path),
        env_root=str(tmp_path),
        tools_dir=str(tmp_path),
        connection="local",
    )
    await run_playbook(
        nodes=[node],
        driver=Local(FakeCloud(root=tmp_path / "cloud")),
        host_vars=lambda _node: host_vars,
        private_dir=tmp_path / "private",
        settings=ProvisionerSettings(
            data_dir=tmp_path / "data", bus_url="memory://x", ansible_dir=ansible_dir
        ),
        progress=progress,
        cancel=threading.Event(),
    )
    sync = out.read_text().split('"$UV" pip sync', 1)[1].split('"$ENV_DIR/requirements.lock"')[0]
    assert ("--no-build" in sync) is not allow
