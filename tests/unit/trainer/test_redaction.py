"""Redactor: secret values (and their usual encodings) never survive in run output."""

from __future__ import annotations

import base64
import json
import logging
import re
from urllib.parse import quote, quote_plus

import pytest

from services.trainer.redaction import Redactor, RunSecrets, read_run_secrets
from shared.secrets import InMemoryVault

TOKEN = "hf_AbCdEfGhIjKlMnOpQrStUvWx"
WEIRD = 'p@ss/w rd+"\\é&=?x'


def test_plain_value_is_replaced_everywhere() -> None:
    r = Redactor({"HF_TOKEN": TOKEN})
    text = f"token={TOKEN} again {TOKEN}"
    assert r.redact(text) == "token=[redacted:HF_TOKEN] again [redacted:HF_TOKEN]"


def test_text_without_secrets_is_returned_unchanged() -> None:
    r = Redactor({"HF_TOKEN": TOKEN})
    line = "epoch 1 loss 0.25"
    assert r.redact(line) is line
    assert Redactor({}).redact(line) is line
    assert not Redactor({}) and Redactor({"A": TOKEN})


def test_short_values_are_ignored() -> None:
    r = Redactor({"PIN": "123", "EMPTY": "", "OK": "abcd"})
    assert r.redact("123 abcd") == "123 [redacted:OK]"
    assert r.names == ["OK"]


@pytest.mark.parametrize(
    "encode",
    [
        lambda v: quote(v, safe=""),
        lambda v: re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(v, safe="")),
        quote,
        quote_plus,
        lambda v: json.dumps(v)[1:-1],
        lambda v: json.dumps(v, ensure_ascii=False)[1:-1],
        lambda v: repr(v)[1:-1],
    ],
    ids=["quote", "quote-lower", "quote-slash", "quote-plus", "json", "json-utf8", "repr"],
)
def test_common_encodings_are_redacted(encode) -> None:  # type: ignore[no-untyped-def]
    r = Redactor({"DB_PASSWORD": WEIRD})
    encoded = encode(WEIRD)
    out = r.redact(f"url=https://u:{encoded}@host/x")
    assert encoded not in out and "[redacted:DB_PASSWORD]" in out


@pytest.mark.parametrize("prefix", ["", "u", "us", "user:", "ab:cd", "x" * 7])
@pytest.mark.parametrize("urlsafe", [False, True])
def test_base64_inside_a_larger_encoded_blob(prefix: str, urlsafe: bool) -> None:
    """Basic auth headers and the like: the value sits at any byte offset."""
    r = Redactor({"HF_TOKEN": TOKEN})
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    for suffix in ("", "!", "!!", "!!!"):
        blob = encode(f"{prefix}{TOKEN}{suffix}".encode()).decode()
        out = r.redact(f"Authorization: Basic {blob}")
        assert "[redacted:HF_TOKEN]" in out, (prefix, suffix)
        # what is left of the blob cannot be decoded back to the value
        assert TOKEN[2:-2] not in out


def test_multiline_value_lines_are_redacted_one_by_one() -> None:
    key = (
        "-----BEGIN KEY-----\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldY\n"
        "WVphYmNkZWZnaGlqa2xt\n-----END KEY-----\n"
    )
    r = Redactor({"SSH_KEY": key})
    assert r.redact(key) == "[redacted:SSH_KEY]"
    line = "read: WVphYmNkZWZnaGlqa2xt"
    assert r.redact(line) == "read: [redacted:SSH_KEY]"


def test_trailing_newline_in_stored_value() -> None:
    r = Redactor({"HF_TOKEN": TOKEN + "\n"})
    assert r.redact(f"[{TOKEN}]") == "[[redacted:HF_TOKEN]]"


def test_overlapping_values_leave_no_fragment() -> None:
    a, b = "abcdEFGH", "EFGHijkl"
    r = Redactor({"A": a, "B": b})
    out = r.redact("x abcdEFGHijkl y")
    assert out == "x [redacted:A,B] y"
    nested = Redactor({"OUTER": "key-abcd1234-end", "INNER": "abcd1234"})
    assert nested.redact("v=key-abcd1234-end") == "v=[redacted:INNER,OUTER]"
    assert nested.redact("v=abcd1234") == "v=[redacted:INNER]"


def test_redact_obj_walks_keys_and_values() -> None:
    r = Redactor({"HF_TOKEN": TOKEN})
    message = {"event": "progress", "step": 1, "metrics": {TOKEN: 1.0}, "tags": [TOKEN, 2]}
    out = r.redact_obj(message)
    assert out == {
        "event": "progress",
        "step": 1,
        "metrics": {"[redacted:HF_TOKEN]": 1.0},
        "tags": ["[redacted:HF_TOKEN]", 2],
    }
    assert TOKEN in json.dumps(message)  # the input is not modified


def test_repr_never_shows_values() -> None:
    r = Redactor({"HF_TOKEN": TOKEN})
    secrets = RunSecrets(env={"HF_TOKEN": TOKEN}, redactor=r)
    assert TOKEN not in repr(r) and TOKEN not in repr(secrets)
    assert "HF_TOKEN" in repr(r)


def test_read_run_secrets_skips_missing_and_reserved_names(
    caplog: pytest.LogCaptureFixture,
) -> None:
    vault = InMemoryVault()
    vault.put_user_secret("u1", "HF_TOKEN", TOKEN)
    vault.put_user_secret("u1", "LD_PRELOAD", "/tmp/evil.so")
    vault.put_user_secret("u1", "my.key", "value-1234")
    vault.put_user_secret("u1", "PIN", "12")
    vault.put_user_secret("u2", "KAGGLE_API_TOKEN", "kgat_other_user")
    names = ["HF_TOKEN", "KAGGLE_API_TOKEN", "LD_PRELOAD", "my.key", "AIDP_RUN_ID", "PIN", "X"]
    with caplog.at_level(logging.WARNING):
        got = read_run_secrets(vault, owner_id="u1", names=names, reserved={"X"})
    assert got.env == {"HF_TOKEN": TOKEN, "PIN": "12"}
    assert got.redactor.names == ["HF_TOKEN"]
    notes = "\n".join(got.notes)
    for name in ("KAGGLE_API_TOKEN", "LD_PRELOAD", "my.key", "AIDP_RUN_ID", "PIN", "X"):
        assert f"secret {name} " in notes
    assert "not stored" in notes and "override" in notes
    logged = caplog.text
    for value in (TOKEN, "/tmp/evil.so", "value-1234", "kgat_other_user"):
        assert value not in logged and value not in notes


def test_read_run_secrets_without_owner_sets_nothing() -> None:
    vault = InMemoryVault()
    vault.put_user_secret("u1", "HF_TOKEN", TOKEN)
    got = read_run_secrets(vault, owner_id=None, names=["HF_TOKEN"])
    assert got.env == {} and not got.redactor
    assert got.notes and "HF_TOKEN" in got.notes[0]
