"""The training loop shared by the built-in tasks (runs on the node under torchrun).

Needs only torch, transformers and safetensors (+ ``aidp_progress``, copied next to it).
Each task builds a model and a dict of equally long tensors (one row per example); this
module shards, batches, trains with AdamW and transformers' linear schedule with warm-up
(``get_linear_schedule_with_warmup``), reports progress from rank 0, writes resumable
checkpoints (weights as safetensors, optimizer and schedule state loaded with
``weights_only=True``) and resumes from ``AIDP_RESUME_DIR``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import aidp_progress as aidp
import torch
import torch.distributed as dist
from safetensors.torch import load_model, save_model
from transformers import get_linear_schedule_with_warmup

__all__ = [
    "Distributed",
    "TrainConfig",
    "find_files",
    "macro_f1",
    "read_table",
    "run_training",
]

Batch = dict[str, torch.Tensor]

#: Steps (at most a fifth of the run) left out of ``train_steady_samples_per_second``.
WARMUP_STEPS = 10


@dataclass
class TrainConfig:
    """``train.args`` understood by the built-in tasks (unknown keys are ignored)."""

    epochs: float = 1.0
    learning_rate: float = 5e-5
    batch_size: int = 8
    max_steps: int = -1
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_length: int = 128
    seed: int = 42
    eval_fraction: float = 0.0
    #: evaluate every N steps during training (0: at each epoch's end when the data has an
    #: evaluation split; never on the training rows alone)
    eval_every: int = 0
    text_column: str = "text"
    label_column: str = "label"
    num_threads: int = 0
    checkpoint_every: int = 50

    @classmethod
    def from_env(cls, overrides: dict[str, Any] | None = None) -> TrainConfig:
        args = {**aidp.train_args(), **(overrides or {})}
        args.setdefault("checkpoint_every", aidp.checkpoint_every())
        known = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, value in args.items():
            if name not in known or value is None:
                continue
            default = getattr(cls, name)
            values[name] = type(default)(value)
        return cls(**values)


class Distributed:
    """Rank, world size and device of this process; initialises the process group."""

    def __init__(self) -> None:
        self.rank = int(os.environ.get("RANK", 0))
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        want_cuda = os.environ.get("AIDP_ACCELERATOR", "cpu") == "cuda"
        if want_cuda and torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device("cpu")
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def find_files(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Files under ``root`` with one of ``suffixes``, sorted, hidden folders skipped."""
    found = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(found)


def read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV/TSV, JSON-lines, JSON-array or (with pyarrow) Parquet file."""
    import csv

    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ","))
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, list) else data.get("data", [])
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise SystemExit("parquet datasets need pyarrow in environment.packages") from exc
        return pq.read_table(path).to_pylist()  # type: ignore[no-any-return]
    raise SystemExit(f"unsupported data file {path.name}")


def split_rows(rows: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """Deterministic train/eval split; no eval rows when ``fraction`` is 0."""
    if fraction <= 0 or len(rows) < 2:
        return rows, []
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    n_eval = max(1, int(len(rows) * fraction))
    return [rows[i] for i in order[n_eval:]], [rows[i] for i in order[:n_eval]]


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    inner = getattr(model, "module", model)
    return inner if isinstance(inner, torch.nn.Module) else model


def _save_checkpoint(model: torch.nn.Module, optimizer: Any, scheduler: Any, step: int) -> None:
    final = aidp.checkpoint_dir(step)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    inner = _unwrap(model)
    if hasattr(inner, "peft_config"):  # LoRA: only the adapter weights change
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        state = {k: v.contiguous() for k, v in get_peft_model_state_dict(inner).items()}
        save_file(state, str(tmp / "adapter.safetensors"))
    else:
        save_model(inner, str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step}))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    aidp.checkpoint_saved(step, final)


def _load_checkpoint(model: torch.nn.Module, optimizer: Any, scheduler: Any) -> int:
    path = aidp.resume_dir()
    if path is None or not (path / "state.json").exists():
        return 0
    inner = _unwrap(model)
    if (path / "adapter.safetensors").exists() and hasattr(inner, "peft_config"):
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        state = load_file(str(path / "adapter.safetensors"), device=str(_device_of(model)))
        set_peft_model_state_dict(inner, state)
    else:
        load_model(inner, str(path / "model.safetensors"), device=str(_device_of(model)))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    return int(json.loads((path / "state.json").read_text())["step"])


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def run_training(
    *,
    model: torch.nn.Module,
    data: Batch,
    cfg: TrainConfig,
    ctx: Distributed,
    evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
    report: bool = True,
    eval_split: bool = False,
) -> dict[str, float]:
    """Train ``model`` on ``data`` (tensors with one row per example); returns metrics.

    ``report=False`` disables progress and checkpoints (the benchmark's direct run).
    With ``evaluate``, rank 0 also evaluates during training (every ``cfg.eval_every``
    steps, or at each epoch's end when ``eval_split``: the data has an evaluation split)
    and reports the figures (``eval_loss``, ``eval_accuracy``…) in that step's progress.
    """
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    n_rows = len(next(iter(data.values())))
    rank_rows = len(range(ctx.rank, n_rows, ctx.world_size))
    steps_per_epoch = max(1, math.ceil(rank_rows / cfg.batch_size))
    total = cfg.max_steps if cfg.max_steps > 0 else max(1, math.ceil(cfg.epochs * steps_per_epoch))

    if not getattr(_unwrap(model), "hf_device_map", None):  # a 4-bit base is placed already
        model.to(ctx.device)
    if ctx.world_size > 1:
        ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in params if p.ndim >= 2]
    no_decay = [p for n, p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.learning_rate,
    )

    # linear warm-up from 0 over warmup_steps, then linear decay to 0 at the last step (the
    # schedule of transformers' Trainer and of the chat task); its state is a LambdaLR's
    scheduler = get_linear_schedule_with_warmup(optimizer, cfg.warmup_steps, total)
    start = _load_checkpoint(model, optimizer, scheduler) if report else 0
    reporter = aidp.Reporter(
        total_steps=total, samples_per_step=cfg.batch_size * ctx.world_size, start_step=start
    )
    model.train()
    step, losses, samples, began = start, [], 0, time.perf_counter()
    # the steady rate leaves out the first steps (allocator and kernel warm-up)
    warm_until = start + min(WARMUP_STEPS, (total - start) // 5)
    steady = (began, time.process_time(), 0)
    while step < total:
        epoch, offset = divmod(step, steps_per_epoch)
        order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(cfg.seed + epoch))
        mine = order[ctx.rank :: ctx.world_size]
        for b in range(offset, steps_per_epoch):
            idx = mine[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            batch = {k: v[idx].to(ctx.device, non_blocking=True) for k, v in data.items()}
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            samples += len(idx) * ctx.world_size
            if step == warm_until:
                steady = (time.perf_counter(), time.process_time(), samples)
            if report and ctx.main:
                loss_value = float(loss.detach())
                losses.append(loss_value)
                due = evaluate is not None and (
                    (cfg.eval_every > 0 and step % cfg.eval_every == 0)
                    or (cfg.eval_every <= 0 and eval_split and step % steps_per_epoch == 0)
                )
                figures = _evaluate_now(model, evaluate) if due and evaluate else None
                reporter.step(
                    step,
                    loss=loss_value,
                    epoch=step / steps_per_epoch,
                    learning_rate=scheduler.get_last_lr()[0],
                    samples=len(idx) * ctx.world_size,
                    metrics=figures,
                    force=figures is not None,
                )
                if step % cfg.checkpoint_every == 0 and step < total:
                    _save_checkpoint(model, optimizer, scheduler, step)
            elif not report:
                losses.append(float(loss.detach()))
            if step >= total:
                break
    ended, cpu_ended = time.perf_counter(), time.process_time()
    runtime = ended - began
    steady_wall = max(ended - steady[0], 1e-9)
    metrics = {
        "train_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
        "train_runtime": runtime,
        "train_samples_per_second": samples / max(runtime, 1e-9),
        "train_steady_samples_per_second": (samples - steady[2]) / steady_wall,
        # CPU seconds of this process per wall second after warm-up: below num_threads
        # means it waited for a core (a busy machine), the figure to judge a timing by
        "train_steady_cpu_per_second": (cpu_ended - steady[1]) / steady_wall,
        "steps": float(step),
    }
    if evaluate is not None and ctx.main:
        _unwrap(model).eval()
        with torch.no_grad():
            metrics.update(evaluate(_unwrap(model)))
    return metrics


def _evaluate_now(
    model: torch.nn.Module, evaluate: Callable[[torch.nn.Module], dict[str, float]]
) -> dict[str, float]:
    """Evaluation figures in the middle of training (``*_loss_final`` reported as
    ``*_loss``); the model goes back to training mode."""
    inner = _unwrap(model)
    inner.eval()
    try:
        with torch.no_grad():
            figures = evaluate(inner)
    finally:
        inner.train()
    return {k.removesuffix("_final"): float(v) for k, v in figures.items()}


def macro_f1(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    """Macro-averaged F1 over the classes present in ``labels`` or ``predicted``."""
    scores = []
    for c in torch.unique(torch.cat([predicted, labels])).tolist():
        tp = int(((predicted == c) & (labels == c)).sum())
        fp = int(((predicted == c) & (labels != c)).sum())
        fn = int(((predicted != c) & (labels == c)).sum())
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(scores) / max(1, len(scores))


def batched_eval(
    model: torch.nn.Module, data: Batch, device: torch.device, batch_size: int = 64
) -> tuple[torch.Tensor, float]:
    """Logits of ``model`` over ``data`` and the mean loss (labels in ``data``)."""
    n_rows = len(next(iter(data.values())))
    logits, loss_sum = [], 0.0
    for start in range(0, n_rows, batch_size):
        batch = {k: v[start : start + batch_size].to(device) for k, v in data.items()}
        out = model(**batch)
        logits.append(out.logits.float().cpu())
        loss_sum += float(out.loss) * len(batch["labels"])
    return torch.cat(logits), loss_sum / max(1, n_rows)


def finish(
    model: torch.nn.Module, ctx: Distributed, metrics: dict[str, float], *extra: Any
) -> None:
    """Rank 0 saves the model (safetensors) and ``extra`` (tokenizer...) and reports done."""
    if ctx.main:
        out = aidp.output_dir()
        inner: Any = _unwrap(model)
        inner.save_pretrained(out, safe_serialization=True)
        for item in extra:
            item.save_pretrained(out)
        aidp.completed(metrics)
    ctx.barrier()
    ctx.close()
