"""LoRA / QLoRA for the LLM tasks (``chat``, ``causal-lm``), on the node: peft + bitsandbytes.

``train.method`` comes as ``AIDP_TRAIN_METHOD`` (empty: ``full`` under ~500M parameters,
``lora`` from there on — the rule of ``shared.spec.default_method``, applied here to the
loaded model's exact count). ``train.args``: ``lora_r`` (16), ``lora_alpha`` (2 × r),
``lora_dropout`` (0.05), ``target_modules`` (a list, ``all-linear``, or left out: peft's
default for the architecture, else every linear layer), ``merge_adapter`` (false).

What :func:`save_model` writes to the output folder (it becomes the registered version):

- full: the model (``config.json``, safetensors) and the tokenizer;
- lora / qlora: ``adapter_config.json`` + ``adapter_model.safetensors`` (peft's layout;
  ``base_model_name_or_path`` is ``base``), the tokenizer (chat template included) and
  ``aidp_adapter.json`` (method, rank, alpha, dropout, target modules). The trainer adds
  the base model's files under ``base/`` when it registers the version;
- with ``merge_adapter``: the merged model (as full) plus the adapter under ``adapter/``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from _model_size import estimate_params  # shared/model_size.py, staged beside us

__all__ = [
    "LORA_FROM_PARAMS",
    "estimate_params",
    "load_base",
    "lora_options",
    "resolve_method",
    "save_model",
]

LORA_FROM_PARAMS = 500_000_000


def resolve_method(model_dir: Path) -> str:
    """``full``, ``lora`` or ``qlora``: the spec's, else chosen from the model's size."""
    method = (os.environ.get("AIDP_TRAIN_METHOD") or "").strip()
    if method in ("full", "lora", "qlora"):
        return method
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    params = estimate_params(config) if isinstance(config, dict) else None
    return "lora" if params is not None and params >= LORA_FROM_PARAMS else "full"


def lora_options(args: dict[str, Any]) -> dict[str, Any]:
    """The LoRA settings of ``train.args`` with their defaults."""
    r = int(args.get("lora_r") or 16)
    dropout = args.get("lora_dropout")
    targets = args.get("target_modules")
    if isinstance(targets, str) and targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    return {
        "r": r,
        "lora_alpha": int(args.get("lora_alpha") or 2 * r),
        "lora_dropout": 0.05 if dropout is None else float(dropout),
        "target_modules": targets or None,
        "merge_adapter": bool(args.get("merge_adapter") or False),
    }


def _dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_base(model_dir: Path, method: str, device: torch.device) -> Any:
    """The base model: 4-bit NF4 for qlora (CUDA only), the device's dtype otherwise."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {
        "use_safetensors": True,
        "trust_remote_code": False,
        "local_files_only": True,
    }
    if method == "qlora":
        if device.type != "cuda":
            raise SystemExit(
                "train.method qlora needs a CUDA GPU on the node (bitsandbytes 4-bit); "
                "use method lora"
            )
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=_dtype(device),
        )
        kwargs["device_map"] = {"": device.index or 0}
    else:
        kwargs["dtype"] = _dtype(device)
    return AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)


def wrap(model: Any, method: str, options: dict[str, Any]) -> Any:
    """``model`` with LoRA adapters (trainable) on a frozen base; ``full``: unchanged."""
    if method == "full":
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if method == "qlora":
        model = prepare_model_for_kbit_training(model)

    def config(targets: Any) -> Any:
        return LoraConfig(
            r=options["r"],
            lora_alpha=options["lora_alpha"],
            lora_dropout=options["lora_dropout"],
            target_modules=targets,
            bias="none",
            task_type="CAUSAL_LM",
        )

    try:
        return get_peft_model(model, config(options["target_modules"]))
    except ValueError:
        if options["target_modules"] is not None:
            raise
        # peft knows no default for this architecture: every linear layer
        return get_peft_model(model, config("all-linear"))


def _targets(model: Any) -> list[str] | str | None:
    cfg = getattr(model, "peft_config", {}).get("default")
    targets = getattr(cfg, "target_modules", None)
    if isinstance(targets, set | frozenset | tuple | list):
        return sorted(targets)
    return targets  # type: ignore[no-any-return]


def save_model(
    model: Any,
    tokenizer: Any,
    out: Path,
    *,
    method: str,
    options: dict[str, Any],
    model_dir: Path,
) -> dict[str, Any]:
    """Write the trained model to ``out`` (layout in the module docstring); returns the
    adapter facts (empty for full) that also go to ``aidp_adapter.json``."""
    out.mkdir(parents=True, exist_ok=True)
    if method == "full":
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        return {}
    facts = {
        "method": method,
        "r": options["r"],
        "lora_alpha": options["lora_alpha"],
        "lora_dropout": options["lora_dropout"],
        "target_modules": _targets(model),
        "merged": options["merge_adapter"],
        "base": "base",
    }
    model.peft_config["default"].base_model_name_or_path = "base"
    adapter_dir = out / "adapter" if options["merge_adapter"] else out
    model.save_pretrained(adapter_dir, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if options["merge_adapter"]:
        # merge into a 16/32-bit copy of the base (a 4-bit base would lose precision)
        from peft import PeftModel

        base = load_base(model_dir, "full", torch.device("cpu"))
        merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
        merged.save_pretrained(out, safe_serialization=True)
        facts["base"] = None
    (out / "aidp_adapter.json").write_text(json.dumps(facts, indent=2))
    return facts
