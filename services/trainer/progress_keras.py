"""aidp_progress_keras: the Keras 3 side of ``aidp_progress`` (see its module docstring).

Standard library only at import (keras is imported when a callback is made). The trainer
stages this file beside ``aidp_progress.py`` as ``aidp_progress_keras.py``; scripts keep
calling ``aidp_progress.keras_callback()``, which imports it then — a script that never
uses Keras never loads it, and a node without Keras never needs it.

:func:`keras_callback` reports every batch (throttled), writes checkpoints (the model's
weights with the optimizer's state, ``checkpoint.weights.h5``) at the end of an epoch once
``checkpoint_every`` steps have passed since the last one, and on a resumed attempt loads
the latest one and continues ``fit`` at the epoch after it (Keras resumes at epoch
boundaries, as its ``BackupAndRestore`` does; no step is trained twice).

The callback's logic is :class:`KerasProgress`, a plain class defined here (so each hook is
a function of its own); :func:`keras_callback` mixes it into ``keras.callbacks.Callback``
once keras is imported.
"""

from __future__ import annotations

import json
from typing import Any

try:  # on a node: staged beside this file
    import aidp_progress as aidp  # type: ignore[import-not-found]
except ImportError:  # in the repository
    from services.trainer import progress_client as aidp

__all__ = ["KERAS_STATE", "KERAS_WEIGHTS", "KerasProgress", "keras_callback"]

#: A Keras checkpoint's files: the weights (with the optimizer's variables) and the step.
KERAS_WEIGHTS = "checkpoint.weights.h5"
KERAS_STATE = "state.json"


def _numbers(logs: dict[str, Any]) -> dict[str, float]:
    """Keras logs as floats (the loss left out: it is reported on its own)."""
    out = {}
    for key, value in logs.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    out.pop("loss", None)
    return out


def _learning_rate(model: Any) -> float | None:
    """The optimizer's current learning rate (a variable, or a schedule's value), if any."""
    optimizer = getattr(model, "optimizer", None)
    try:
        rate = optimizer.learning_rate  # type: ignore[union-attr]
        if callable(rate):
            rate = rate(optimizer.iterations)  # type: ignore[union-attr]
        return float(rate)
    except (AttributeError, TypeError, ValueError):
        return None


def _loss(logs: dict[str, Any]) -> float | None:
    loss = logs.get("loss")
    return None if loss is None else float(loss)


class KerasProgress:
    """The hooks of the aidp Keras callback; mixed into ``keras.callbacks.Callback``, which
    provides ``model`` and ``params`` (see :func:`keras_callback`)."""

    model: Any
    params: Any

    def __init__(self, *, every: int, samples_per_step: int | None) -> None:
        super().__init__()
        self.every = every
        self.samples_per_step = samples_per_step
        self.reporter: aidp.Reporter | None = None
        self.steps_per_epoch = 0
        self.step = 0
        self.epoch = 0
        self.epoch_base = 0
        self.last_checkpoint = 0
        self.resumed_from: int | None = None

    def _restore(self) -> int:
        """Load the resumed checkpoint into the model; the epochs it finished."""
        path = aidp.resume_dir()
        if path is None or not (path / KERAS_STATE).exists():
            return 0
        state = json.loads((path / KERAS_STATE).read_text())
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)  # its variables load too
        self.model.load_weights(str(path / KERAS_WEIGHTS))
        self.resumed_from = int(state["step"])
        return int(state["epoch"])

    def on_train_begin(self, logs: Any = None) -> None:
        params = self.params or {}
        self.steps_per_epoch = int(params.get("steps") or 0)
        epochs = int(params.get("epochs") or 1)
        total = self.steps_per_epoch * epochs if self.steps_per_epoch else None
        done_epochs = self._restore()
        if done_epochs:
            self.model._initial_epoch = done_epochs  # what BackupAndRestore sets
        self.step = self.last_checkpoint = self.resumed_from or 0
        self.reporter = aidp.Reporter(
            total_steps=total, samples_per_step=self.samples_per_step, start_step=self.step
        )

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.epoch = epoch
        if self.steps_per_epoch:
            self.step = epoch * self.steps_per_epoch
        self.epoch_base = self.step

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        # from the batch index, not a count of calls: with steps_per_execution > 1
        # Keras calls back once per execution
        self.step = self.epoch_base + int(batch) + 1
        logs = logs or {}
        if self.reporter is None:
            return
        epoch = self.step / self.steps_per_epoch if self.steps_per_epoch else float(self.epoch)
        self.reporter.step(
            self.step,
            loss=_loss(logs),
            epoch=epoch,
            learning_rate=_learning_rate(self.model),
            metrics=_numbers(logs),
        )

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self.reporter is not None and logs:  # the epoch's validation metrics too
            self.reporter.step(
                self.step,
                loss=_loss(logs),
                epoch=float(epoch + 1),
                learning_rate=_learning_rate(self.model),
                metrics=_numbers(logs),
                samples=0,
                force=True,
            )
        last_epoch = epoch + 1 >= int((self.params or {}).get("epochs") or 1)
        if self.step - self.last_checkpoint >= self.every and not last_epoch:
            self._save(epoch + 1)

    def _save(self, epochs_done: int) -> None:
        """Write the checkpoint of this step (beside it first: a crash leaves no half of
        one under its final name) and tell the trainer."""
        if not aidp.is_main_process():
            return
        final = aidp.checkpoint_dir(self.step)
        tmp = final.with_name(final.name + ".tmp")
        if tmp.exists():
            for leftover in tmp.iterdir():
                leftover.unlink()
        tmp.mkdir(parents=True, exist_ok=True)
        self.model.save_weights(str(tmp / KERAS_WEIGHTS))
        (tmp / KERAS_STATE).write_text(json.dumps({"step": self.step, "epoch": epochs_done}))
        for old in final.iterdir():
            old.unlink()
        final.rmdir()
        tmp.rename(final)
        self.last_checkpoint = self.step
        aidp.checkpoint_saved(self.step, final)


def keras_callback(
    *, checkpoint_every: int | None = None, samples_per_step: int | None = None
) -> Any:
    """A ``keras.callbacks.Callback``: live progress, checkpoints and resume (needs keras).

    See ``aidp_progress.keras_callback``, which calls this.
    """
    import keras

    every = checkpoint_every or aidp.checkpoint_every()
    callback = type("AidpKerasCallback", (KerasProgress, keras.callbacks.Callback), {})
    return callback(every=every, samples_per_step=samples_per_step)
