"""Load a project spec file for ``aidp run``: YAML in, a validated JSON-able dict out.

For ``task: custom`` the entrypoint file (relative to the spec file) is read and inlined
into ``train.script`` so the server never needs the user's disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from shared.spec import ProjectSpec

__all__ = ["SpecError", "load_spec", "validation_message"]

MAX_SCRIPT_BYTES = 262_144


class SpecError(ValueError):
    """The spec file is missing, unreadable or invalid; the message names the field."""


def load_spec(path: Path, *, name: str | None = None) -> dict[str, Any]:
    """Read, inline and validate ``path``; ``name`` overrides the spec's name."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path} must be a YAML mapping (name:, model:, dataset:, ...)")
    if name:
        data["name"] = name
    train = data.get("train")
    if data.get("task") == "custom" and isinstance(train, dict) and train.get("entrypoint"):
        if not train.get("script"):
            train["script"] = _read_entrypoint(path.parent, str(train["entrypoint"]))
    try:
        ProjectSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{path}: {validation_message(exc)}") from exc
    return data


def _read_entrypoint(root: Path, entrypoint: str) -> str:
    script = (root / entrypoint).resolve()
    if not script.is_relative_to(root.resolve()):
        raise SpecError(f"train.entrypoint {entrypoint!r} must stay inside the spec's folder")
    if not script.is_file():
        raise SpecError(f"train.entrypoint: {entrypoint!r} not found next to the spec ({script})")
    if script.stat().st_size > MAX_SCRIPT_BYTES:
        raise SpecError(f"train.entrypoint: {entrypoint!r} is larger than 256 KiB")
    return script.read_text()


def validation_message(exc: ValidationError) -> str:
    """'field.path: message' for each error, joined by '; '."""
    parts = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"])
        msg = error["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
