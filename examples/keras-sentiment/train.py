"""A Keras 3 sentiment classifier trained by aidp (environment.framework: tensorflow).

Reads the dataset's CSV files (``text``, ``label`` columns), learns a bag-of-words model
with the vocabulary inside it (it takes raw strings, so the deployment needs nothing
else), reports live progress and checkpoints through ``aidp_progress.keras_callback`` and
resumes from the latest checkpoint after an interruption.
"""

import csv

import aidp_progress as aidp
import keras
import numpy as np
import tensorflow as tf

args = aidp.train_args()
rows = []
for path in sorted(aidp.data_dir().rglob("*.csv")):
    with path.open(newline="", encoding="utf-8") as fh:
        rows += list(csv.DictReader(fh))
labels = sorted({r["label"] for r in rows})
texts = tf.constant([[r["text"]] for r in rows])  # (examples, 1) strings
y = np.array([labels.index(r["label"]) for r in rows], dtype="int32")

keras.utils.set_random_seed(int(args.get("seed", 0)))
vectorize = keras.layers.TextVectorization(max_tokens=2000, output_mode="tf_idf")
vectorize.adapt(tf.reshape(texts, [-1]))
inputs = keras.Input(shape=(1,), dtype="string")
hidden = keras.layers.Dense(16, activation="relu")(vectorize(keras.ops.squeeze(inputs, -1)))
outputs = keras.layers.Dense(len(labels), activation="softmax")(hidden)
model = keras.Model(inputs, outputs)
model.compile(
    optimizer=keras.optimizers.Adam(float(args.get("learning_rate", 0.01))),
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy"],
)
history = model.fit(
    texts,
    y,
    epochs=int(args.get("epochs", 5)),
    batch_size=int(args.get("batch_size", 8)),
    shuffle=True,
    verbose=0,
    callbacks=[aidp.keras_callback(samples_per_step=int(args.get("batch_size", 8)))],
)
aidp.keras_save(model, labels=labels)
aidp.completed({k: float(v[-1]) for k, v in history.history.items()} if history.history else {})
