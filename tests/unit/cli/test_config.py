from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cli.config import DEFAULT_SERVER, Config, load_config, save_config


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_saved_config_is_private(config_file: Path) -> None:
    save_config(Config(server="http://h:1", access_token="a", refresh_token="r"))
    assert _mode(config_file) == 0o600
    assert _mode(config_file.parent) == 0o700
    assert json.loads(config_file.read_text())["refresh_token"] == "r"


def test_existing_world_readable_file_is_tightened(config_file: Path) -> None:
    config_file.parent.mkdir(parents=True)
    config_file.write_text("{}")
    config_file.chmod(0o644)
    save_config(Config(api_token="aidp_x"))
    assert _mode(config_file) == 0o600


def test_round_trip_and_defaults(config_file: Path) -> None:
    assert load_config() == Config(server=DEFAULT_SERVER)
    save_config(Config(server="http://s:9", email="a@b.c", api_token="aidp_t"))
    loaded = load_config()
    assert (loaded.server, loaded.email, loaded.api_token) == ("http://s:9", "a@b.c", "aidp_t")
    assert loaded.logged_in


def test_env_overrides(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_config(Config(server="http://s:9", access_token="a", refresh_token="r"))
    monkeypatch.setenv("AIDP_SERVER", "http://other:1")
    monkeypatch.setenv("AIDP_TOKEN", "aidp_ci")
    loaded = load_config()
    assert loaded.server == "http://other:1"
    assert (loaded.api_token, loaded.access_token, loaded.refresh_token) == ("aidp_ci", None, None)


def test_repr_hides_tokens() -> None:
    text = repr(Config(access_token="SECRET-A", refresh_token="SECRET-R", api_token="SECRET-T"))
    assert "SECRET" not in text


def test_corrupt_file_gives_a_readable_error(config_file: Path) -> None:
    config_file.parent.mkdir(parents=True)
    config_file.write_text("{not json")
    with pytest.raises(ValueError, match="aidp login"):
        load_config()
