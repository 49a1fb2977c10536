"""The CLI's config file: the server URL and the caller's tokens.

Stored as JSON in ``config`` in the per-user config folder of the platform (platformdirs:
``$XDG_CONFIG_HOME/aidp``, default ``~/.config/aidp``, on Linux; ``~/Library/Application
Support/aidp`` on macOS; ``%LOCALAPPDATA%\\aidp`` on Windows) or at ``$AIDP_CONFIG``, readable
only by its owner (mode 0600, directory 0700) because it holds bearer tokens.
``AIDP_SERVER`` and ``AIDP_TOKEN`` (an API token, for CI) override what the file says.

Earlier versions kept the file at ``~/.aidp/config``: the first command that needs the
config moves it to the new place (the old file is removed so tokens live in one file); if
the new folder cannot be written, the old file keeps being used.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

from platformdirs import user_config_path

__all__ = [
    "DEFAULT_SERVER",
    "Config",
    "config_path",
    "legacy_config_path",
    "load_config",
    "save_config",
]

DEFAULT_SERVER = "http://127.0.0.1:8000"


@dataclass
class Config:
    """What ``aidp login`` remembers. Tokens are secrets: never print them."""

    server: str = DEFAULT_SERVER
    email: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    api_token: str | None = None

    def __repr__(self) -> str:  # keep tokens out of tracebacks and logs
        return f"Config(server={self.server!r}, email={self.email!r})"

    @property
    def logged_in(self) -> bool:
        return bool(self.api_token or self.access_token or self.refresh_token)


def legacy_config_path() -> Path:
    """Where versions before the platform's config folder kept the file."""
    return Path.home() / ".aidp" / "config"


def config_path() -> Path:
    """``$AIDP_CONFIG`` if set, else ``config`` in the platform's per-user config folder
    (a config at the old place, ``~/.aidp/config``, is moved there first)."""
    env = os.environ.get("AIDP_CONFIG")
    if env:
        return Path(env).expanduser()
    path = user_config_path("aidp", appauthor=False) / "config"
    legacy = legacy_config_path()
    if not path.exists() and legacy.is_file():
        try:
            _move_private(legacy, path)
        except OSError:
            return legacy  # the new folder cannot be written: keep using the old file
    return path


def _move_private(src: Path, dst: Path) -> None:
    """Copy ``src`` to a new ``dst`` (mode 0600, directory 0700), then remove ``src``."""
    data = src.read_bytes()
    dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, stat.S_IRUSR | stat.S_IWUSR)
    os.replace(tmp, dst)
    src.unlink()


def load_config(path: Path | None = None) -> Config:
    """Read the config file (an empty config if there is none), then apply env overrides."""
    path = path or config_path()
    config = Config()
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {path}: {exc}; delete it and run `aidp login`") from exc
        known = {k: v for k, v in data.items() if k in Config.__dataclass_fields__}
        config = Config(**known)
    if server := os.environ.get("AIDP_SERVER"):
        config.server = server
    if token := os.environ.get("AIDP_TOKEN"):
        config.api_token, config.access_token, config.refresh_token = token, None, None
    return config


def save_config(config: Config, path: Path | None = None) -> Path:
    """Write the config atomically with mode 0600 (the directory gets 0700)."""
    path = path or config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(config), fh, indent=2)
    os.chmod(tmp, stat.S_IRUSR | stat.S_IWUSR)  # in case the file existed with wider perms
    os.replace(tmp, path)
    return path
