"""Built-in task ``text-classification``, Keras 3 variant (``environment.framework: tensorflow``).

Data as the PyTorch template reads it (CSV/TSV/JSON-lines/Parquet, ``text`` and ``label``
columns, a ``test``/``validation``… file or ``eval_fraction`` for evaluation). The base
model contributes its tokenizer and its word embeddings (``model.safetensors``, read with
``safetensors.numpy``; a random start when it has none the template can use); the Keras
model is embeddings → masked mean → dense softmax, trained with ``model.fit``. The output
folder holds ``model.keras``, the tokenizer and ``aidp_serving.json`` (labels,
``max_length``), which the Keras serving engine reads.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aidp_progress as aidp  # noqa: E402
from _keras_common import KerasConfig, find_files, fit, read_table, split_rows  # noqa: E402

TABLES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
EVAL_NAMES = ("test", "validation", "valid", "eval", "dev")
EMBEDDING_KEYS = ("word_embeddings.weight", "embed_tokens.weight", "wte.weight")


def load_rows(root: Path, cfg: KerasConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and eval rows from the dataset folder."""
    files = [f for f in find_files(root, TABLES) if f.name != "dataset_infos.json"]
    if not files:
        raise SystemExit(f"no data file ({', '.join(TABLES)}) in the dataset")
    evals = [f for f in files if any(f.stem.lower().startswith(n) for n in EVAL_NAMES)]
    trains = [f for f in files if f not in evals] or evals
    rows = [r for f in trains for r in read_table(f)]
    if evals and trains is not evals:
        return rows, [r for f in evals for r in read_table(f)]
    return split_rows(rows, cfg.eval_fraction, cfg.seed)


def base_embeddings(model_dir: Path) -> Any:
    """The base model's word-embedding matrix (numpy), or None."""
    try:
        from safetensors.numpy import load_file
    except ImportError:
        return None
    for path in sorted(model_dir.glob("*.safetensors")):
        try:
            tensors = load_file(str(path))
        except (ValueError, TypeError, OSError):  # e.g. bfloat16, which numpy lacks
            continue
        for key, value in tensors.items():
            if key.endswith(EMBEDDING_KEYS) and value.ndim == 2:
                return value.astype("float32")
    return None


def main() -> None:
    import keras
    import numpy as np
    from transformers import AutoTokenizer

    cfg = KerasConfig.from_env()
    keras.utils.set_random_seed(cfg.seed)
    train_rows, eval_rows = load_rows(aidp.data_dir(), cfg)
    for row in train_rows[:1]:
        for column in (cfg.text_column, cfg.label_column):
            if column not in row:
                raise SystemExit(f"column {column!r} not in the dataset ({', '.join(row)})")
    labels = sorted({str(r[cfg.label_column]) for r in train_rows + eval_rows})
    tokenizer = AutoTokenizer.from_pretrained(
        str(aidp.model_dir()), trust_remote_code=False, local_files_only=True
    )

    def encode(rows: list[dict[str, Any]]) -> tuple[Any, Any]:
        enc = tokenizer(
            [str(r[cfg.text_column]) for r in rows],
            truncation=True,
            padding="max_length",
            max_length=cfg.max_length,
            return_tensors="np",
        )
        ids = enc["input_ids"].astype("int32")
        return ids, np.array([labels.index(str(r[cfg.label_column])) for r in rows], "int32")

    x, y = encode(train_rows)
    matrix = base_embeddings(aidp.model_dir())
    vocab = max(len(tokenizer), matrix.shape[0] if matrix is not None else 0)
    dim = matrix.shape[1] if matrix is not None else 64
    embedding = keras.layers.Embedding(vocab, dim, mask_zero=tokenizer.pad_token_id == 0)
    inputs = keras.Input(shape=(cfg.max_length,), dtype="int32")
    pooled = keras.layers.GlobalAveragePooling1D()(embedding(inputs))
    outputs = keras.layers.Dense(len(labels), activation="softmax")(pooled)
    model = keras.Model(inputs, outputs)
    if matrix is not None:
        weights = np.random.default_rng(cfg.seed).normal(0, 0.02, (vocab, dim)).astype("float32")
        weights[: matrix.shape[0]] = matrix
        embedding.set_weights([weights])
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    metrics = fit(model, x, y, cfg)
    if eval_rows:
        ex, ey = encode(eval_rows)
        loss, accuracy = model.evaluate(ex, ey, verbose=0, batch_size=64)
        metrics.update(eval_loss=float(loss), eval_accuracy=float(accuracy))
    aidp.keras_save(model, labels=labels, max_length=cfg.max_length)
    if aidp.is_main_process():
        tokenizer.save_pretrained(str(aidp.output_dir()))
    aidp.completed(metrics)


if __name__ == "__main__":
    main()
