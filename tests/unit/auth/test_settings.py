"""Settings read from the environment."""

from __future__ import annotations

import pytest

from services.auth.settings import AuthSettings


def test_admin_emails_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIDP_ADMIN_EMAILS", " Root@Example.com,ops@example.com ,")
    monkeypatch.setenv("AIDP_LOGIN_LIMIT_PER_EMAIL", "7")
    settings = AuthSettings()
    assert settings.admin_emails == ["root@example.com", "ops@example.com"]
    assert settings.login_limit_per_email == 7


def test_defaults_match_the_design(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AuthSettings.model_fields:
        monkeypatch.delenv(f"AIDP_{name.upper()}", raising=False)
    settings = AuthSettings()
    assert settings.access_token_ttl_seconds == 900
    assert (settings.jwt_issuer, settings.jwt_audience) == ("aidp", "aidp-api")
    assert (settings.argon2_memory_kib, settings.argon2_time_cost) == (19456, 2)
    assert settings.admin_emails == []
