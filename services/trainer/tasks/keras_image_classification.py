"""Built-in task ``image-classification``, Keras 3 variant (``environment.framework: tensorflow``).

Data as the PyTorch template reads it: a folder per class (``<class>/<image>``) or a
``metadata.csv`` (``file_name``, ``label``; files inside the dataset only). Images are
decoded by TensorFlow (PNG, JPEG, BMP, GIF) or read from ``.npy``, and resized to the base
model's ``image_size`` (its ``config.json``; 64 when it names none). The model is a small
convolutional network trained from scratch with ``model.fit`` (a PyTorch base model's
weights do not load into Keras); it takes pixels 0–255 of shape ``(size, size, 3)``, so a
deployment is sent each image as a JSON array of that shape.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aidp_progress as aidp  # noqa: E402
from _keras_common import KerasConfig, fit, read_table, split_rows  # noqa: E402

IMAGES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".npy")


def list_examples(root: Path) -> list[tuple[Path, str]]:
    """(image, class) pairs of the dataset folder."""
    base = root.resolve()
    meta = next(iter(sorted(root.rglob("metadata.csv"))), None)
    if meta is not None:
        pairs = []
        for row in read_table(meta):
            path = (meta.parent / str(row["file_name"])).resolve()
            if not path.is_relative_to(base):
                raise SystemExit(f"metadata.csv names a file outside the dataset: {path}")
            pairs.append((path, str(row["label"])))
        return pairs
    return [
        (p, p.parent.name)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix.lower() in IMAGES and p.parent != root
    ]


def image_size(model_dir: Path) -> int:
    """The base model's ``image_size`` (config.json), else 64."""
    try:
        config = json.loads((model_dir / "config.json").read_text())
        return int(config.get("image_size") or 64)
    except (OSError, ValueError, TypeError):
        return 64


def load_images(paths: list[Path], size: int) -> Any:
    """float32 pixels (n, size, size, 3) in 0–255."""
    import numpy as np
    import tensorflow as tf

    out = []
    for path in paths:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
            image = tf.convert_to_tensor(arr if arr.ndim == 3 else arr[..., None])
        else:
            data = tf.io.read_file(str(path))
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
        if image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        out.append(tf.image.resize(tf.cast(image, "float32"), (size, size)).numpy())
    return np.stack(out).astype("float32")


def main() -> None:
    import keras
    import numpy as np

    cfg = KerasConfig.from_env()
    keras.utils.set_random_seed(cfg.seed)
    examples = list_examples(aidp.data_dir())
    if not examples:
        raise SystemExit("no images found: use one folder per class or a metadata.csv")
    train, held = split_rows(examples, cfg.eval_fraction, cfg.seed)
    labels = sorted({label for _, label in examples})
    size = image_size(aidp.model_dir())
    x = load_images([p for p, _ in train], size)
    y = np.array([labels.index(label) for _, label in train], "int32")
    inputs = keras.Input(shape=(size, size, 3), dtype="float32")
    h = keras.layers.Rescaling(1.0 / 255)(inputs)
    h = keras.layers.Conv2D(16, 3, activation="relu", padding="same")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(32, 3, activation="relu", padding="same")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(len(labels), activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    metrics = fit(model, x, y, cfg)
    if held:
        ex = load_images([p for p, _ in held], size)
        ey = np.array([labels.index(label) for _, label in held], "int32")
        loss, accuracy = model.evaluate(ex, ey, verbose=0, batch_size=64)
        metrics.update(eval_loss=float(loss), eval_accuracy=float(accuracy))
    aidp.keras_save(model, labels=labels, image_size=size)
    aidp.completed(metrics)


if __name__ == "__main__":
    main()
