"""Serving a Keras 3 / TensorFlow export (``environment.framework: tensorflow``).

Staged on the node beside ``server.py`` as ``serving_keras_engine.py``; the server uses it
when the model folder holds ``model.keras`` (a Keras 3 archive, loaded with
``safe_mode=True``: no lambda layers or arbitrary code from the file) or ``saved_model.pb``
(a SavedModel, e.g. from ``model.export()``; its ``serving_default`` signature is called).

Inputs are what the Open Inference v2 BYTES tensor / ``/predict`` list carries:

- a model whose first input is a string tensor (a ``TextVectorization`` inside the model)
  gets the texts as they are;
- a folder with a tokenizer (``tokenizer.json`` / ``tokenizer_config.json``, as the Keras
  text-classification template saves) gets token ids (``max_length`` from
  ``aidp_serving.json``, default 128);
- otherwise each input is a JSON array of numbers (an image, a feature vector).

Outputs: a vector per input is taken as class scores (softmax applied unless they already
are probabilities), one value as a sigmoid score; the label is the class's name from
``aidp_serving.json`` (``{"labels": [...]}``, written by ``aidp_progress.keras_save``) or
its index.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

__all__ = ["META_FILE", "KerasModel", "is_keras_model"]

META_FILE = "aidp_serving.json"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def is_keras_model(model_dir: str) -> bool:
    """Does ``model_dir`` hold a Keras archive or a SavedModel?"""
    root = Path(model_dir)
    return (root / "model.keras").is_file() or (root / "saved_model.pb").is_file()


class KerasModel:
    """A loaded Keras / SavedModel export; ``predict`` is serialised by a lock."""

    platform = "tensorflow"
    engine = None  # no OpenAI API for these models

    def __init__(self, model_dir: str, task: str) -> None:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import numpy as np

        self.np = np
        self.task = task
        self.lock = threading.Lock()
        root = Path(model_dir)
        meta_path = root / META_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        labels = meta.get("labels") if isinstance(meta, dict) else None
        self.labels = [str(x) for x in labels] if isinstance(labels, list) else None
        self.max_length = int(meta.get("max_length") or 128) if isinstance(meta, dict) else 128
        self.tokenizer = None
        if any((root / name).is_file() for name in _TOKENIZER_FILES):
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(
                model_dir, trust_remote_code=False, local_files_only=True
            )
        self.signature = None
        if (root / "model.keras").is_file():
            import keras

            self.model = keras.saving.load_model(
                str(root / "model.keras"), compile=False, safe_mode=True
            )
            first = self.model.inputs[0]
            self.string_input = "string" in str(first.dtype)
            self.input_rank = len(first.shape)
        else:
            import tensorflow as tf

            loaded = tf.saved_model.load(model_dir)
            self.model = loaded  # keeps its variables alive
            self.signature = loaded.signatures["serving_default"]
            spec = next(iter(self.signature.structured_input_signature[1].values()))
            self.string_input = spec.dtype == tf.string
            self.input_rank = len(spec.shape)

    def _batch(self, inputs: list[str]) -> Any:
        np = self.np
        if self.string_input:
            texts = np.array(inputs, dtype=object)
            return texts.reshape(-1, 1) if self.input_rank == 2 else texts
        if self.tokenizer is not None:
            enc = self.tokenizer(
                inputs,
                truncation=True,
                padding="max_length",
                max_length=self.max_length,
                return_tensors="np",
            )
            return enc["input_ids"].astype("int32")
        rows = []
        for text in inputs:
            try:
                rows.append(json.loads(text))
            except ValueError:
                raise ValueError(
                    "this model takes numbers: each input must be a JSON array of numbers"
                ) from None
        try:
            return np.asarray(rows, dtype="float32")
        except (TypeError, ValueError):
            raise ValueError("inputs must be equally shaped arrays of numbers") from None

    def _scores(self, batch: Any) -> Any:
        if self.signature is None:
            return self.np.asarray(self.model.predict_on_batch(batch))
        import tensorflow as tf

        out = self.signature(tf.constant(batch))
        return next(iter(out.values())).numpy()

    def predict(self, inputs: list[str]) -> list[dict[str, Any]]:
        np = self.np
        with self.lock:
            raw = self._scores(self._batch(inputs))
        scores = np.asarray(raw, dtype="float64").reshape(len(inputs), -1)
        results = []
        for row in scores:
            if row.size == 1:  # one sigmoid unit: class 1's probability
                p = float(row[0])
                if not 0.0 <= p <= 1.0:
                    p = float(1.0 / (1.0 + np.exp(-p)))
                index, score = (1, p) if p >= 0.5 else (0, 1.0 - p)
            else:
                if not (np.all(row >= 0) and abs(float(row.sum()) - 1.0) < 1e-3):
                    row = np.exp(row - row.max())
                    row = row / row.sum()
                index = int(row.argmax())
                score = float(row[index])
            label = self.labels[index] if self.labels and index < len(self.labels) else index
            results.append({"label": str(label), "score": score})
        return results
