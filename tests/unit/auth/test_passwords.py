"""argon2id parameters and the password policy."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from services.auth.passwords import Passwords, check_policy
from shared.errors import InvalidInput
from tests.unit.auth.conftest import make_settings


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("Sh0rt!", "at least 10 characters"),
        ("alllowercaseletters", "two kinds of characters"),
        ("12345678901234", "two kinds of characters"),
        ("sam@example.com", "must not be your email"),
        ("SAM@example.com", "must not be your email"),
        ("Password123", "too common"),
        ("Qwertyuiop", "too common"),
        ("x" * 1025 + "A", "at most 1024"),
    ],
)
def test_policy_refuses_with_a_clear_message(password: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_policy(password, email="sam@example.com")
    assert info.value.message.startswith("password: ")
    assert fragment in info.value.message


@pytest.mark.parametrize("password", ["correct-Horse-battery", "tr0ub4dor&3xyz", "ÄÖÜ-sehr-lang"])
def test_policy_accepts_reasonable_passwords(password: str) -> None:
    check_policy(password, email="sam@example.com")


def test_register_reports_the_policy_as_422(client: TestClient) -> None:
    body = {"email": "p@example.com", "password": "Password123"}
    r = client.post("/api/auth/register", json=body)
    assert r.status_code == 422
    assert r.json()["error"] == {
        "code": "invalid",
        "message": "password: is too common (it, or it with digits and symbols added, is on "
        "breached-password lists); choose a passphrase of several unrelated words",
    }


def test_hashes_are_argon2id_at_the_owasp_floor() -> None:
    passwords = Passwords(memory_kib=19456, time_cost=2, parallelism=1)
    stored = passwords.hash("correct-Horse-battery")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.verify(stored, "correct-Horse-battery")
    assert not passwords.verify(stored, "correct-horse-battery")
    assert not passwords.verify(None, "anything")
    assert not passwords.verify("not-a-hash", "anything")
    assert not passwords.needs_rehash(stored)


def test_weaker_argon2_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="OWASP floor"):
        make_settings(tmp_path, argon2_memory_kib=4096)
    with pytest.raises(ValidationError, match="OWASP floor"):
        make_settings(tmp_path, argon2_time_cost=1)


def test_stored_hash_is_argon2id(client: TestClient) -> None:
    from sqlmodel import select

    from services.auth.models import User
    from tests.unit.auth.conftest import register

    register(client, "hash@example.com")
    with client.app.state.auth.db.session() as session:  # type: ignore[attr-defined]
        user = session.exec(select(User)).one()
    assert user.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
