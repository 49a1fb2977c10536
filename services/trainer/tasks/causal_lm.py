"""Built-in task ``causal-lm``: fine-tune a causal language model on a text column.

``train.method`` lora/qlora trains peft adapters on a frozen base (``_lora.py``).
Data: CSV/TSV/JSON-lines (or Parquet with pyarrow) or ``.txt`` files; the text column is
``text`` (``train.args.text_column``). Texts are tokenized, joined with EOS and cut into
blocks of ``max_length`` tokens; labels are the inputs (the model shifts them).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _lora  # noqa: E402
import aidp_progress as aidp  # noqa: E402
import torch  # noqa: E402
from _common import (  # noqa: E402
    Distributed,
    TrainConfig,
    batched_eval,
    find_files,
    finish,
    read_table,
    run_training,
    split_rows,
)


def load_texts(root: Path, cfg: TrainConfig) -> list[str]:
    texts: list[str] = []
    for f in find_files(root, (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt")):
        if f.suffix == ".txt":
            texts += [line for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            texts += [str(r[cfg.text_column]) for r in read_table(f) if r.get(cfg.text_column)]
    if not texts:
        raise SystemExit(f"no text found (column {cfg.text_column!r}) in the dataset")
    return texts


def blocks(tokenizer: Any, texts: list[str], size: int) -> dict[str, torch.Tensor]:
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text, add_special_tokens=False)["input_ids"] + (
            [eos] if eos is not None else []
        )
    size = max(2, min(size, len(ids)))
    n = len(ids) // size
    data = torch.tensor(ids[: n * size]).view(n, size)
    return {"input_ids": data, "labels": data.clone()}


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = TrainConfig.from_env()
    ctx = Distributed()
    train_texts, eval_texts = split_rows(
        load_texts(aidp.data_dir(), cfg), cfg.eval_fraction, cfg.seed
    )
    tokenizer = AutoTokenizer.from_pretrained(
        aidp.model_dir(), trust_remote_code=False, local_files_only=True
    )
    method = _lora.resolve_method(aidp.model_dir())
    options = _lora.lora_options(aidp.train_args())
    if method == "full":
        model = AutoModelForCausalLM.from_pretrained(
            aidp.model_dir(), use_safetensors=True, trust_remote_code=False, local_files_only=True
        )
    else:
        base = _lora.load_base(aidp.model_dir(), method, ctx.device)
        model = _lora.wrap(base, method, options)
    train = blocks(tokenizer, train_texts, cfg.max_length)
    evals = blocks(tokenizer, eval_texts, cfg.max_length) if eval_texts else {}

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        data = evals or {k: v[:64] for k, v in train.items()}
        _, loss = batched_eval(m, data, ctx.device, batch_size=8)
        prefix = "eval" if evals else "train"
        return {f"{prefix}_loss_final": loss, f"{prefix}_perplexity": math.exp(min(loss, 50.0))}

    metrics = run_training(
        model=model, data=train, cfg=cfg, ctx=ctx, evaluate=evaluate, eval_split=bool(evals)
    )
    if method == "full":
        finish(model, ctx, metrics, tokenizer)
        return
    if ctx.main:  # LoRA: the adapter (or the merged model), see _lora.py
        inner = getattr(model, "module", model)
        _lora.save_model(
            inner, tokenizer, aidp.output_dir(), method=method, options=options,
            model_dir=aidp.model_dir(),
        )  # fmt: skip
        aidp.completed(metrics)
    ctx.barrier()
    ctx.close()


if __name__ == "__main__":
    main()
