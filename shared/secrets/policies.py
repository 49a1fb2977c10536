"""Least-privilege Vault/OpenBao policies: one per aidp service, nothing shared.

Each service's token (embedded mode) or AppRole (distributed mode) carries only its own
policy, which grants exactly what that service does with Vault (grep ``runtime.secrets`` /
``runtime.keys`` in ``services/``). With the defaults (KV v2 at ``secret/``, prefix
``aidp``, transit at ``transit/``, artifact key ``aidp-artifacts``):

===========  ===========================================================  ================
service      KV v2                                                        transit
===========  ===========================================================  ================
auth         ``platform/auth-signing-keys``: create, read, update          --
             (the JWT signing keyring; created at first start, rotated);
             ``platform/oidc``: read (the single sign-on client secret)
gateway      ``users/*``: write values; list names, read metadata, delete  --
             (``/api/secrets``; it never reads a value back);
             ``platform/webhook-key``: create, read (seals webhook secrets)
provisioner  ``users/*``: read (SSH identities, IDC credentials);           --
             ``platform/idc``: read (the platform's IDC credentials)
fetcher      ``users/*``: read (HF / Kaggle tokens of the run owner);       artifact key:
             ``platform/store-naming-key``: create, read (blob names)       read, datakey,
                                                                            decrypt
trainer      ``users/*``: read (the run owner's secrets named in the spec); artifact key:
             ``platform/store-naming-key``: create, read (blob names)       read, datakey,
                                                                            decrypt
===========  ===========================================================  ================

Every service may also sign service tokens with its own Ed25519 transit key
(``transit/sign/aidp-svc-<service>``) and read every service's public key
(``transit/keys/aidp-svc-*``): the credential of the internal APIs
(:mod:`shared.service_auth`).

Nobody but an operator creates, rotates or configures keys, mounts, policies or tokens.
Every token also has OpenBao's ``default`` policy (look up, renew and revoke itself).

The embedded vault has one more policy, ``aidp-recovery``: it can only run the
``sys/generate-root-token`` flow, which also needs the unseal key; bootstrap uses it to
re-issue the service tokens (see :mod:`shared.secrets.local`).

``python -m shared.secrets policies --out DIR`` writes them as ``.hcl`` files
(``deploy/vault/policies/`` holds the defaults).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from string import Template

__all__ = [
    "RECOVERY_POLICY",
    "SERVICE_NAMES",
    "PolicyParams",
    "digest",
    "policy_name",
    "render",
    "render_all",
]

#: The services that talk to Vault, each with a policy of its own.
SERVICE_NAMES = ("auth", "gateway", "provisioner", "fetcher", "trainer")

#: Name of the embedded vault's recovery policy (generate-root-token only).
RECOVERY_POLICY = "aidp-recovery"

_USERS_READ = """\
path "${kv}/data/${prefix}/users/*" {
  capabilities = ["read"]
}
"""

_ARTIFACT_KEY = """\
path "${transit}/keys/${transit_key}" {
  capabilities = ["read"]
}
path "${transit}/datakey/plaintext/${transit_key}" {
  capabilities = ["update"]
}
path "${transit}/decrypt/${transit_key}" {
  capabilities = ["update"]
}
"""

#: Every service: sign service tokens as itself only; read every service's public key
#: (shared.service_auth).
_SERVICE_SIGNING = """\
path "${transit}/sign/${own_signing_key}" {
  capabilities = ["update"]
}
path "${transit}/keys/aidp-svc-*" {
  capabilities = ["read"]
}
"""

_NAMING_KEY = """\
path "${kv}/data/${prefix}/platform/${naming_secret}" {
  capabilities = ["create", "read"]
}
"""

_TEMPLATES: dict[str, str] = {
    "auth": """\
# aidp auth: the JWT signing keyring (Ed25519), created at first start, rotated by admins;
# the single sign-on (OIDC) client secret, written by an operator.
path "${kv}/data/${prefix}/platform/${signing_secret}" {
  capabilities = ["create", "read", "update"]
}
path "${kv}/data/${prefix}/platform/${oidc_secret}" {
  capabilities = ["read"]
}
""",
    "gateway": """\
# aidp gateway: /api/secrets stores a user's secret, lists its names and deletes it.
# It never reads a value back. It seals webhook signing secrets with the platform's
# webhook key (created once by the first gateway, never replaced).
path "${kv}/data/${prefix}/users/*" {
  capabilities = ["create", "update"]
}
path "${kv}/metadata/${prefix}/users/*" {
  capabilities = ["list", "read", "delete"]
}
path "${kv}/data/${prefix}/platform/webhook-key" {
  capabilities = ["create", "read"]
}
""",
    "provisioner": """\
# aidp provisioner: reads the run owner's SSH identities and Intel Tiber AI Cloud
# credentials, and the platform's own IDC credentials.
"""
    + _USERS_READ
    + """\
path "${kv}/data/${prefix}/platform/idc" {
  capabilities = ["read"]
}
""",
    "fetcher": """\
# aidp fetcher: reads the run owner's HF / Kaggle tokens; encrypts what it caches (one data
# key per blob, wrapped by the artifact key) and decrypts cached blobs to verify them; names
# blobs with the store's naming key (created once by the first service, never replaced).
"""
    + _USERS_READ
    + _ARTIFACT_KEY
    + _NAMING_KEY,
    "trainer": """\
# aidp trainer: reads the run owner's secrets named in the spec; decrypts staged artifacts
# and encrypts checkpoints and trained models with the artifact key; names blobs with the
# store's naming key.
"""
    + _USERS_READ
    + _ARTIFACT_KEY
    + _NAMING_KEY,
    RECOVERY_POLICY: """\
# aidp recovery (embedded mode): can only run the root token generation flow, which also
# needs the unseal key. Bootstrap uses it to re-issue the service tokens; the root token it
# makes is revoked as soon as that is done.
path "sys/generate-root-token/*" {
  capabilities = ["create", "read", "update", "delete"]
}
""",
}


@dataclass(frozen=True)
class PolicyParams:
    """Where the services' secrets and keys live (the names the policies grant)."""

    kv_mount: str = "secret"
    transit_mount: str = "transit"
    prefix: str = "aidp"
    transit_key: str = "aidp-artifacts"
    signing_secret: str = "auth-signing-keys"
    naming_secret: str = "store-naming-key"
    oidc_secret: str = "oidc"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def policy_name(service: str) -> str:
    """The Vault policy (and token role / AppRole) name of ``service``: ``aidp-<service>``."""
    if service not in SERVICE_NAMES:
        raise ValueError(f"no Vault policy for service {service!r}")
    return f"aidp-{service}"


def render(name: str, params: PolicyParams | None = None) -> str:
    """The HCL of one policy: a service name, or :data:`RECOVERY_POLICY`."""
    p = params or PolicyParams()
    text = _TEMPLATES[name] + (_SERVICE_SIGNING if name in SERVICE_NAMES else "")
    return Template(text).substitute(
        own_signing_key=f"aidp-svc-{name}",
        kv=p.kv_mount,
        transit=p.transit_mount,
        prefix=p.prefix.strip("/"),
        transit_key=p.transit_key,
        signing_secret=p.signing_secret,
        naming_secret=p.naming_secret,
        oidc_secret=p.oidc_secret,
    )


def render_all(params: PolicyParams | None = None, *, recovery: bool = False) -> dict[str, str]:
    """``{policy name: HCL}`` for every service (and the recovery policy if asked)."""
    out = {policy_name(s): render(s, params) for s in SERVICE_NAMES}
    if recovery:
        out[RECOVERY_POLICY] = render(RECOVERY_POLICY, params)
    return out


def digest(params: PolicyParams | None = None) -> str:
    """A fingerprint of every rendered policy: it changes when a policy or a name does."""
    text = json.dumps(render_all(params, recovery=True), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
