"""LocalOpenBao: a real bao server with persistent storage, initialised and unsealed by aidp."""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path

import httpx
import pytest

from shared.errors import TransientError
from shared.secrets.local import LocalOpenBao
from shared.secrets.vault import VaultClient
from shared.settings import BaseServiceSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_init_file_is_private(local_bao: LocalOpenBao) -> None:
    assert stat.S_IMODE(local_bao.init_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(local_bao.data_dir.stat().st_mode) == 0o700
    record = json.loads(local_bao.init_file.read_text())
    assert set(record) == {"unseal_key", "root_token"}


def test_attach_reuses_the_running_server(local_bao: LocalOpenBao) -> None:
    addr, token = local_bao.ensure_running()
    pid = (local_bao.data_dir / "bao.pid").read_text()
    other = LocalOpenBao(local_bao.data_dir)  # another process/object on the same data dir
    assert other.ensure_running() == (addr, token)
    assert (local_bao.data_dir / "bao.pid").read_text() == pid
    assert VaultClient(addr, token=token).healthy()


def test_restart_keeps_secrets_and_keys(local_bao: LocalOpenBao) -> None:
    addr, token = local_bao.ensure_running()
    client = VaultClient(addr, token=token)
    client.put_user_secret("alice", "HF_TOKEN", "hf_persisted")
    key = f"k-{uuid.uuid4().hex[:8]}"
    client.ensure_key(key)
    dk = client.generate_data_key(key)

    local_bao.stop()
    assert not local_bao.is_running()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{addr}/v1/sys/health", timeout=2)

    addr2, token2 = LocalOpenBao(local_bao.data_dir).ensure_running()
    assert (addr2, token2) == (addr, token)  # same port while it is free
    client = VaultClient(addr2, token=token2)
    assert client.healthy()
    secret = client.get_user_secret("alice", "HF_TOKEN")
    assert secret is not None and secret.reveal() == "hf_persisted"
    assert client.decrypt_data_key(key, dk.wrapped) == dk.plaintext


def test_sealed_is_transient_and_unsealed_again(local_bao: LocalOpenBao) -> None:
    addr, token = local_bao.ensure_running()
    httpx.put(f"{addr}/v1/sys/seal", headers={"X-Vault-Token": token}, timeout=10)
    client = VaultClient(addr, token=token)
    assert not client.healthy()
    with pytest.raises(TransientError):
        client.list_user_secrets("alice")
    assert local_bao.ensure_running() == (addr, token)  # unseals
    assert client.healthy()
    assert client.list_user_secrets("alice") == ["HF_TOKEN"]


def test_from_settings_embedded_attaches(local_bao: LocalOpenBao) -> None:
    settings = BaseServiceSettings(data_dir=local_bao.data_dir.parent, transit_key="emb-key")
    client = VaultClient.from_settings(settings)
    assert client.addr == local_bao.addr and client.healthy()
    dk = client.generate_data_key("emb-key")
    assert client.decrypt_data_key("emb-key", dk.wrapped) == dk.plaintext


def test_taken_port_moves_the_server(tmp_path: Path, local_bao: LocalOpenBao) -> None:
    """A remembered port that another process took is replaced and the config rewritten."""
    addr, _ = local_bao.ensure_running()
    port = int(addr.rsplit(":", 1)[1])
    data_dir = tmp_path / "openbao"
    data_dir.mkdir(mode=0o700)
    (data_dir / "ports.json").write_text(json.dumps({"port": port, "cluster_port": port + 1}))
    other = LocalOpenBao(data_dir)
    try:
        addr2, _ = other.ensure_running()
        assert addr2 != addr
        assert addr2.rsplit(":", 1)[1] in (data_dir / "config.hcl").read_text()
    finally:
        other.stop()
