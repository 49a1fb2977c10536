"""An unknown email costs the same time as a wrong password (no user enumeration)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.unit.auth.conftest import register


def _median_login_seconds(client: TestClient, email: str, tries: int) -> float:
    times = []
    for _ in range(tries):
        start = time.perf_counter()
        r = client.post("/api/auth/login", json={"email": email, "password": "Wrong-password-1"})
        times.append(time.perf_counter() - start)
        assert r.status_code == 401
    return statistics.median(times)


def test_unknown_user_costs_the_same_as_a_wrong_password(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(login_limit_per_address=0, login_limit_per_email=0)
    register(client, "known@example.com")
    _median_login_seconds(client, "known@example.com", 1)  # warm up
    known, unknown = [], []
    for _ in range(3):  # interleave, so load from other processes hits both alike
        known.append(_median_login_seconds(client, "known@example.com", 3))
        unknown.append(_median_login_seconds(client, "ghost@example.com", 3))
    ratio = statistics.median(unknown) / statistics.median(known)
    print(
        f"median wrong-password {statistics.median(known) * 1000:.1f} ms, "
        f"unknown-user {statistics.median(unknown) * 1000:.1f} ms, ratio {ratio:.2f}"
    )
    assert statistics.median(known) > 0.005  # argon2 really ran
    assert 0.5 < ratio < 2.0
