"""Which ``train.args`` keys each built-in task (and training method) understands.

The built-in tasks read their hyperparameters into ``TrainConfig``
(services/trainer/tasks/_common.py) and used to ignore unknown keys, so a typo such as
``max_step: 40`` trained a full epoch. :func:`check_train_args` refuses a key the chosen
task and method do not read, naming the nearest valid one ("did you mean max_steps?").

Tables, not code, decide: :data:`TASK_ARGS` maps a task to its keys (``None``: any key,
the ``custom`` task's script reads what it wants) and :data:`METHOD_ARGS` adds the keys a
training method reads on top of its task's. A new task or method adds one row to each;
a unit test keeps :data:`COMMON_ARGS` equal to ``TrainConfig``'s fields.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "COMMON_ARGS",
    "LORA_ARGS",
    "METHOD_ARGS",
    "TASK_ARGS",
    "allowed_train_args",
    "check_train_args",
    "nearest",
    "unknown_train_args",
]

#: keys every built-in task reads (the fields of the trainer's ``TrainConfig``)
COMMON_ARGS: frozenset[str] = frozenset(
    {
        "epochs",
        "learning_rate",
        "batch_size",
        "max_steps",
        "weight_decay",
        "warmup_steps",
        "max_length",
        "seed",
        "eval_fraction",
        "eval_every",
        "num_threads",
        "checkpoint_every",
    }
)

#: task → the keys it reads; ``None``: free-form (the user's own script reads them)
TASK_ARGS: dict[str, frozenset[str] | None] = {
    "text-classification": COMMON_ARGS | {"text_column", "label_column"},
    "image-classification": COMMON_ARGS - {"max_length"},
    "causal-lm": COMMON_ARGS | {"text_column"},
    # chat SFT (TRL's SFTTrainer): rows {"messages": [...]}; packing joins short rows
    "chat": COMMON_ARGS | {"messages_column", "packing"},
    "custom": None,
}

#: what LoRA reads (peft ``LoraConfig``; ``merge_adapter``: register the merged model)
LORA_ARGS: frozenset[str] = frozenset(
    {"lora_r", "lora_alpha", "lora_dropout", "target_modules", "merge_adapter"}
)

#: training method → keys it reads on top of its task's (``full``, the default, adds none)
METHOD_ARGS: dict[str, frozenset[str]] = {
    "full": frozenset(),
    "lora": LORA_ARGS,
    "qlora": LORA_ARGS,
    # an LLM task without train.method: lora for large models (shared.spec.default_method)
    "auto": LORA_ARGS,
}


def nearest(name: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``name`` (difflib ratio ≥ 0.6), or None."""
    found = difflib.get_close_matches(str(name), sorted(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def allowed_train_args(task: str, method: str | None = None) -> frozenset[str] | None:
    """The keys ``task`` with ``method`` reads, or None when any key is allowed."""
    base = TASK_ARGS.get(task)
    if base is None:
        return None
    return base | METHOD_ARGS.get(method or "full", frozenset())


def unknown_train_args(
    task: str, args: Mapping[str, Any], method: str | None = None
) -> list[tuple[str, str | None]]:
    """``(key, suggestion or None)`` for each key of ``args`` that ``task``/``method``
    does not read, in the order given."""
    allowed = allowed_train_args(task, method)
    if allowed is None:
        return []
    return [(str(key), nearest(str(key), allowed)) for key in args if key not in allowed]


def check_train_args(task: str, args: Mapping[str, Any], method: str | None = None) -> None:
    """Raise ``ValueError`` naming each unknown key (``train.args.max_step``) with the
    nearest valid one, or listing the valid keys when none is near."""
    unknown = unknown_train_args(task, args, method)
    if not unknown:
        return
    allowed = sorted(allowed_train_args(task, method) or ())
    what = f"task {task}" + (f" with method {method}" if method else "")
    parts = []
    for key, suggestion in unknown[:5]:
        hint = f"did you mean {suggestion}?" if suggestion else f"valid keys: {', '.join(allowed)}"
        parts.append(f"train.args.{key}: unknown key for {what}; {hint}")
    raise ValueError("; ".join(parts))
