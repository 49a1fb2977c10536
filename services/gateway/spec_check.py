"""Check a spec without starting anything: every error with the path it is at.

``POST /api/specs/validate`` takes YAML text (the web editor) or a JSON spec and answers
``{"valid", "errors": [{"path", "message", "line"?}], "spec"}``. Paths are dotted
(``train.args.max_step``, ``resources.hosts.0.address``); YAML syntax errors carry the
line. ``spec`` is the parsed spec (as JSON) when the text parses, so the editor can send it
to ``PATCH /api/projects/{id}`` unchanged.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import ValidationError

from shared.spec import ProjectSpec

__all__ = ["SpecError", "errors_of", "parse_yaml"]

SpecError = dict[str, Any]

#: a model-level message that starts with the path it is about (``train.args.x: …``)
_PATH_PREFIX = re.compile(r"^([a-z_][a-z0-9_]*(?:\.[A-Za-z0-9_-]+)+): (.*)$", re.DOTALL)


def parse_yaml(text: str) -> tuple[Any, list[SpecError]]:
    """The YAML document in ``text``, or errors (with the line) when it does not parse."""
    try:
        # aliases (*name) are refused before building anything: a few nested ones expand
        # to billions of nodes when the spec is validated or diffed
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 1 if event.start_mark else None
                return None, [
                    {"path": "", "message": "YAML: aliases are not allowed", "line": line}
                ]
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or "invalid YAML"
        return None, [{"path": "", "message": f"YAML: {problem}", "line": line}]
    except yaml.YAMLError as exc:
        return None, [{"path": "", "message": f"YAML: {type(exc).__name__}"}]
    if not isinstance(data, dict):
        return None, [{"path": "", "message": "a spec is a mapping (name: …, model: …)"}]
    return data, []


def _split(message: str) -> list[tuple[str, str]]:
    """A model-level message may hold several ``path: text`` parts joined by ``; ``."""
    parts = []
    for piece in re.split(r"; (?=[a-z_][a-z0-9_]*\.[A-Za-z0-9_.-]+: )", message):
        match = _PATH_PREFIX.match(piece)
        parts.append((match.group(1), match.group(2)) if match else ("", piece))
    return parts


def errors_of(data: Any) -> tuple[dict[str, Any] | None, list[SpecError]]:
    """The normalised spec (JSON) or the validation errors, each with its path."""
    try:
        spec = ProjectSpec.model_validate(data)
    except ValidationError as exc:
        errors: list[SpecError] = []
        for error in exc.errors()[:20]:
            path = ".".join(str(p) for p in error.get("loc", ()))
            message = str(error.get("msg", "invalid"))
            if error.get("type") == "extra_forbidden":
                message = "unknown field"
            message = message.removeprefix("Value error, ")
            if path:
                errors.append({"path": path, "message": message})
            else:
                errors.extend({"path": p, "message": m} for p, m in _split(message))
        return None, errors
    return spec.model_dump(mode="json", exclude_none=True), []
