"""The real :class:`SecretStore` and :class:`KeyService`: OpenBao/Vault through hvac.

Layout (``prefix`` defaults to ``aidp``):

- KV v2 at ``mount`` (default ``secret/``): user secrets at ``<prefix>/users/<user_id>/<name>``
  holding ``{"value": ...}``; platform secrets at ``<prefix>/platform/<name>``.
- Transit at ``transit_mount`` (default ``transit/``): ``aes256-gcm96`` key-encryption keys;
  data keys come from ``datakey/plaintext/<key>`` (256 bits) and are stored only wrapped.

Login is by token or AppRole (re-login once when a call is denied, e.g. the token expired).
An unreachable, sealed or overloaded server raises :class:`~shared.errors.TransientError`; a
refusal raises :class:`VaultError`. Values never appear in logs or error messages.
"""

from __future__ import annotations

import base64
import functools
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import hvac
import hvac.exceptions as hvac_exc
import requests
import stamina

from shared.errors import AidpError, DependencyDown, InvalidInput
from shared.secrets.base import DataKey, KeyService, SecretStore, SecretValue

if TYPE_CHECKING:
    from shared.settings import BaseServiceSettings

__all__ = ["VaultClient", "VaultDenied", "VaultError"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_NAME = re.compile(r"^[A-Za-z0-9_.@+=-]{1,200}$")
#: Bounded retries of one call while Vault is sealed, overloaded or unreachable.
_OUTAGE_RETRY: dict[str, Any] = {
    "attempts": 4,
    "timeout": 3.0,
    "wait_initial": 0.2,
    "wait_max": 1.0,
    "wait_jitter": 0.2,
}

_TRANSIENT = (
    hvac_exc.VaultDown,
    hvac_exc.InternalServerError,
    hvac_exc.BadGateway,
    hvac_exc.RateLimitExceeded,
)
_DENIED = (hvac_exc.Forbidden, hvac_exc.Unauthorized)
_OUTAGE = (*_TRANSIENT, requests.ConnectionError, requests.Timeout)


class VaultError(AidpError):
    """Vault refused a request (permission, bad input); trying again will not help."""

    code = "vault_error"
    status = 502


class VaultDenied(VaultError):
    """Vault answered 403: the token is invalid or its policy does not allow the request."""


def _segment(value: str, what: str) -> str:
    if not _NAME.match(value) or value in {".", ".."}:
        raise InvalidInput(f"invalid {what} {value!r}: use letters, digits and _.@+=-")
    return value


def _platform_path(name: str) -> str:
    parts = name.split("/")
    for part in parts:
        _segment(part, "platform secret name")
    return "/".join(parts)


class VaultClient(SecretStore, KeyService):
    """Secrets (KV v2) and envelope-encryption keys (transit) on one OpenBao/Vault server."""

    def __init__(
        self,
        addr: str,
        *,
        token: str | None = None,
        role_id: str | None = None,
        secret_id: str | None = None,
        cacert: str | Path | None = None,
        mount: str = "secret",
        transit_mount: str = "transit",
        prefix: str = "aidp",
        approle_mount: str = "approle",
        timeout: float = 10.0,
    ) -> None:
        if token is None and not (role_id and secret_id):
            raise ValueError("VaultClient needs a token or an AppRole role_id and secret_id")
        self.addr = addr.rstrip("/")
        self.mount = mount
        self.transit_mount = transit_mount
        self.prefix = prefix.strip("/")
        self._role_id = role_id
        self._secret_id = secret_id
        self._approle_mount = approle_mount
        self._login_lock = threading.Lock()
        verify: bool | str = str(cacert) if cacert else True
        self._client = hvac.Client(url=self.addr, token=token, verify=verify, timeout=timeout)
        self._logged_in = token is not None

    @classmethod
    def from_settings(cls, settings: BaseServiceSettings) -> VaultClient:
        """External Vault at ``vault_addr`` (token or AppRole), else the local OpenBao.

        Embedded (no ``vault_addr``): the local OpenBao under ``<data_dir>/openbao`` with
        the scoped token of ``settings.service_name`` (never the root token)."""
        if settings.vault_addr:
            client = cls(
                settings.vault_addr,
                token=settings.vault_token.get_secret_value() if settings.vault_token else None,
                role_id=settings.vault_role_id,
                secret_id=(
                    settings.vault_secret_id.get_secret_value()
                    if settings.vault_secret_id
                    else None
                ),
                cacert=settings.vault_cacert,
            )
            try:
                client.ensure_mounts()
            except VaultError:
                log.info("vault: not allowed to manage mounts; assuming they are provisioned")
        else:
            from shared.secrets.local import LocalOpenBao

            local = LocalOpenBao(settings.data_dir / "openbao").ensure_running()
            client = cls(local.addr, token=local.token_for(settings.service_name))
        try:
            client.ensure_key(settings.transit_key)
        except VaultDenied:  # a service whose policy has no use for the artifact key
            log.info("vault: %s may not manage transit keys; skipped", settings.service_name)
        return client

    # -- plumbing ------------------------------------------------------------------------

    def _login(self) -> None:
        with self._login_lock:
            self._client.auth.approle.login(
                role_id=self._role_id, secret_id=self._secret_id, mount_point=self._approle_mount
            )
            self._logged_in = True
            log.info("vault: logged in with AppRole")

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one hvac call, mapping its failures onto aidp's error taxonomy. A sealed,
        overloaded or unreachable server is tried again with bounded backoff (about three
        seconds in all) before :class:`DependencyDown` is raised."""
        relogin = self._role_id is not None
        for attempt in (1, 2):
            try:
                if not self._logged_in:
                    self._login()
                for retry in stamina.retry_context(on=_OUTAGE, **_OUTAGE_RETRY):
                    with retry:
                        return fn()
            except _DENIED as exc:
                if relogin and attempt == 1:
                    self._logged_in = False
                    continue
                raise VaultDenied(f"vault denied {what}: check the token or policy") from exc
            except _TRANSIENT as exc:
                raise DependencyDown("vault", f"vault is unavailable ({what})") from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise DependencyDown("vault", f"vault is unreachable ({what})") from exc
            except hvac_exc.VaultError as exc:
                raise VaultError(f"vault refused {what}: {type(exc).__name__}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # -- health and setup ----------------------------------------------------------------

    def healthy(self) -> bool:
        """True when the server answers, is initialised and unsealed."""
        try:
            status = self._client.sys.read_health_status(
                method="GET", standby_ok=True, sealed_code=200, uninit_code=200
            )
        except (requests.RequestException, hvac_exc.VaultError):
            return False
        if not isinstance(status, dict):
            return False
        return bool(status.get("initialized")) and not status.get("sealed", True)

    def _mounts(self) -> set[str]:
        resp = self._call("list mounts", self._client.sys.list_mounted_secrets_engines)
        return {k for k in resp.get("data", resp) if k.endswith("/")}

    def ensure_mounts(self) -> None:
        """Enable KV v2 at ``mount`` and transit at ``transit_mount`` if absent."""
        wanted = ((self.mount, "kv", {"version": "2"}), (self.transit_mount, "transit", None))
        for path, backend, options in wanted:
            if f"{path}/" in self._mounts():
                continue
            try:
                self._call(
                    f"enable {backend} at {path}/",
                    functools.partial(
                        self._client.sys.enable_secrets_engine,
                        backend_type=backend,
                        path=path,
                        options=options,
                    ),
                )
            except VaultError:
                if f"{path}/" not in self._mounts():  # not a concurrent enable: a real refusal
                    raise
            log.info("vault: enabled %s at %s/", backend, path)

    # -- SecretStore ---------------------------------------------------------------------

    def _user_path(self, user_id: str, name: str | None = None) -> str:
        base = f"{self.prefix}/users/{_segment(user_id, 'user id')}"
        return base if name is None else f"{base}/{_segment(name, 'secret name')}"

    def _kv_read(self, path: str) -> dict[str, Any] | None:
        kv = self._client.secrets.kv.v2
        try:
            resp = self._call(
                "read secret",
                lambda: kv.read_secret_version(
                    path=path, mount_point=self.mount, raise_on_deleted_version=True
                ),
            )
        except VaultError as exc:
            if isinstance(exc.__cause__, hvac_exc.InvalidPath):
                return None
            raise
        data: dict[str, Any] = resp["data"]["data"]
        return data

    def _kv_write(self, path: str, data: dict[str, str]) -> None:
        kv = self._client.secrets.kv.v2
        self._call(
            "write secret",
            lambda: kv.create_or_update_secret(path=path, secret=data, mount_point=self.mount),
        )

    def put_user_secret(self, user_id: str, name: str, value: str) -> None:
        self._kv_write(self._user_path(user_id, name), {"value": value})

    def get_user_secret(self, user_id: str, name: str) -> SecretValue | None:
        data = self._kv_read(self._user_path(user_id, name))
        if data is None or "value" not in data:
            return None
        return SecretValue(str(data["value"]))

    def list_user_secrets(self, user_id: str) -> list[str]:
        kv = self._client.secrets.kv.v2
        path = self._user_path(user_id)
        try:
            resp = self._call(
                "list secrets", lambda: kv.list_secrets(path=path, mount_point=self.mount)
            )
        except VaultError as exc:
            if isinstance(exc.__cause__, hvac_exc.InvalidPath):
                return []
            raise
        return sorted(k for k in resp["data"]["keys"] if not k.endswith("/"))

    def delete_user_secret(self, user_id: str, name: str) -> bool:
        kv = self._client.secrets.kv.v2
        path = self._user_path(user_id, name)
        try:
            self._call(
                "read secret metadata",
                lambda: kv.read_secret_metadata(path=path, mount_point=self.mount),
            )
        except VaultError as exc:
            if isinstance(exc.__cause__, hvac_exc.InvalidPath):
                return False
            raise
        self._call(
            "delete secret",
            lambda: kv.delete_metadata_and_all_versions(path=path, mount_point=self.mount),
        )
        return True

    def put_platform_secret(self, name: str, data: dict[str, str]) -> None:
        self._kv_write(f"{self.prefix}/platform/{_platform_path(name)}", dict(data))

    def create_platform_secret(self, name: str, data: dict[str, str]) -> bool:
        """Check-and-set version 0: KV v2 refuses the write when the secret exists (a 400, or
        a 403 for a policy that grants ``create`` but not ``update``)."""
        kv = self._client.secrets.kv.v2
        path = f"{self.prefix}/platform/{_platform_path(name)}"
        try:
            self._call(
                "create secret",
                lambda: kv.create_or_update_secret(
                    path=path, secret=dict(data), cas=0, mount_point=self.mount
                ),
            )
        except VaultError:
            if self.get_platform_secret(name) is not None:  # someone else created it
                return False
            raise
        return True

    def get_platform_secret(self, name: str) -> dict[str, str] | None:
        data = self._kv_read(f"{self.prefix}/platform/{_platform_path(name)}")
        return None if data is None else {k: str(v) for k, v in data.items()}

    # -- KeyService ----------------------------------------------------------------------

    def ensure_key(self, key_name: str) -> None:
        transit = self._client.secrets.transit
        _segment(key_name, "key name")
        try:
            self._call(
                "read transit key",
                lambda: transit.read_key(name=key_name, mount_point=self.transit_mount),
            )
            return
        except VaultError as exc:
            if not isinstance(exc.__cause__, hvac_exc.InvalidPath):
                raise
        self._call(
            "create transit key",
            lambda: transit.create_key(
                name=key_name, key_type="aes256-gcm96", mount_point=self.transit_mount
            ),
        )
        log.info("vault: created transit key %s", key_name)

    def generate_data_key(self, key_name: str) -> DataKey:
        transit = self._client.secrets.transit
        resp = self._call(
            "generate data key",
            lambda: transit.generate_data_key(
                name=_segment(key_name, "key name"),
                key_type="plaintext",
                bits=256,
                mount_point=self.transit_mount,
            ),
        )
        data = resp["data"]
        return DataKey(plaintext=base64.b64decode(data["plaintext"]), wrapped=data["ciphertext"])

    def decrypt_data_key(self, key_name: str, wrapped: str) -> bytes:
        transit = self._client.secrets.transit
        resp = self._call(
            "decrypt data key",
            lambda: transit.decrypt_data(
                name=_segment(key_name, "key name"),
                ciphertext=wrapped,
                mount_point=self.transit_mount,
            ),
        )
        return base64.b64decode(resp["data"]["plaintext"])

    def rewrap_data_key(self, key_name: str, wrapped: str) -> str:
        transit = self._client.secrets.transit
        resp = self._call(
            "rewrap data key",
            lambda: transit.rewrap_data(
                name=_segment(key_name, "key name"),
                ciphertext=wrapped,
                mount_point=self.transit_mount,
            ),
        )
        rewrapped: str = resp["data"]["ciphertext"]
        return rewrapped

    def rotate_key(self, key_name: str) -> None:
        transit = self._client.secrets.transit
        self._call(
            "rotate transit key",
            lambda: transit.rotate_key(
                name=_segment(key_name, "key name"), mount_point=self.transit_mount
            ),
        )
        log.info("vault: rotated transit key %s", key_name)

    # -- service signing keys (shared.service_auth) --------------------------------------

    def ensure_signing_key(self, key_name: str) -> bool:
        """Create the Ed25519 transit key ``key_name`` if missing; False when it is missing
        and this token may not create it (an operator provisions it)."""
        transit = self._client.secrets.transit
        _segment(key_name, "key name")
        try:
            self._call(
                "read signing key",
                lambda: transit.read_key(name=key_name, mount_point=self.transit_mount),
            )
            return True
        except VaultDenied:
            return False
        except VaultError as exc:
            if not isinstance(exc.__cause__, hvac_exc.InvalidPath):
                raise
        try:
            self._call(
                "create signing key",
                lambda: transit.create_key(
                    name=key_name, key_type="ed25519", mount_point=self.transit_mount
                ),
            )
        except VaultDenied:
            return False
        log.info("vault: created signing key %s", key_name)
        return True

    def sign(self, key_name: str, data: bytes) -> str:
        """``vault:v<N>:<base64 signature>`` of ``data`` by the transit key ``key_name``."""
        transit = self._client.secrets.transit
        resp = self._call(
            "sign",
            lambda: transit.sign_data(
                name=_segment(key_name, "key name"),
                hash_input=base64.b64encode(data).decode(),
                mount_point=self.transit_mount,
            ),
        )
        signature: str = resp["data"]["signature"]
        return signature

    def public_keys(self, key_name: str) -> dict[int, str]:
        """``{version: base64 public key}`` of the asymmetric transit key ``key_name``
        ({} when there is no such key)."""
        transit = self._client.secrets.transit
        try:
            resp = self._call(
                "read public keys",
                lambda: transit.read_key(
                    name=_segment(key_name, "key name"), mount_point=self.transit_mount
                ),
            )
        except VaultError as exc:
            if isinstance(exc.__cause__, hvac_exc.InvalidPath):
                return {}
            raise
        keys = resp["data"].get("keys") or {}
        return {int(v): str(k["public_key"]) for v, k in keys.items() if k.get("public_key")}
