"""The check itself, on the decrypted inputs: its event (runs in the child process)."""

from __future__ import annotations

from typing import Any

from services.fetcher.preflight.estimate import estimate, estimate_params
from services.fetcher.preflight.rows import scan
from services.fetcher.preflight.tokenizer import Tokenizer
from shared.events import DatasetValidated, ValidationFailed
from shared.spec import ProjectSpec, default_method

__all__ = ["evaluate"]


def evaluate(spec: ProjectSpec, inputs: dict[str, Any]) -> DatasetValidated | ValidationFailed:
    """The check itself, on :func:`~.inputs.collect_inputs`'s result (runs in the child process)."""
    tok = Tokenizer(inputs["model"])
    report = scan(spec, inputs["data"], tok)
    if spec.task == "chat" and tok.template is None:
        report.flag("tokenizer_config.json", 0, "the model has no chat template: use causal-lm")
    if tok.tokenizer is None:
        report.notes.append("the model has no tokenizer.json: tokens estimated as characters/4")
    if report.errors:
        first = next(i for i in report.issues if i.severity == "error")
        where = f"row {first.row} of {first.file}" if first.row else first.file
        return ValidationFailed(
            task=spec.task,
            reason=f"{report.errors} of {report.rows} checked rows are malformed"
            f" ({where}: {first.problem})",
            rows_checked=report.rows,
            error_rows=report.errors,
            issues=[i for i in report.issues if i.severity == "error"],
        )
    params = estimate_params(tok.config)
    method = spec.train.method or default_method(params)
    steps, seconds = estimate(spec, report, params, method)
    return DatasetValidated(
        task=spec.task,
        rows_checked=report.rows,
        rows_total=report.total or None,
        tokens_mean=round(sum(report.tokens) / len(report.tokens), 1) if report.tokens else None,
        tokens_max=max(report.tokens) if report.tokens else None,
        max_length=int(spec.train.args.get("max_length") or 128),
        over_max_length=report.over,
        method=method,
        model_params=params,
        estimated_steps=steps,
        estimated_seconds=seconds,
        issues=report.issues,
        notes=report.notes,
    )
