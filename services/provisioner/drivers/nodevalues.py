"""Strict checks of values that come from a spec or from a node before they reach ssh or Ansible.

A node (the user's own SSH host, a cloud VM and its API) is not trusted: whatever it answers
is checked against a narrow pattern here, and a value that does not fit fails the run with a
clear message instead of being passed on. (Ansible also receives every inventory value as
unsafe data, see :mod:`services.provisioner.envs.inventory`; these checks are the first line.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.errors import ProviderError
from shared.spec import is_host_address

__all__ = [
    "ProbeAnswer",
    "check_host",
    "check_path",
    "check_port",
    "check_proxy",
    "check_user",
    "parse_probe_answer",
]

_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
#: An absolute path of portable file name characters (no spaces, quotes, braces or `$`).
_PATH = re.compile(r"^/[A-Za-z0-9._+@,=:~/-]{0,1023}$")
_VERSION = re.compile(r"^3\.\d{1,3}\.\d{1,3}[A-Za-z0-9.+]{0,16}$")


def _invalid(what: str, value: object, *, code: str = "invalid_node_value") -> ProviderError:
    shown = repr(value)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    return ProviderError(f"{what}: refused {shown}", code=code)


def check_host(value: object, *, what: str) -> str:
    """A hostname or an IP literal, else ProviderError."""
    if not isinstance(value, str) or not is_host_address(value):
        raise _invalid(f"{what} is not a hostname or an IP address", value)
    return value


def check_user(value: object, *, what: str) -> str:
    """A POSIX login name (lowercase letters, digits, ``_``, ``.``, ``-``), else ProviderError."""
    if not isinstance(value, str) or not _USER.fullmatch(value):
        raise _invalid(f"{what} is not a valid user name", value)
    return value


def check_port(value: object, *, what: str) -> int:
    """A TCP port 1..65535 (an int or its decimal text), else ProviderError."""
    text = str(value)
    if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise _invalid(f"{what} is not a TCP port", value)
    return int(text)


def check_path(value: object, *, what: str) -> str:
    """An absolute path of portable characters (no ``..`` component), else ProviderError."""
    if not isinstance(value, str) or not _PATH.fullmatch(value) or ".." in value.split("/"):
        raise _invalid(f"{what} is not a plain absolute path", value)
    return value


def check_proxy(user: object, host: object, port: object, *, what: str) -> str:
    """``user@host:port`` of a jump host, each part checked."""
    return (
        f"{check_user(user, what=f'{what} user')}@{check_host(host, what=what)}"
        f":{check_port(port, what=f'{what} port')}"
    )


@dataclass(frozen=True)
class ProbeAnswer:
    """What the node probe reports: Python's version, python3's path and the login's home."""

    version: str
    python3: str
    home: str


def parse_probe_answer(out: str, *, node: str, strict: bool = True) -> ProbeAnswer:
    """Parse the probe's stdout (its last three lines; a login banner before them is
    ignored). With ``strict`` (every node but the controller itself), a line that does not
    fit its pattern raises ProviderError "invalid probe answer" (code
    ``invalid_probe_answer``): the node is not used."""
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    if len(lines) < 3:
        raise ProviderError(
            f"node {node}: invalid probe answer: expected 3 lines, got {len(lines)}",
            code="invalid_probe_answer",
        )
    version, python3, home = lines[-3:]
    checks = (
        ("Python version", version, _VERSION),
        ("python3 path", python3, _PATH),
        ("home directory", home, _PATH),
    )
    for what, value, pattern in checks if strict else ():
        if not pattern.fullmatch(value) or ".." in value.split("/"):
            raise _invalid(
                f"node {node}: invalid probe answer ({what})", value, code="invalid_probe_answer"
            )
    return ProbeAnswer(version=version, python3=python3, home=home)
