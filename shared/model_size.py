"""A model's parameter count from its ``config.json``: the one rule both the fetcher's
pre-flight check and the training task on the node use to choose the training method
(``full`` under ~500M parameters, ``lora`` from there on), so they cannot disagree.

Pure Python with no imports from aidp: the trainer stages this file to the node beside the
task scripts as ``_model_size.py`` (``services/trainer/staging.py``), where the tasks
import it without the platform installed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["estimate_params"]


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
