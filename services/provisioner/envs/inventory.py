"""The Ansible inventory of a run's nodes, written so that Ansible never renders a value in it.

Every string value (the driver's connection variables and the builder's host vars: node
addresses, user names, paths, the probe's answers, settings) is tagged ``!unsafe`` in the
YAML file: Ansible uses it as data and never evaluates ``{{ … }}`` or ``{% … %}`` inside,
wherever a task or template uses it. Host and variable names must be plain identifiers.
Numbers, booleans and null keep their types.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from services.provisioner.drivers.base import Node, NodeDriver
from shared.errors import ProviderError

__all__ = ["build_inventory", "dump_inventory", "write_inventory"]

_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class _Unsafe(str):
    """A string Ansible must treat as data (dumped with the ``!unsafe`` tag)."""


class _Dumper(yaml.SafeDumper):
    pass


def _represent_unsafe(dumper: yaml.SafeDumper, value: _Unsafe) -> yaml.ScalarNode:
    return dumper.represent_scalar("!unsafe", str(value), style='"')


_Dumper.add_representer(_Unsafe, _represent_unsafe)


def _wrap(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str | Path):
        return _Unsafe(str(value))
    if isinstance(value, list | tuple):
        return [_wrap(item, where) for item in value]
    if isinstance(value, dict):
        return {_name(key, _VAR_NAME, where): _wrap(item, where) for key, item in value.items()}
    raise ProviderError(f"inventory value of {where} has an unsupported type {type(value)}")


def _name(value: object, pattern: re.Pattern[str], where: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ProviderError(f"inventory of {where}: refused name {value!r}")
    return value


def build_inventory(
    nodes: list[Node], driver: NodeDriver, host_vars: Callable[[Node], dict[str, Any]]
) -> dict[str, Any]:
    """``{"all": {"hosts": {name: vars}}}`` with every string value wrapped as unsafe."""
    hosts: dict[str, Any] = {}
    for node in nodes:
        name = _name(node.name, _HOST_NAME, "a node")
        hosts[name] = _wrap({**driver.ansible_vars(node), **host_vars(node)}, name)
    return {"all": {"hosts": hosts}}


def dump_inventory(inventory: dict[str, Any]) -> str:
    """YAML text of an inventory from :func:`build_inventory` (``!unsafe`` strings)."""
    return yaml.dump(inventory, Dumper=_Dumper, sort_keys=True, allow_unicode=False, width=2**16)


def write_inventory(path: Path, inventory: dict[str, Any]) -> Path:
    """Write the inventory YAML (0600: it names key files) and return its path."""
    path.write_text(dump_inventory(inventory))
    path.chmod(0o600)
    return path
