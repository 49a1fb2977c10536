"""What the Keras 3 templates share (``environment.framework: tensorflow``; no torch).

Arguments are the built-in tasks' ``train.args`` (``epochs``, ``batch_size``,
``learning_rate``, ``max_steps``, ``seed``, ``eval_fraction``, ``text_column``,
``label_column``, ``max_length``). Training goes through ``model.fit`` with
``aidp_progress.keras_callback`` (live progress, checkpoints at epoch ends, resume).
``max_steps`` (> 0) is met exactly: the epoch length is the largest divisor of it that is
at most one pass over the data, and the data repeats.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import aidp_progress as aidp  # noqa: E402

__all__ = ["KerasConfig", "fit", "find_files", "read_table", "split_rows"]


@dataclass
class KerasConfig:
    """``train.args`` the Keras templates read (unknown keys are ignored)."""

    epochs: float = 1.0
    learning_rate: float = 1e-3
    batch_size: int = 8
    max_steps: int = -1
    seed: int = 42
    eval_fraction: float = 0.0
    text_column: str = "text"
    label_column: str = "label"
    max_length: int = 128

    @classmethod
    def from_env(cls) -> KerasConfig:
        known = {f.name for f in fields(cls)}
        values = {}
        for name, value in aidp.train_args().items():
            if name in known and value is not None:
                values[name] = type(getattr(cls, name))(value)
        return cls(**values)


def find_files(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Files under ``root`` with one of ``suffixes``, sorted, hidden folders skipped."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV/TSV, JSON-lines, JSON-array or (with pyarrow) Parquet file."""
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
    import random

    if fraction <= 0 or len(rows) < 2:
        return rows, []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, int(len(rows) * fraction))
    return [rows[i] for i in order[n_eval:]], [rows[i] for i in order[:n_eval]]


def _schedule(n_rows: int, cfg: KerasConfig) -> tuple[int, int]:
    """(steps per epoch, epochs) for ``n_rows`` examples."""
    natural = max(1, math.ceil(n_rows / cfg.batch_size))
    if cfg.max_steps > 0:
        per_epoch = max(
            d for d in range(1, min(natural, cfg.max_steps) + 1) if cfg.max_steps % d == 0
        )
        return per_epoch, cfg.max_steps // per_epoch
    return natural, max(1, math.ceil(cfg.epochs))


def fit(model: Any, x: Any, y: Any, cfg: KerasConfig) -> dict[str, float]:
    """Train ``model`` (compiled) on ``x``/``y`` with aidp progress, checkpoints and resume."""
    import tensorflow as tf

    n_rows = int(len(y))
    per_epoch, epochs = _schedule(n_rows, cfg)
    data = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(n_rows, seed=cfg.seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(cfg.batch_size)
    )
    history = model.fit(
        data,
        epochs=epochs,
        steps_per_epoch=per_epoch,
        shuffle=False,  # the dataset shuffles itself
        verbose=0,
        callbacks=[aidp.keras_callback(samples_per_step=cfg.batch_size)],
    )
    return {f"train_{k}": float(v[-1]) for k, v in (history.history or {}).items() if v}
