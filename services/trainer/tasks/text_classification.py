"""Built-in task ``text-classification``: an encoder + classification head.

Data: CSV/TSV/JSON-lines (or Parquet with pyarrow) with a text column (``text`` by
default, ``train.args.text_column``) and a label column (``label``). A file named
``test``/``validation``/``eval``… is the evaluation split; otherwise ``eval_fraction``
of the rows. Labels are mapped to ids (sorted); names are kept in the model config.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aidp_progress as aidp  # noqa: E402
import torch  # noqa: E402
from _common import (  # noqa: E402
    Distributed,
    TrainConfig,
    batched_eval,
    find_files,
    finish,
    macro_f1,
    read_table,
    run_training,
    split_rows,
)

TABLES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
EVAL_NAMES = ("test", "validation", "valid", "eval", "dev")


def load_rows(root: Path, cfg: TrainConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and eval rows from the dataset folder."""
    files = [f for f in find_files(root, TABLES) if f.name not in ("dataset_infos.json",)]
    if not files:
        raise SystemExit(f"no data file ({', '.join(TABLES)}) in the dataset")
    evals = [f for f in files if any(f.stem.lower().startswith(n) for n in EVAL_NAMES)]
    trains = [f for f in files if f not in evals]
    train_rows = [row for f in trains or files for row in read_table(f)]
    eval_rows = [row for f in evals for row in read_table(f)] if trains else []
    for column in (cfg.text_column, cfg.label_column):
        if train_rows and column not in train_rows[0]:
            raise SystemExit(
                f"column {column!r} not in the dataset (has {sorted(train_rows[0])}); "
                f"set train.args.text_column / label_column"
            )
    if not eval_rows:
        train_rows, eval_rows = split_rows(train_rows, cfg.eval_fraction, cfg.seed)
    return train_rows, eval_rows


def label_ids(rows: list[dict[str, Any]], column: str) -> dict[str, int]:
    """Label name -> id: integers keep their value order, strings are sorted."""
    names = {str(row[column]).strip() for row in rows}
    if all(n.lstrip("-").isdigit() for n in names):
        return {n: i for i, n in enumerate(sorted(names, key=int))}
    return {n: i for i, n in enumerate(sorted(names))}


def encode(
    tokenizer: Any, rows: list[dict[str, Any]], labels: dict[str, int], cfg: TrainConfig
) -> dict[str, torch.Tensor]:
    enc = tokenizer(
        [str(row[cfg.text_column]) for row in rows],
        truncation=True,
        max_length=cfg.max_length,
        padding="longest",
        return_tensors="pt",
    )
    data = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    data["labels"] = torch.tensor([labels[str(row[cfg.label_column]).strip()] for row in rows])
    return data


def build(cfg: TrainConfig) -> tuple[Any, Any, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Tokenizer, model, train tensors and eval tensors (safetensors, no remote code)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    train_rows, eval_rows = load_rows(aidp.data_dir(), cfg)
    labels = label_ids(train_rows + eval_rows, cfg.label_column)
    eval_rows = [r for r in eval_rows if str(r[cfg.label_column]).strip() in labels]
    tokenizer = AutoTokenizer.from_pretrained(
        aidp.model_dir(), trust_remote_code=False, local_files_only=True
    )
    model = AutoModelForSequenceClassification.from_pretrained(
        aidp.model_dir(),
        num_labels=len(labels),
        id2label={i: n for n, i in labels.items()},
        label2id=labels,
        ignore_mismatched_sizes=True,
        use_safetensors=True,
        trust_remote_code=False,
        local_files_only=True,
    )
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    train = encode(tokenizer, train_rows, labels, cfg)
    evals = encode(tokenizer, eval_rows, labels, cfg) if eval_rows else {}
    return tokenizer, model, train, evals


def main(overrides: dict[str, Any] | None = None, *, report: bool = True) -> dict[str, float]:
    cfg = TrainConfig.from_env(overrides)
    ctx = Distributed()
    tokenizer, model, train, evals = build(cfg)

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        data = evals or {k: v[:512] for k, v in train.items()}
        logits, loss = batched_eval(m, data, ctx.device)
        predicted = logits.argmax(-1)
        acc = float((predicted == data["labels"]).float().mean())
        prefix = "eval" if evals else "train"
        return {
            f"{prefix}_accuracy": acc,
            f"{prefix}_f1": macro_f1(predicted, data["labels"]),
            f"{prefix}_loss_final": loss,
        }

    metrics = run_training(
        model=model,
        data=train,
        cfg=cfg,
        ctx=ctx,
        evaluate=evaluate,
        report=report,
        eval_split=bool(evals),
    )
    if report:
        finish(model, ctx, metrics, tokenizer)
    else:
        ctx.close()
    return metrics


if __name__ == "__main__":
    main()
