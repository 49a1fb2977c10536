"""VaultClient against a real OpenBao server: KV v2, transit, AppRole, failures."""

from __future__ import annotations

import uuid

import hvac
import pytest

from shared.errors import InvalidInput, TransientError
from shared.secrets.vault import VaultClient, VaultError
from tests.support import infra

pytestmark = pytest.mark.integration


def test_healthy(vault: VaultClient) -> None:
    assert vault.healthy()


def test_ensure_mounts_is_idempotent(vault: VaultClient, root_hvac: hvac.Client) -> None:
    vault.ensure_mounts()
    mounts = root_hvac.sys.list_mounted_secrets_engines()["data"]
    assert mounts["transit/"]["type"] == "transit"
    assert mounts["secret/"]["options"]["version"] == "2"


def test_user_secret_round_trip(vault: VaultClient, root_hvac: hvac.Client, prefix: str) -> None:
    vault.put_user_secret("alice", "HF_TOKEN", "hf_first")
    vault.put_user_secret("alice", "HF_TOKEN", "hf_second")
    secret = vault.get_user_secret("alice", "HF_TOKEN")
    assert secret is not None and secret.reveal() == "hf_second"
    assert "hf_second" not in repr(secret)
    stored = root_hvac.secrets.kv.v2.read_secret_version(
        path=f"{prefix}/users/alice/HF_TOKEN", mount_point="secret", raise_on_deleted_version=True
    )
    assert stored["data"]["data"] == {"value": "hf_second"}


def test_users_are_isolated(vault: VaultClient) -> None:
    vault.put_user_secret("alice", "KAGGLE_API_TOKEN", "alice-kaggle")
    assert vault.get_user_secret("bob", "KAGGLE_API_TOKEN") is None
    assert vault.list_user_secrets("bob") == []
    assert vault.delete_user_secret("bob", "KAGGLE_API_TOKEN") is False
    secret = vault.get_user_secret("alice", "KAGGLE_API_TOKEN")
    assert secret is not None and secret.reveal() == "alice-kaggle"


def test_list_names_only(vault: VaultClient) -> None:
    for name, value in {"HF_TOKEN": "v1", "SSH_KEY": "v2", "B": "v3"}.items():
        vault.put_user_secret("carol", name, value)
    names = vault.list_user_secrets("carol")
    assert names == ["B", "HF_TOKEN", "SSH_KEY"]
    assert all(isinstance(n, str) for n in names)


def test_delete_removes_all_versions(
    vault: VaultClient, root_hvac: hvac.Client, prefix: str
) -> None:
    vault.put_user_secret("dave", "TOKEN", "one")
    vault.put_user_secret("dave", "TOKEN", "two")
    assert vault.delete_user_secret("dave", "TOKEN") is True
    assert vault.get_user_secret("dave", "TOKEN") is None
    assert vault.list_user_secrets("dave") == []
    with pytest.raises(hvac.exceptions.InvalidPath):
        root_hvac.secrets.kv.v2.read_secret_metadata(
            path=f"{prefix}/users/dave/TOKEN", mount_point="secret"
        )
    assert vault.delete_user_secret("dave", "TOKEN") is False


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", "..", "with space"])
def test_invalid_names_refused(vault: VaultClient, bad: str) -> None:
    with pytest.raises(InvalidInput):
        vault.put_user_secret("erin", bad, "x")
    with pytest.raises(InvalidInput):
        vault.get_user_secret(bad, "NAME")


def test_platform_secrets(vault: VaultClient) -> None:
    assert vault.get_platform_secret("auth/jwt-signing") is None
    vault.put_platform_secret("auth/jwt-signing", {"kid": "k1", "private_pem": "PEM"})
    assert vault.get_platform_secret("auth/jwt-signing") == {"kid": "k1", "private_pem": "PEM"}
    with pytest.raises(InvalidInput):
        vault.put_platform_secret("auth/../x", {"a": "b"})


def test_transit_generate_decrypt_rewrap_rotate(vault: VaultClient) -> None:
    key = f"k-{uuid.uuid4().hex[:8]}"
    vault.ensure_key(key)
    vault.ensure_key(key)  # idempotent
    first = vault.generate_data_key(key)
    assert len(first.plaintext) == 32 and first.wrapped.startswith("vault:v1:")
    assert vault.decrypt_data_key(key, first.wrapped) == first.plaintext
    assert vault.generate_data_key(key).plaintext != first.plaintext

    vault.rotate_key(key)
    second = vault.generate_data_key(key)
    assert second.wrapped.startswith("vault:v2:")
    assert vault.decrypt_data_key(key, first.wrapped) == first.plaintext  # old still decrypts
    rewrapped = vault.rewrap_data_key(key, first.wrapped)
    assert rewrapped.startswith("vault:v2:") and rewrapped != first.wrapped
    assert vault.decrypt_data_key(key, rewrapped) == first.plaintext


def test_tampered_wrapped_key_refused(vault: VaultClient) -> None:
    key = f"k-{uuid.uuid4().hex[:8]}"
    vault.ensure_key(key)
    dk = vault.generate_data_key(key)
    with pytest.raises(VaultError):
        vault.decrypt_data_key(key, dk.wrapped[:-6] + "AAAAA=")


def _approle(root: hvac.Client, prefix: str, key: str) -> tuple[str, str, str]:
    """Enable AppRole at a fresh mount with a policy limited to ``prefix`` and ``key``."""
    mount = f"approle-{uuid.uuid4().hex[:8]}"
    root.sys.enable_auth_method("approle", path=mount)
    policy = f"""
path "secret/data/{prefix}/*" {{ capabilities = ["create", "read", "update", "delete"] }}
path "secret/metadata/{prefix}/*" {{ capabilities = ["read", "list", "delete"] }}
path "transit/keys/{key}" {{ capabilities = ["create", "read", "update"] }}
path "transit/datakey/plaintext/{key}" {{ capabilities = ["update"] }}
path "transit/decrypt/{key}" {{ capabilities = ["update"] }}
"""
    root.sys.create_or_update_policy(name=mount, policy=policy)
    root.auth.approle.create_or_update_approle(
        role_name="svc", token_policies=[mount], token_ttl="10m", mount_point=mount
    )
    role_id = root.auth.approle.read_role_id("svc", mount_point=mount)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("svc", mount_point=mount)["data"]["secret_id"]
    return mount, role_id, secret_id


def test_approle_login_and_relogin(
    bao_server: tuple[str, str], vault: VaultClient, root_hvac: hvac.Client, prefix: str
) -> None:
    key = f"k-{uuid.uuid4().hex[:8]}"
    mount, role_id, secret_id = _approle(root_hvac, prefix, key)
    client = VaultClient(
        bao_server[0], role_id=role_id, secret_id=secret_id, prefix=prefix, approle_mount=mount
    )
    client.put_user_secret("frank", "HF_TOKEN", "hf_approle")
    secret = client.get_user_secret("frank", "HF_TOKEN")
    assert secret is not None and secret.reveal() == "hf_approle"
    client.ensure_key(key)
    dk = client.generate_data_key(key)
    assert client.decrypt_data_key(key, dk.wrapped) == dk.plaintext

    # The token is revoked behind the client's back: the next call logs in again.
    root_hvac.auth.token.revoke(client._client.token)
    secret = client.get_user_secret("frank", "HF_TOKEN")
    assert secret is not None and secret.reveal() == "hf_approle"

    # Outside its policy it is refused, clearly and without retrying forever.
    with pytest.raises(VaultError, match="denied"):
        client.rotate_key(key)


def test_bad_approle_credentials(bao_server: tuple[str, str], root_hvac: hvac.Client) -> None:
    mount, role_id, _ = _approle(root_hvac, "nothing", "nothing")
    client = VaultClient(bao_server[0], role_id=role_id, secret_id="wrong", approle_mount=mount)
    with pytest.raises(VaultError):
        client.get_user_secret("u", "N")


def test_unreachable_vault_is_transient() -> None:
    client = VaultClient(f"http://127.0.0.1:{infra.free_port()}", token="t", timeout=2)
    assert client.healthy() is False
    with pytest.raises(TransientError, match="unreachable"):
        client.get_user_secret("u", "NAME")
    with pytest.raises(TransientError):
        client.generate_data_key("aidp-artifacts")


def test_wrong_token_is_refused(bao_server: tuple[str, str]) -> None:
    client = VaultClient(bao_server[0], token="not-a-token")
    with pytest.raises(VaultError, match="denied"):
        client.list_user_secrets("u")


def test_from_settings_external_vault(bao_server: tuple[str, str]) -> None:
    from shared.settings import BaseServiceSettings

    addr, token = bao_server
    key = f"ext-{uuid.uuid4().hex[:8]}"
    settings = BaseServiceSettings(
        mode="distributed", vault_addr=addr, vault_token=token, transit_key=key
    )
    client = VaultClient.from_settings(settings)
    assert client.healthy()
    dk = client.generate_data_key(key)  # from_settings created the transit key
    assert client.decrypt_data_key(key, dk.wrapped) == dk.plaintext
