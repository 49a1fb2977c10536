"""Lines the CLI prints for a run's pre-flight check (DatasetValidated / ValidationFailed)."""

from __future__ import annotations

from typing import Any

__all__ = ["failed_lines", "validated_lines"]

_SHOWN = 10


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _issues(p: dict[str, Any]) -> list[str]:
    issues = [i for i in p.get("issues") or [] if isinstance(i, dict)]
    lines = [
        f"  row {i.get('row')} of {i.get('file')}: {i.get('problem')}"
        + (" (warning)" if i.get("severity") == "warning" else "")
        for i in issues[:_SHOWN]
    ]
    if len(issues) > _SHOWN:
        lines.append(f"  … and {len(issues) - _SHOWN} more")
    return lines


def validated_lines(p: dict[str, Any]) -> list[str]:
    """One summary line, then the flagged rows (warnings)."""
    parts = [f"pre-flight check passed: {p.get('rows_checked')} rows checked"]
    if p.get("rows_total"):
        parts[0] += f" of {p['rows_total']}"
    if p.get("tokens_mean") is not None:
        parts.append(f"{p['tokens_mean']:.0f} tokens/row on average (max {p.get('tokens_max')})")
    if p.get("over_max_length"):
        parts.append(f"{p['over_max_length']} over max_length {p.get('max_length')} (truncated)")
    if p.get("method"):
        parts.append(f"method {p['method']}")
    if p.get("estimated_steps"):
        eta = p.get("estimated_seconds")
        parts.append(
            f"~{p['estimated_steps']} steps" + (f", ~{_duration(float(eta))}" if eta else "")
        )
    notes = [f"  note: {n}" for n in p.get("notes") or []]
    return ["; ".join(parts), *_issues(p), *notes]


def failed_lines(p: dict[str, Any]) -> list[str]:
    """The reason, then the malformed rows with their numbers."""
    return [f"pre-flight check failed: {p.get('reason')}", *_issues(p)]
