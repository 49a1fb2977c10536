"""The model's size from its ``config.json``, and the run's steps and time from it.

:func:`estimate_params` is ``shared.model_size``'s, the rule the training task on the node
uses too (staged there beside the task scripts), so both choose the same training method.
"""

from __future__ import annotations

import math

from services.fetcher.preflight.rows import Report
from shared.model_size import estimate_params
from shared.spec import ProjectSpec

__all__ = ["estimate", "estimate_params"]

#: Sustained training FLOP/s assumed per node for the time estimate (rough).
_FLOPS = {"cpu": 2e11, "cuda": 2e14, "gaudi": 1.5e14, "xpu": 1e14}


def estimate(
    spec: ProjectSpec, report: Report, params: int | None, method: str
) -> tuple[int | None, float | None]:
    """(training steps, seconds or None) of the run from the scanned rows' token counts."""
    args = spec.train.args
    rows = report.total if report.total else report.rows
    batch = max(1, int(args.get("batch_size") or 8))
    nodes = spec.resources.nodes
    max_steps = int(args.get("max_steps") or -1)
    if spec.task == "causal-lm":  # blocks of max_length tokens, not rows
        block = max(2, int(args.get("max_length") or 128))
        mean = sum(report.tokens) / max(1, len(report.tokens))
        rows = max(1, int(rows * mean / block))
    steps = (
        max_steps
        if max_steps > 0
        else math.ceil(float(args.get("epochs") or 1) * rows / (batch * nodes))
    )
    if params is None or not report.tokens:
        return steps, None
    mean_tokens = sum(report.tokens) / len(report.tokens)
    if spec.train.args.get("max_length") and spec.task == "chat":
        mean_tokens = min(mean_tokens, float(spec.train.args["max_length"]))
    flops_per_token = (4 if method != "full" else 6) * params  # LoRA: no weight gradients
    flops = _FLOPS.get(spec.resources.accelerator, 2e11) * nodes
    return steps, round(steps * batch * nodes * mean_tokens * flops_per_token / flops, 1)
