from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cli.config import (
    DEFAULT_SERVER,
    Config,
    config_path,
    legacy_config_path,
    load_config,
    save_config,
)


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


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No AIDP_CONFIG: the default place under a fresh home (XDG_CONFIG_HOME unset)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("AIDP_CONFIG", "XDG_CONFIG_HOME", "AIDP_SERVER", "AIDP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return home


def test_default_place_is_the_platform_config_folder(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert config_path() == home / ".config" / "aidp" / "config"
    saved = save_config(Config(server="http://s:9", api_token="aidp_t"))
    assert saved == home / ".config" / "aidp" / "config"
    assert _mode(saved) == 0o600 and _mode(saved.parent) == 0o700
    assert load_config().api_token == "aidp_t"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg"))
    assert config_path() == home / "xdg" / "aidp" / "config"


def test_a_config_at_the_old_place_is_moved(home: Path) -> None:
    old = home / ".aidp" / "config"
    assert legacy_config_path() == old
    old.parent.mkdir()
    old.write_text(json.dumps({"server": "http://old:1", "email": "a@b.c", "api_token": "t1"}))
    old.chmod(0o644)
    loaded = load_config()
    assert (loaded.server, loaded.email, loaded.api_token) == ("http://old:1", "a@b.c", "t1")
    new = config_path()
    assert new != old and not old.exists()  # tokens live in one file
    assert _mode(new) == 0o600
    assert json.loads(new.read_text())["api_token"] == "t1"
    # the data dir (~/.aidp) is left alone; a later save goes to the new place
    assert old.parent.is_dir()
    save_config(Config(server="http://new:2"))
    assert load_config().server == "http://new:2" and not old.exists()


def test_a_newer_config_wins_over_the_old_place(home: Path) -> None:
    save_config(Config(server="http://new:2"))
    old = home / ".aidp" / "config"
    old.parent.mkdir()
    old.write_text(json.dumps({"server": "http://old:1"}))
    assert load_config().server == "http://new:2"
    assert old.exists()  # not ours to merge: left as it is


def test_the_old_place_is_used_when_the_new_folder_cannot_be_written(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = home / ".aidp" / "config"
    old.parent.mkdir()
    old.write_text(json.dumps({"server": "http://old:1"}))
    blocked = home / "blocked"
    blocked.write_text("a file, not a folder")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(blocked))
    assert config_path() == old
    assert load_config().server == "http://old:1"


def test_aidp_config_wins_and_the_old_file_stays(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = home / ".aidp" / "config"
    old.parent.mkdir()
    old.write_text(json.dumps({"server": "http://old:1"}))
    monkeypatch.setenv("AIDP_CONFIG", str(tmp_path / "elsewhere" / "cfg"))
    assert config_path() == tmp_path / "elsewhere" / "cfg"
    assert load_config().server == DEFAULT_SERVER
    assert old.exists()
