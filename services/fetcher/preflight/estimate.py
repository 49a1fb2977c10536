"""The model's size from its ``config.json``, and the run's steps and time from it.

:func:`estimate_params` has a twin in the trainer's ``tasks/_lora.py`` (the node cannot
import the fetcher): both must choose the same training method (a test compares them).
"""

from __future__ import annotations

import math
from typing import Any

from services.fetcher.preflight.rows import Report
from shared.spec import ProjectSpec

__all__ = ["estimate", "estimate_params"]

#: Sustained training FLOP/s assumed per node for the time estimate (rough).
_FLOPS = {"cpu": 2e11, "cuda": 2e14, "gaudi": 1.5e14, "xpu": 1e14}


def estimate_params(config: dict[str, Any]) -> int | None:
    """Parameters of a decoder-only model from its ``config.json`` (embeddings plus per
    layer attention and MLP); None when the config lacks the sizes."""
    sub = config.get("text_config")
    text: dict[str, Any] = sub if isinstance(sub, dict) else config

    def size(*names: str) -> int:
        for name in names:
            value = text.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return 0

    hidden = size("hidden_size", "n_embd", "d_model")
    layers = size("num_hidden_layers", "n_layer", "num_layers")
    vocab = size("vocab_size")
    if not (hidden and layers and vocab):
        return None
    inner = size("intermediate_size", "n_inner") or 4 * hidden
    heads = size("num_attention_heads") or 1
    kv = size("num_key_value_heads") or heads
    attention = 2 * hidden * hidden + 2 * hidden * (hidden * kv // max(1, heads))
    mlp = (3 if text.get("model_type") not in ("gpt2", "gpt_neox", "opt") else 2) * hidden * inner
    embeddings = vocab * hidden * (1 if text.get("tie_word_embeddings", True) else 2)
    return int(embeddings + layers * (attention + mlp))


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
