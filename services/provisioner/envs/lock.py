"""Resolve an environment once into a hash-pinned lock.

The resolution input (:class:`EnvRequest`: Python, accelerator, the framework's pin (torch,
or ``tensorflow-cpu`` / ``tensorflow[and-cuda]`` for ``environment.framework: tensorflow``),
the packages sorted and de-duplicated, where packages come from) has a key; the lock
resolved for a key is kept (in the provisioner's DB and in the env dir) and reused, so every
run of the same spec gets a byte-identical lock. ``uv pip compile --generate-hashes
--no-header`` is run from a fixed file name, so the text holds no timestamp, command line
or temporary path.

Resolution never runs a package's code: ``--no-build`` (wheels only) unless the operator
sets ``AIDP_ALLOW_SOURCE_BUILDS``; a package without a wheel fails with "no wheel for
<package>". uv runs with a minimal environment (``PATH``, ``HOME`` in a private temporary
directory, ``UV_CACHE_DIR``), never the service's own (no Vault token, database URL or
cloud credentials reach it). With builds allowed, uv and the hooks it runs are in the run
sandbox as the resolver uid, with a private cache (:mod:`.sandboxed_lock`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from services.provisioner.settings import ProvisionerSettings
from shared.errors import ProviderError
from shared.spec import ProjectSpec, task_packages

__all__ = [
    "EnvLockText",
    "EnvRequest",
    "ensure_wheelhouse",
    "env_request",
    "lock_failure",
    "network_env",
    "resolve_lock",
    "resolver_env",
    "tensorflow_requirement",
]

_INPUT_NAME = "requirements.in"


@dataclass(frozen=True)
class EnvRequest:
    """Everything a lock depends on; ``key()`` names it."""

    python: str
    accelerator: str
    torch: str | None  # None: the machine image provides torch (gaudi)
    packages: tuple[str, ...]
    find_links: tuple[str, ...]
    index_url: str | None
    extra_index_urls: tuple[str, ...]
    platform: str = "x86_64-manylinux_2_28"
    source_builds: bool = False  # AIDP_ALLOW_SOURCE_BUILDS: a lock may then name sdists
    framework: str = "pytorch"
    #: tensorflow framework: the pinned requirement (``tensorflow-cpu==…`` on cpu nodes,
    #: ``tensorflow[and-cuda]==…`` on cuda nodes); torch is then None
    tensorflow: str | None = None

    def key(self) -> str:
        fields = asdict(self)
        if not self.source_builds:
            del fields["source_builds"]  # keys of wheel-only locks are unchanged
        if self.framework == "pytorch":
            del fields["framework"], fields["tensorflow"]  # PyTorch keys are unchanged
        blob = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def requirements(self) -> str:
        lines = [f"torch=={self.torch}"] if self.torch else []
        if self.tensorflow:
            lines.append(self.tensorflow)
        return "\n".join([*lines, *self.packages]) + "\n"


@dataclass(frozen=True)
class EnvLockText:
    text: str

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def _normalise(packages: list[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for raw in packages:
        req = " ".join(raw.split())
        if req:
            seen.setdefault(req.lower(), req)
    return tuple(seen[k] for k in sorted(seen))


#: Names a TensorFlow env pins itself: a spec's own entries for them are left out (as
#: torch's are); a ``keras`` pin is the spec's to choose.
_TF_NAMES = frozenset({"tensorflow", "tensorflow-cpu", "tensorflow-intel"})


def _package_name(requirement: str) -> str:
    try:
        return canonicalize_name(Requirement(requirement).name)
    except InvalidRequirement:
        return ""


def tensorflow_requirement(accelerator: str, version: str) -> str:
    """The pinned TensorFlow of a node kind: the CPU-only wheel, or CUDA's libraries too."""
    if accelerator == "cuda":
        return f"tensorflow[and-cuda]=={version}"
    return f"tensorflow-cpu=={version}"


def env_request(spec: ProjectSpec, settings: ProvisionerSettings) -> EnvRequest:
    """The resolution input of ``spec``: its packages plus the ones every env gets."""
    accelerator = spec.resources.accelerator
    if spec.environment.framework == "tensorflow":
        # keras comes with tensorflow (Keras 3); torch is not installed
        own = [p for p in spec.environment.packages if _package_name(p) not in _TF_NAMES]
        return EnvRequest(
            python=spec.environment.python,
            accelerator=accelerator,
            torch=None,
            packages=_normalise([*settings.always_packages, *own]),
            find_links=tuple(settings.torch_find_links),
            index_url=settings.index_url,
            extra_index_urls=(),
            source_builds=settings.allow_source_builds,
            framework="tensorflow",
            tensorflow=tensorflow_requirement(accelerator, settings.tensorflow_version),
        )
    user = [p for p in spec.environment.packages if not p.strip().lower().startswith("torch")]
    index = settings.torch_indexes.get(accelerator, "") if settings.use_torch_index else ""
    return EnvRequest(
        python=spec.environment.python,
        accelerator=accelerator,
        torch=None if accelerator == "gaudi" else settings.torch_version,
        packages=_normalise([*settings.always_packages, *task_packages(spec), *user]),
        find_links=tuple(settings.torch_find_links),
        index_url=settings.index_url,
        extra_index_urls=(index,) if index else (),
        source_builds=settings.allow_source_builds,
    )


def _locks_dir(settings: ProvisionerSettings) -> Path:
    path = settings.resolved_env_dir() / ".locks"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def uv_compile_argv(req: EnvRequest, settings: ProvisionerSettings) -> list[str]:
    argv = [
        settings.uv_binary, "pip", "compile", _INPUT_NAME,
        "--generate-hashes", "--no-header", "--quiet", "--no-progress",
        "--python-version", req.python, "--python-platform", req.platform,
        "--index-strategy", "unsafe-best-match", "--output-file", "requirements.lock",
    ]  # fmt: skip
    for link in req.find_links:
        argv += ["--find-links", link]
    if req.index_url:
        argv += ["--index-url", req.index_url]
    for url in req.extra_index_urls:
        argv += ["--extra-index-url", url]
    if not req.source_builds:
        argv.append("--no-build")
    return argv


#: How the controller reaches a package index (proxy, CA bundle): passed on when set.
_NETWORK_VARS = (
    "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR",
)  # fmt: skip


def network_env() -> dict[str, str]:
    """The controller's proxy/CA variables that are set (uv needs them to reach an index)."""
    return {name: os.environ[name] for name in _NETWORK_VARS if os.environ.get(name)}


def resolver_env(home: Path, settings: ProvisionerSettings) -> dict[str, str]:
    """The whole environment of the resolver process: ``PATH``, a private ``HOME``, uv's
    cache dir and the controller's proxy/CA settings; nothing else of the service's own."""
    env = network_env()
    env.update(
        PATH=os.environ.get("PATH") or os.defpath,
        HOME=str(home),
        UV_CACHE_DIR=str(settings.resolved_env_dir() / ".uv-cache"),
        UV_NO_CONFIG="1",
        UV_NO_PROGRESS="1",
    )
    return env


_NO_WHEEL = (
    re.compile(r"Wheels are required for `([^`]+)`"),
    re.compile(r"\b([A-Za-z0-9][A-Za-z0-9._-]*)(?:==\S+)? has no usable wheels"),
    re.compile(r"versions of ([A-Za-z0-9][A-Za-z0-9._-]*) have no usable wheels"),
)


def lock_failure(stderr: str, returncode: int) -> ProviderError:
    """uv's failure as a ProviderError; a wheel-less package says "no wheel for <pkg>"."""
    text = stderr.strip() or f"uv exited {returncode}"
    missing = list(dict.fromkeys(m for rx in _NO_WHEEL for m in rx.findall(text)))
    if missing:
        return ProviderError(
            f"no wheel for {', '.join(missing)}: the platform installs wheels only (building"
            " a source distribution would run its code; an operator may allow it with"
            f" AIDP_ALLOW_SOURCE_BUILDS). uv said: {text}",
            code="no_wheel",
        )
    return ProviderError("resolving the environment's packages failed: " + text, code="lock_failed")


async def resolve_lock(req: EnvRequest, settings: ProvisionerSettings) -> EnvLockText:
    """The lock for ``req``: from the env dir's cache, else resolved with uv now (once).

    Raises ProviderError carrying uv's own message (e.g. a misspelt package); code
    ``no_wheel`` and "no wheel for <package>" when builds are off and one has no wheel.
    """
    cached = _locks_dir(settings) / f"{req.key()}.lock"
    if cached.exists():
        return EnvLockText(cached.read_text())
    if req.source_builds:  # build hooks run: never on the controller itself
        from services.provisioner.envs.sandboxed_lock import compile_in_sandbox

        done = await compile_in_sandbox(
            settings,
            argv=uv_compile_argv(req, settings),
            requirements=req.requirements(),
            python_version=req.python,
            find_links=req.find_links,
        )
        if done.returncode != 0 or done.text is None:
            raise lock_failure(done.stderr, done.returncode or 1)
        _atomic_write(cached, done.text)
        return EnvLockText(done.text)
    with tempfile.TemporaryDirectory(prefix="aidp-lock-") as tmp:
        work, home = Path(tmp) / "work", Path(tmp) / "home"
        work.mkdir()
        home.mkdir(mode=0o700)
        (work / _INPUT_NAME).write_text(req.requirements())
        proc = await asyncio.create_subprocess_exec(
            *uv_compile_argv(req, settings),
            cwd=work,
            env=resolver_env(home, settings),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise lock_failure(err.decode(errors="replace"), proc.returncode or 1)
        text = (work / "requirements.lock").read_text()
    _atomic_write(cached, text)
    return EnvLockText(text)


async def ensure_wheelhouse(
    lock: EnvLockText, req: EnvRequest, settings: ProvisionerSettings
) -> Path:
    """Download every locked wheel once (hashes checked) for push-mode nodes."""
    root = settings.resolved_env_dir() / ".wheelhouse"
    dest = root / lock.hash
    if (dest / ".complete").exists():
        return dest
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    try:
        (tmp / "requirements.lock").write_text(lock.text)
        argv = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
            "--only-binary", ":all:", "--dest", str(tmp), "-r", str(tmp / "requirements.lock"),
        ]  # fmt: skip
        for link in req.find_links:
            argv += ["--find-links", link]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise ProviderError(
                "downloading the locked wheels failed: " + err.decode(errors="replace").strip(),
                code="wheelhouse_failed",
                retryable=True,
            )
        (tmp / "requirements.lock").unlink()
        (tmp / ".complete").touch()
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
