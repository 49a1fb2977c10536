"""The embedded vault at run time: one scoped token per service, the root token revoked.

A real OpenBao (LocalOpenBao under a temp data dir, as ``aidp up`` runs it): each service's
token does that service's job and is refused (403) everything else; init.json's root token
answers 403; restarts reuse and renew the tokens; lost, revoked or outdated tokens are
re-issued with the unseal key (recovery token, else a brief restart); files stay private.
"""

from __future__ import annotations

import json
import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.secrets.__main__ import main as secrets_cli
from shared.secrets.local import LocalOpenBao, LocalVault
from shared.secrets.policies import PolicyParams
from shared.secrets.vault import VaultClient
from shared.store import ArtifactStore
from tests.integration.secrets.capabilities import (
    ADMIN_PATHS,
    KEY,
    SERVICES,
    check_refused,
    check_store_refused,
    do_job,
    raw_status,
    seed,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PERIOD_S = 720 * 3600


@pytest.fixture
def user() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def vault(local_bao: LocalOpenBao, user: str) -> LocalVault:
    """The running embedded vault, with a user's secret and the IDC credentials seeded."""
    running = local_bao.ensure_running()
    with local_bao.root_token() as root:  # an operator stores the platform's IDC credentials
        seed(VaultClient(running.addr, token=root), user)
    return running


def _lookup(addr: str, token: str) -> dict[str, object]:
    resp = httpx.get(
        f"{addr}/v1/auth/token/lookup-self", headers={"X-Vault-Token": token}, timeout=10
    )
    assert resp.status_code == 200, resp.text
    data: dict[str, object] = resp.json()["data"]
    return data


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_does_its_job_and_nothing_else(
    service: str, vault: LocalVault, user: str, tmp_path: Path
) -> None:
    client = VaultClient(vault.addr, token=vault.token_for(service))
    store_dir = tmp_path / "store"
    do_job(service, client, user, store_dir)
    check_refused(service, client, user)
    for method, path in ADMIN_PATHS:
        assert raw_status(vault.addr, vault.token_for(service), method, path) == 403, path
    if service not in ("fetcher", "trainer"):
        fetcher = VaultClient(vault.addr, token=vault.token_for("fetcher"))
        ArtifactStore(store_dir, fetcher, KEY).put_stream(iter([b"model"]))
        check_store_refused(client, store_dir)


def test_other_services_paths_answer_403(vault: LocalVault, user: str) -> None:
    """The HTTP answers themselves, for a few paths that belong to another service."""
    token = vault.token_for
    users = f"secret/data/aidp/users/{user}/HF_TOKEN"
    cases = [
        ("trainer", "POST", users, {"data": {"value": "x"}}),  # reads, never writes
        ("gateway", "GET", users, None),  # stores values, never reads one back
        ("auth", "GET", users, None),
        ("auth", "POST", f"transit/datakey/plaintext/{KEY}", {}),
        ("auth", "POST", f"transit/decrypt/{KEY}", {"ciphertext": "vault:v1:AAAA"}),
        ("gateway", "POST", f"transit/datakey/plaintext/{KEY}", {}),
        ("provisioner", "POST", f"transit/decrypt/{KEY}", {"ciphertext": "vault:v1:AAAA"}),
        ("provisioner", "GET", "secret/data/aidp/platform/auth-signing-keys", None),
        ("fetcher", "GET", "secret/data/aidp/platform/auth-signing-keys", None),
        ("trainer", "GET", "secret/data/aidp/platform/idc", None),
        ("fetcher", "POST", f"transit/keys/{KEY}/rotate", {}),
        ("trainer", "POST", f"transit/keys/{KEY}/config", {"deletion_allowed": True}),
    ]
    for service, method, path, body in cases:
        assert raw_status(vault.addr, token(service), method, path, body) == 403, (service, path)
    # ...and the same paths are open to the service whose job they are
    assert raw_status(vault.addr, token("provisioner"), "GET", users) == 200
    assert raw_status(vault.addr, token("trainer"), "GET", users) == 200


def test_root_token_in_init_json_is_revoked(local_bao: LocalOpenBao, vault: LocalVault) -> None:
    record = json.loads(local_bao.init_file.read_text())
    assert record["root_token_revoked"] is True
    root = record["root_token"]
    assert raw_status(vault.addr, root, "GET", "auth/token/lookup-self") == 403
    assert raw_status(vault.addr, root, "GET", "sys/mounts") == 403
    assert raw_status(vault.addr, root, "GET", "secret/data/aidp/platform/idc") == 403
    # the recovery token kept beside the unseal key can do nothing but generate-root-token
    recovery = record["recovery_token"]
    assert raw_status(vault.addr, recovery, "GET", "secret/data/aidp/platform/idc") == 403
    assert raw_status(vault.addr, recovery, "GET", "sys/mounts") == 403
    assert raw_status(vault.addr, recovery, "GET", "sys/generate-root-token/attempt") == 200
    # tokens.json holds the services' scoped tokens only
    stored = json.loads(local_bao.tokens_file.read_text())
    assert set(stored["services"]) == set(SERVICES)
    assert root not in local_bao.tokens_file.read_text()


def test_tokens_are_scoped_renewable_periodic_orphans(vault: LocalVault) -> None:
    for service in SERVICES:
        info = _lookup(vault.addr, vault.token_for(service))
        assert info["policies"] == ["aidp-" + service, "default"]
        assert info["period"] == PERIOD_S and info["renewable"] is True
        assert info["orphan"] is True  # revoking the root token that made it left it alone
        assert info["role"] == "aidp-" + service
    info = _lookup(vault.addr, vault.recovery_token)
    assert info["policies"] == ["aidp-recovery", "default"]


def test_restart_reuses_and_renews_the_tokens(local_bao: LocalOpenBao, user: str) -> None:
    before = local_bao.ensure_running()
    time.sleep(2)
    ttl_before = int(str(_lookup(before.addr, before.token_for("trainer"))["ttl"]))
    assert ttl_before <= PERIOD_S - 2
    local_bao.stop()
    after = LocalOpenBao(local_bao.data_dir).ensure_running()
    assert after == before  # reused, not re-issued
    assert int(str(_lookup(after.addr, after.token_for("trainer"))["ttl"])) > ttl_before
    gateway = VaultClient(after.addr, token=after.token_for("gateway"))
    gateway.put_user_secret(user, "AFTER_RESTART", "v")
    provisioner = VaultClient(after.addr, token=after.token_for("provisioner"))
    secret = provisioner.get_user_secret(user, "AFTER_RESTART")
    assert secret is not None and secret.reveal() == "v"


def test_lost_tokens_are_reissued_with_the_recovery_token(
    local_bao: LocalOpenBao, vault: LocalVault, user: str, tmp_path: Path
) -> None:
    pid = (local_bao.data_dir / "bao.pid").read_text()
    local_bao.tokens_file.unlink()
    fresh = local_bao.ensure_running()
    assert (local_bao.data_dir / "bao.pid").read_text() == pid  # no restart was needed
    assert set(fresh.tokens.values()).isdisjoint(vault.tokens.values())
    for old in [*vault.tokens.values(), vault.recovery_token]:  # the lost ones are revoked
        assert raw_status(vault.addr, old, "GET", "auth/token/lookup-self") == 403
    assert stat.S_IMODE(local_bao.tokens_file.stat().st_mode) == 0o600
    assert json.loads(local_bao.init_file.read_text())["root_token_revoked"] is True
    for service in SERVICES:
        client = VaultClient(fresh.addr, token=fresh.token_for(service))
        do_job(service, client, user, tmp_path / "store")
    assert local_bao.ensure_running() == fresh


def test_revoked_tokens_and_recovery_token_recover_through_a_brief_restart(
    local_bao: LocalOpenBao, vault: LocalVault, user: str
) -> None:
    """Everything expired (e.g. the vault not run for longer than the period): the unseal
    key alone still gets the platform going again."""
    with local_bao.root_token() as root:
        for token in [*vault.tokens.values(), vault.recovery_token]:
            httpx.post(
                f"{vault.addr}/v1/auth/token/revoke",
                headers={"X-Vault-Token": root},
                json={"token": token},
                timeout=10,
            ).raise_for_status()
    fresh = local_bao.ensure_running()
    assert set(fresh.tokens.values()).isdisjoint(vault.tokens.values())
    provisioner = VaultClient(fresh.addr, token=fresh.token_for("provisioner"))
    secret = provisioner.get_user_secret(user, "HF_TOKEN")
    assert secret is not None and secret.reveal() == "hf_seeded"
    # the unauthenticated generate-root endpoints were enabled for the recovery only
    assert (
        "disable_unauthed_generate_root_endpoints = true"
        in (local_bao.data_dir / "config.hcl").read_text()
    )
    resp = httpx.put(f"{fresh.addr}/v1/sys/generate-root/attempt", json={}, timeout=10)
    assert resp.status_code == 405


def test_a_live_root_token_in_init_json_is_revoked_at_start(
    local_bao: LocalOpenBao, vault: LocalVault
) -> None:
    """A data dir of an aidp that kept its root token (or a crash before the revocation)."""
    record = json.loads(local_bao.init_file.read_text())
    # tokens already issued: the live root is only revoked
    root = local_bao.generate_root()
    local_bao.init_file.write_text(json.dumps({**record, "root_token": root} | _unrevoked()))
    assert local_bao.ensure_running() == vault
    assert raw_status(vault.addr, root, "GET", "auth/token/lookup-self") == 403
    # no tokens yet (the old layout): issued with that root, which is then revoked
    root = local_bao.generate_root()
    old_layout = {"unseal_key": record["unseal_key"], "root_token": root}
    local_bao.init_file.write_text(json.dumps(old_layout))
    local_bao.tokens_file.unlink()
    fresh = local_bao.ensure_running()
    assert raw_status(fresh.addr, root, "GET", "auth/token/lookup-self") == 403
    assert stat.S_IMODE(local_bao.init_file.stat().st_mode) == 0o600
    record = json.loads(local_bao.init_file.read_text())
    assert record["root_token_revoked"] is True and record["recovery_token"]
    auth = VaultClient(fresh.addr, token=fresh.token_for("auth"))
    auth.put_platform_secret("auth-signing-keys", {"active": "k"})


def _unrevoked() -> dict[str, bool]:
    return {"root_token_revoked": False}


def test_changed_policy_names_reissue_the_tokens(local_bao: LocalOpenBao, user: str) -> None:
    before = local_bao.ensure_running()
    assert local_bao.ensure_running(None) == before  # None keeps what they were issued for
    other = PolicyParams(transit_key="aidp-artifacts-2")
    try:
        moved = local_bao.ensure_running(other)
        assert moved != before
        trainer = VaultClient(moved.addr, token=moved.token_for("trainer"))
        dk = trainer.generate_data_key("aidp-artifacts-2")  # the key was created, and granted
        assert trainer.decrypt_data_key("aidp-artifacts-2", dk.wrapped) == dk.plaintext
        assert (
            raw_status(
                moved.addr, moved.token_for("trainer"), "POST", f"transit/datakey/plaintext/{KEY}"
            )
            == 403
        )
        assert local_bao.ensure_running() == moved  # kept until asked otherwise
    finally:
        back = local_bao.ensure_running(PolicyParams())
    assert VaultClient(back.addr, token=back.token_for("fetcher")).generate_data_key(KEY)


def test_operator_cli_makes_a_root_token_only_when_asked(
    local_bao: LocalOpenBao, vault: LocalVault, capsys: pytest.CaptureFixture[str]
) -> None:
    assert secrets_cli(["root-token", "--data-dir", str(local_bao.data_dir.parent)]) == 0
    out = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines() if "=" in line)
    assert out["BAO_ADDR"] == vault.addr
    root = out["BAO_TOKEN"]
    assert "root" in _lookup(vault.addr, root)["policies"]  # type: ignore[operator]
    httpx.post(
        f"{vault.addr}/v1/auth/token/revoke-self", headers={"X-Vault-Token": root}, timeout=10
    )
    assert raw_status(vault.addr, root, "GET", "auth/token/lookup-self") == 403
    assert local_bao.ensure_running() == vault  # the services' tokens are untouched

    assert secrets_cli(["reissue-tokens", "--data-dir", str(local_bao.data_dir.parent)]) == 0
    fresh = local_bao.ensure_running()
    assert set(fresh.tokens.values()).isdisjoint(vault.tokens.values())
    assert raw_status(vault.addr, vault.token_for("auth"), "GET", "auth/token/lookup-self") == 403


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_files_are_private_even_with_a_permissive_umask(
    tmp_path: Path, permissive_umask: None
) -> None:
    bao = LocalOpenBao(tmp_path / "openbao")
    try:
        vault = bao.ensure_running()
        assert VaultClient(vault.addr, token=vault.token_for("gateway")).healthy()
        assert stat.S_IMODE(bao.data_dir.stat().st_mode) == 0o700
        for path in bao.data_dir.iterdir():
            mode = stat.S_IMODE(path.stat().st_mode)
            if path.is_dir():
                assert mode == 0o700, path
            else:
                assert mode == 0o600, path
        for path in (bao.data_dir / "data").rglob("*"):  # OpenBao's own files
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    finally:
        bao.stop()
