"""A TensorFlow environment's lock (issue 18 item 1), resolved for real by uv from the
package index: pinned and hash-locked like torch's, ``tensorflow-cpu`` for cpu nodes and
``tensorflow[and-cuda]`` (CUDA's wheels with it) for cuda nodes, no torch; resolving it
again from scratch (another env dir, no cached lock) gives the same lock hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.provisioner.envs.lock import env_request, resolve_lock
from services.provisioner.settings import ProvisionerSettings
from shared.spec import ProjectSpec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _settings(root: Path) -> ProvisionerSettings:
    return ProvisionerSettings(data_dir=root, env_dir=root / "envs", bus_url="memory://tf-lock")


def _spec(accelerator: str) -> ProjectSpec:
    return ProjectSpec.model_validate(
        {
            "name": "tf-lock",
            "model": "hf://owner/model@main",
            "task": "custom",
            "train": {"entrypoint": "train.py"},
            "environment": {"framework": "tensorflow"},
            "resources": {"accelerator": accelerator},
        }
    )


@pytest.mark.parametrize(
    ("accelerator", "pinned", "also"),
    [
        ("cpu", "tensorflow-cpu==2.21.0", "keras=="),
        ("cuda", "tensorflow==2.21.0", "nvidia-cudnn-cu12=="),
    ],
)
async def test_tensorflow_lock_is_pinned_hashed_and_reproducible(
    tmp_path: Path, accelerator: str, pinned: str, also: str
) -> None:
    first_settings, second_settings = _settings(tmp_path / "a"), _settings(tmp_path / "b")
    spec = _spec(accelerator)
    first = await resolve_lock(env_request(spec, first_settings), first_settings)
    second = await resolve_lock(env_request(spec, second_settings), second_settings)
    assert first.hash == second.hash and first.text == second.text
    lines = first.text.splitlines()
    assert any(line.startswith(pinned) for line in lines), first.text[:2000]
    assert any(line.startswith(also) for line in lines)
    assert not any(line.startswith("torch==") for line in lines)  # no torch beside it
    packages = [line for line in lines if line and not line.startswith((" ", "#"))]
    assert all("==" in p for p in packages)  # every package pinned…
    assert first.text.count("--hash=sha256:") >= len(packages)  # …and hash-locked
    # the lock is kept: asking again does not resolve again (same text from the env dir)
    again = await resolve_lock(env_request(spec, first_settings), first_settings)
    assert again.hash == first.hash
