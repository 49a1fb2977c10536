"""LocalOpenBao: a real bao server with persistent storage, initialised and unsealed by aidp."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest

from shared.errors import TransientError
from shared.secrets.local import LocalOpenBao
from shared.secrets.provision import revoke_self
from shared.secrets.vault import VaultClient
from shared.settings import BaseServiceSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_init_file_is_private(local_bao: LocalOpenBao) -> None:
    assert stat.S_IMODE(local_bao.init_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(local_bao.tokens_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(local_bao.data_dir.stat().st_mode) == 0o700
    record = json.loads(local_bao.init_file.read_text())
    assert set(record) == {"unseal_key", "root_token", "root_token_revoked", "recovery_token"}
    assert record["root_token_revoked"] is True


def test_attach_reuses_the_running_server(local_bao: LocalOpenBao) -> None:
    vault = local_bao.ensure_running()
    pid = (local_bao.data_dir / "bao.pid").read_text()
    other = LocalOpenBao(local_bao.data_dir)  # another process/object on the same data dir
    assert other.ensure_running() == vault  # same address, same scoped tokens
    assert (local_bao.data_dir / "bao.pid").read_text() == pid
    assert VaultClient(vault.addr, token=vault.token_for("gateway")).healthy()


def test_restart_keeps_secrets_and_keys(local_bao: LocalOpenBao) -> None:
    vault = local_bao.ensure_running()
    gateway = VaultClient(vault.addr, token=vault.token_for("gateway"))
    gateway.put_user_secret("alice", "HF_TOKEN", "hf_persisted")
    fetcher = VaultClient(vault.addr, token=vault.token_for("fetcher"))
    dk = fetcher.generate_data_key("aidp-artifacts")

    local_bao.stop()
    assert not local_bao.is_running()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{vault.addr}/v1/sys/health", timeout=2)

    again = LocalOpenBao(local_bao.data_dir).ensure_running()
    assert again == vault  # same port while it is free, the same (renewed) tokens
    trainer = VaultClient(again.addr, token=again.token_for("trainer"))
    assert trainer.healthy()
    secret = trainer.get_user_secret("alice", "HF_TOKEN")
    assert secret is not None and secret.reveal() == "hf_persisted"
    assert trainer.decrypt_data_key("aidp-artifacts", dk.wrapped) == dk.plaintext


def test_sealed_is_transient_and_unsealed_again(local_bao: LocalOpenBao) -> None:
    vault = local_bao.ensure_running()
    root = local_bao.generate_root()  # sealing takes root: an operator's action
    httpx.put(f"{vault.addr}/v1/sys/seal", headers={"X-Vault-Token": root}, timeout=10)
    client = VaultClient(vault.addr, token=vault.token_for("gateway"))
    assert not client.healthy()
    with pytest.raises(TransientError):
        client.list_user_secrets("alice")
    assert local_bao.ensure_running() == vault  # unseals; the tokens are still good
    assert client.healthy()
    assert client.list_user_secrets("alice") == ["HF_TOKEN"]
    revoke_self(vault.addr, root)


def test_heal_unseals_a_sealed_server_and_restarts_a_dead_one(local_bao: LocalOpenBao) -> None:
    """Embedded mode's watchdog (issue 19 item 2): ``heal`` unseals OpenBao after a seal
    (what a restart leaves) and starts it again after it died, keeping secrets and tokens."""
    import os
    import signal

    vault = local_bao.ensure_running()
    client = VaultClient(vault.addr, token=vault.token_for("gateway"))
    client.put_user_secret("carol", "HF_TOKEN", "hf_survives")
    assert local_bao.heal() is None  # up and unsealed: nothing to do

    root = local_bao.generate_root()  # sealing takes root: an operator's action
    httpx.put(f"{vault.addr}/v1/sys/seal", headers={"X-Vault-Token": root}, timeout=10)
    assert not client.healthy()
    assert local_bao.heal() == "unsealed"
    assert client.healthy()
    revoke_self(vault.addr, root)

    pid = int((local_bao.data_dir / "bao.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    assert local_bao.heal() == "restarted and unsealed"
    assert int((local_bao.data_dir / "bao.pid").read_text()) != pid
    assert client.list_user_secrets("carol") == ["HF_TOKEN"]  # same address, same token
    fetcher = VaultClient(vault.addr, token=vault.token_for("fetcher"))
    secret = fetcher.get_user_secret("carol", "HF_TOKEN")
    assert secret is not None and secret.reveal() == "hf_survives"


def test_from_settings_embedded_uses_the_service_token(local_bao: LocalOpenBao) -> None:
    data_dir = local_bao.data_dir.parent
    vault = local_bao.ensure_running()
    fetcher = VaultClient.from_settings(
        BaseServiceSettings(data_dir=data_dir, service_name="fetcher")
    )
    assert fetcher.addr == local_bao.addr and fetcher.healthy()
    assert fetcher._client.token == vault.token_for("fetcher")
    dk = fetcher.generate_data_key("aidp-artifacts")
    assert fetcher.decrypt_data_key("aidp-artifacts", dk.wrapped) == dk.plaintext
    # auth has no use for the artifact key: from_settings does not fail on it
    auth = VaultClient.from_settings(BaseServiceSettings(data_dir=data_dir, service_name="auth"))
    assert auth._client.token == vault.token_for("auth")
    with pytest.raises(ValueError, match="no token for service"):
        VaultClient.from_settings(BaseServiceSettings(data_dir=data_dir, service_name="tenant"))


def test_taken_port_moves_the_server(tmp_path: Path, local_bao: LocalOpenBao) -> None:
    """A remembered port that another process took is replaced and the config rewritten."""
    addr = local_bao.ensure_running().addr
    port = int(addr.rsplit(":", 1)[1])
    data_dir = tmp_path / "openbao"
    data_dir.mkdir(mode=0o700)
    (data_dir / "ports.json").write_text(json.dumps({"port": port, "cluster_port": port + 1}))
    other = LocalOpenBao(data_dir)
    try:
        addr2 = other.ensure_running().addr
        assert addr2 != addr
        assert addr2.rsplit(":", 1)[1] in (data_dir / "config.hcl").read_text()
    finally:
        other.stop()
