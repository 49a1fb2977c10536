"""Distributed mode: deploy/vault/setup-approles.sh on a real OpenBao, then every service
logs in with its own AppRole (AIDP_VAULT_ROLE_ID / AIDP_VAULT_SECRET_ID, as the services'
settings read them) and can do its job and nothing else."""

from __future__ import annotations

import os
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.secrets.vault import VaultClient, VaultDenied
from shared.service_auth import ServiceCredentials, ServiceVerifier, TransitSigningKeys
from shared.settings import BaseServiceSettings
from shared.store import ArtifactStore
from tests.integration.secrets.capabilities import (
    KEY,
    SERVICES,
    check_refused,
    check_store_refused,
    do_job,
    seed,
)
from tests.support import infra

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "deploy" / "vault" / "setup-approles.sh"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, str]]:
    """A dev server of this module's own (the script enables mounts and AppRole on it)."""
    with infra.bao_dev_server() as s:
        yield s


def _run_script(addr: str, token: str, out: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_", "AIDP_"))}
    bao_dir = str(Path(infra.bao_binary()).parent)
    env.update(BAO_ADDR=addr, BAO_TOKEN=token, PATH=f"{bao_dir}:{env.get('PATH', '')}")
    done = subprocess.run(
        ["sh", str(SCRIPT), str(out)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@pytest.fixture(scope="module")
def credentials(server: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vault-env")
    (out / "gateway.env").write_text("AIDP_PORT=8000\nAIDP_VAULT_SECRET_ID=stale\n")
    _run_script(*server, out)
    _run_script(*server, out)  # idempotent; new secret ids, other lines kept
    return out


def test_script_writes_private_env_files(credentials: Path) -> None:
    for service in SERVICES:
        path = credentials / f"{service}.env"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        env = _read_env(path)
        assert env["AIDP_VAULT_ROLE_ID"] and env["AIDP_VAULT_SECRET_ID"]
    gateway = (credentials / "gateway.env").read_text()
    assert "AIDP_PORT=8000" in gateway and "stale" not in gateway
    assert gateway.count("AIDP_VAULT_SECRET_ID=") == 1


@pytest.mark.parametrize("service", SERVICES)
def test_each_approle_does_its_job_and_nothing_else(
    service: str, server: tuple[str, str], credentials: Path, tmp_path: Path
) -> None:
    addr, root = server
    user = f"u-{uuid.uuid4().hex[:10]}"
    seed(VaultClient(addr, token=root), user)
    env = _read_env(credentials / f"{service}.env")
    settings = BaseServiceSettings(
        mode="distributed",
        service_name=service,
        data_dir=tmp_path,
        vault_addr=addr,
        vault_role_id=env["AIDP_VAULT_ROLE_ID"],
        vault_secret_id=SecretStr(env["AIDP_VAULT_SECRET_ID"]),
    )
    client = VaultClient.from_settings(settings)  # mounts and key: not its to manage
    do_job(service, client, user, tmp_path / "store")
    check_refused(service, client, user)
    if service not in ("fetcher", "trainer"):
        fetcher_env = _read_env(credentials / "fetcher.env")
        fetcher = VaultClient(
            addr,
            role_id=fetcher_env["AIDP_VAULT_ROLE_ID"],
            secret_id=fetcher_env["AIDP_VAULT_SECRET_ID"],
        )
        ArtifactStore(tmp_path / "store", fetcher, KEY).put_stream(iter([b"model"]))
        check_store_refused(client, tmp_path / "store")


@pytest.mark.parametrize("service", SERVICES)
def test_each_approle_signs_service_tokens_as_itself_only(
    service: str, server: tuple[str, str], credentials: Path
) -> None:
    """The script made every service's signing key; a service's policy signs with its own
    and reads the others' public keys (to verify), but cannot sign as another service."""
    addr, _ = server

    def keys_of(name: str) -> TransitSigningKeys:
        env = _read_env(credentials / f"{name}.env")
        return TransitSigningKeys(
            VaultClient(
                addr, role_id=env["AIDP_VAULT_ROLE_ID"], secret_id=env["AIDP_VAULT_SECRET_ID"]
            )
        )

    keys = keys_of(service)
    assert keys.ensure(service)
    callee = "auth" if service != "auth" else "fetcher"
    token = ServiceCredentials(service, keys).token_for(callee)
    verifier = ServiceVerifier(callee, keys_of(callee), known_callers=frozenset(SERVICES))
    assert verifier.verify(token).caller == service
    for other in SERVICES:
        if other != service:
            with pytest.raises(VaultDenied):
                keys.sign(other, b"a token naming another service")
    assert not keys.ensure("intruder")  # no key of its own making
