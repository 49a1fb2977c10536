"""Login rate limiting per client address and per email, state in the database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.auth.ratelimit import LoginLimiter
from shared.db import Database
from shared.errors import RateLimited
from tests.unit.auth.conftest import PASSWORD, register


def _attempt(client: TestClient, email: str, ip: str, password: str = "Wrong-password-1") -> int:
    r = client.post(
        "/api/auth/login",
        json={"email": email, "password": password},
        headers={"X-Forwarded-For": ip},
    )
    return r.status_code


def test_per_email_limit_answers_429_with_retry_after(client: TestClient) -> None:
    register(client, "target@example.com")
    codes = [_attempt(client, "target@example.com", f"10.0.0.{i}") for i in range(5)]
    assert codes == [401] * 5
    r = client.post(
        "/api/auth/login",
        json={"email": "target@example.com", "password": PASSWORD},
        headers={"X-Forwarded-For": "10.0.0.99"},
    )
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 60


def test_per_address_limit_spans_emails(client: TestClient) -> None:
    codes = [_attempt(client, f"u{i}@example.com", "10.1.1.1") for i in range(11)]
    assert codes == [401] * 10 + [429]
    assert _attempt(client, "u0@example.com", "10.1.1.2") == 401  # another address is fine


def test_successful_logins_do_not_count(client: TestClient) -> None:
    register(client, "often@example.com")
    for _ in range(7):
        assert _attempt(client, "often@example.com", "10.2.2.2", PASSWORD) == 200


def test_forwarded_for_uses_the_entry_the_gateway_appended(client: TestClient) -> None:
    # A client that sends its own X-Forwarded-For cannot pick its bucket: the gateway's
    # entry (the last) is the one counted.
    for i in range(10):
        assert _attempt(client, f"v{i}@example.com", f"1.2.3.{i}, 10.3.3.3") == 401
    assert _attempt(client, "w@example.com", "9.9.9.9, 10.3.3.3") == 429


def test_limits_can_be_switched_off(make_client: Callable[..., TestClient]) -> None:
    client = make_client(login_limit_per_address=0, login_limit_per_email=0)
    assert {_attempt(client, "x@example.com", "10.4.4.4") for _ in range(12)} == {401}


def test_per_email_delay_grows_and_never_locks_out(tmp_path: Path) -> None:
    from services.auth.models import SQLModel

    db = Database(f"sqlite:///{tmp_path / 'rl.db'}")
    SQLModel.metadata.create_all(db.engine)
    limiter = LoginLimiter(
        db=db, per_address=100, per_email=2, window=60, delay_base=2, delay_max=30
    )
    t0 = 1_000_000.0
    limiter.acquire(address="a", email="e", now=t0)  # two free failures
    limiter.acquire(address="a", email="e", now=t0 + 1)
    with pytest.raises(RateLimited) as info:
        limiter.acquire(address="a", email="e", now=t0 + 2)
    assert info.value.retry_after == 1  # 2 s after the last failure
    limiter.acquire(address="a", email="e", now=t0 + 3)  # waited: let through
    with pytest.raises(RateLimited) as info:
        limiter.acquire(address="a", email="e", now=t0 + 4)
    assert info.value.retry_after == 3  # the delay doubled: 4 s after t0+3
    t = t0 + 7
    for _ in range(6):  # keeps doubling up to the cap, never a lockout
        limiter.acquire(address="a", email="e", now=t)
        t += 31
    with pytest.raises(RateLimited) as info:
        limiter.acquire(address="a", email="e", now=t - 31 + 1)
    assert info.value.retry_after == 29
    # A known device skips the per-email delay even now.
    limiter.acquire(address="a", email="e", now=t - 31 + 1, known_device=True)
