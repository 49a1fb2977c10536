"""What each service does with Vault (its job) and what it must be refused (another's).

Used against the embedded vault's scoped tokens and against the distributed AppRoles: the
operations are the ones the services perform (``services/*``: auth's signing keyring,
the gateway's ``/api/secrets``, the provisioner's SSH / IDC credentials, the fetcher's and
the trainer's owner secrets and artifact encryption).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from shared.crypto import KeyUnwrapError
from shared.secrets.vault import VaultClient, VaultDenied
from shared.store import ArtifactStore

SERVICES = ("auth", "gateway", "provisioner", "fetcher", "trainer")
KEY = "aidp-artifacts"
SIGNING = "auth-signing-keys"
NAMING = "store-naming-key"


def seed(admin: VaultClient, user: str) -> None:
    """What the others put there: a user's secret, the platform's IDC credentials."""
    admin.put_user_secret(user, "HF_TOKEN", "hf_seeded")
    admin.put_platform_secret(
        "idc", {"client_id": "cid", "client_secret": "csecret", "cloudaccount": "acct"}
    )


def do_job(service: str, client: VaultClient, user: str, store_dir: Path) -> None:
    """The operations ``service`` performs: every one succeeds with its credentials."""
    if service == "auth":  # services/auth/signing.py: the keyring is one platform secret
        client.put_platform_secret(SIGNING, {"active": "k1", "keys": "[]"})
        assert client.get_platform_secret(SIGNING) == {"active": "k1", "keys": "[]"}
        client.put_platform_secret(SIGNING, {"active": "k2", "keys": "[]"})  # rotation
    elif service == "gateway":  # services/gateway/routes/secrets.py: put, list, delete
        client.put_user_secret(user, "NEW_SECRET", "v1")
        client.put_user_secret(user, "NEW_SECRET", "v2")
        assert "NEW_SECRET" in client.list_user_secrets(user)
        assert client.delete_user_secret(user, "NEW_SECRET") is True
        assert client.delete_user_secret(user, "NEVER_SET") is False
    elif service == "provisioner":  # drivers/ssh.py, drivers/idc.py
        secret = client.get_user_secret(user, "HF_TOKEN")
        assert secret is not None and secret.reveal() == "hf_seeded"
        assert client.get_user_secret(user, "ITAC_CLIENT_ID") is None
        assert (client.get_platform_secret("idc") or {}).get("client_id") == "cid"
    elif service in ("fetcher", "trainer"):  # owner secrets; the encrypted artifact store
        secret = client.get_user_secret(user, "HF_TOKEN")
        assert secret is not None and secret.reveal() == "hf_seeded"
        client.ensure_key(KEY)  # exists: reading it is enough
        dk = client.generate_data_key(KEY)
        assert client.decrypt_data_key(KEY, dk.wrapped) == dk.plaintext
        store = ArtifactStore(store_dir, client, KEY)
        digest, _ = store.put_stream(iter([b"weights " * 1000]))
        assert b"".join(store.read(digest)) == b"weights " * 1000
    else:  # pragma: no cover
        raise AssertionError(service)


def _refusals(client: VaultClient, user: str) -> dict[str, Callable[[], object]]:
    other = f"other-{uuid.uuid4().hex[:6]}"
    return {
        "read a user secret": lambda: client.get_user_secret(user, "HF_TOKEN"),
        "write a user secret": lambda: client.put_user_secret(user, "HF_TOKEN", "x"),
        "list user secrets": lambda: client.list_user_secrets(user),
        "delete a user secret": lambda: client.delete_user_secret(user, "HF_TOKEN"),
        "read the signing keyring": lambda: client.get_platform_secret(SIGNING),
        "write the signing keyring": lambda: client.put_platform_secret(SIGNING, {"a": "b"}),
        "read the OIDC client secret": lambda: client.get_platform_secret("oidc"),
        "read the IDC credentials": lambda: client.get_platform_secret("idc"),
        "write the IDC credentials": lambda: client.put_platform_secret("idc", {"a": "b"}),
        "read another platform secret": lambda: client.get_platform_secret("anything"),
        "read the store naming key": lambda: client.get_platform_secret(NAMING),
        # created once (check-and-set 0) by the first fetcher or trainer, never replaced
        "replace the store naming key": lambda: client.put_platform_secret(NAMING, {"key": "x"}),
        "make a data key": lambda: client.generate_data_key(KEY),
        "unwrap a data key": lambda: client.decrypt_data_key(KEY, "vault:v1:AAAA"),
        "rotate the artifact key": lambda: client.rotate_key(KEY),
        "rewrap a data key": lambda: client.rewrap_data_key(KEY, "vault:v1:AAAA"),
        "create a transit key": lambda: client.ensure_key(other),
        "enable mounts": client.ensure_mounts,
    }


#: Which of the refusals above each service IS allowed (its job), all others are refused.
ALLOWED: dict[str, set[str]] = {
    "auth": {
        "read the signing keyring",
        "write the signing keyring",
        "read the OIDC client secret",
    },
    "gateway": {"write a user secret", "list user secrets", "delete a user secret"},
    "provisioner": {"read a user secret", "read the IDC credentials"},
    "fetcher": {
        "read a user secret",
        "make a data key",
        "unwrap a data key",
        "read the store naming key",
    },
    "trainer": {
        "read a user secret",
        "make a data key",
        "unwrap a data key",
        "read the store naming key",
    },
}


def check_refused(service: str, client: VaultClient, user: str) -> None:
    """Everything outside ``service``'s job answers 403 (VaultDenied)."""
    for what, call in _refusals(client, user).items():
        if what in ALLOWED[service]:
            continue
        with pytest.raises(VaultDenied):
            call()
            pytest.fail(f"{service} may {what}")


def check_store_refused(client: VaultClient, store_dir: Path) -> None:
    """A service without the artifact key cannot decrypt the store's blobs."""
    store = ArtifactStore(store_dir, client, KEY)
    digests = list(store.iter_digests())
    assert digests
    with pytest.raises(KeyUnwrapError):
        b"".join(store.read(digests[0]))
    assert store.has(digests[0])  # a refusal does not condemn the blob


def raw_status(addr: str, token: str, method: str, path: str, body: object = None) -> int:
    """The HTTP status OpenBao answers ``token`` for one request."""
    resp = httpx.request(
        method, f"{addr}/v1/{path}", headers={"X-Vault-Token": token}, json=body, timeout=10
    )
    return resp.status_code


ADMIN_PATHS = [
    ("GET", "sys/mounts"),
    ("PUT", "sys/policies/acl/evil"),
    ("POST", "auth/token/create"),
    ("LIST", "auth/token/accessors"),
    ("POST", "sys/generate-root-token/attempt"),
    ("PUT", "sys/seal"),
]
