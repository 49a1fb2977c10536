"""Log scrubbing (shared/telemetry.py)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from shared.telemetry import ScrubbingFilter, _JsonFormatter, scrub

JWT = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiIxMjM0NTY3ODkwIiwiYWRtIjpmYWxzZX0.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("login password=hunter2 failed", "hunter2"),
        ('{"password": "hunter2", "email": "a@b.c"}', "hunter2"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("calling with bearer Zm9vYmFyYmF6", "Zm9vYmFyYmF6"),
        (f"token {JWT}", JWT),
        ("refresh_token=r3fr3sh-t0k3n", "r3fr3sh-t0k3n"),
        ("HF_TOKEN is hf_AbCdEfGhIjKlMnOpQrSt", "hf_AbCdEfGhIjKlMnOpQrSt"),
        ("vault hvs.CAESIJabcdefghijklmnopqrstuvwxyz", "hvs.CAESIJabcdefghijklmnopqrstuvwxyz"),
        ("KAGGLE_API_TOKEN=kgat_0123456789", "kgat_0123456789"),
        ("cli uses aidp_Zx81kLmNoPqRsTuV0123", "aidp_Zx81kLmNoPqRsTuV0123"),
        ("bus amqp://aidp:s3cr3t@rabbit:5672/prod", "s3cr3t"),
        ("bus amqps://aidp:p%40ss@rabbit/", "p%40ss"),
        ("db postgresql+psycopg://aidp:pgpa55@db:5432/aidp", "pgpa55"),
        ("api_key='abc123xyz'", "abc123xyz"),
        ("client_secret: s3cr3tvalue", "s3cr3tvalue"),
        ("secret_id=0f1e2d3c", "0f1e2d3c"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA\n-----END OPENSSH PRIVATE KEY-----",
            "b3BlbnNzaA",
        ),
    ],
)
def test_credentials_are_masked(text: str, secret: str) -> None:
    scrubbed = scrub(text)
    assert secret not in scrubbed
    assert "***" in scrubbed


def test_ordinary_text_is_left_alone() -> None:
    text = "run 42 reached step 50/200 loss=0.61 on node local-0 (amqp://rabbit:5672/)"
    assert scrub(text) == text


def _logger(json_lines: bool = False) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ScrubbingFilter())
    if json_lines:
        handler.setFormatter(_JsonFormatter())
    logger = logging.getLogger(f"test-scrub-{json_lines}")
    logger.handlers = [handler]
    logger.propagate = False
    return logger, out


def test_the_log_filter_scrubs_arguments_and_tracebacks() -> None:
    logger, out = _logger()
    logger.warning("connecting to %s with %s", "amqp://u:pw1234@h/", {"token": "tok-999"})
    try:
        raise RuntimeError(f"auth failed: Bearer {JWT}")
    except RuntimeError:
        logger.exception("login failed for password=%s", "hunter2")
    text = out.getvalue()
    for secret in ("pw1234", "tok-999", JWT, "hunter2"):
        assert secret not in text
    assert "auth failed" in text and "RuntimeError" in text


def test_json_lines_are_scrubbed_too() -> None:
    logger, out = _logger(json_lines=True)
    logger.error("password=%s", "hunter2")
    entry = json.loads(out.getvalue())
    assert entry["msg"] == "password=***" and entry["level"] == "ERROR"
