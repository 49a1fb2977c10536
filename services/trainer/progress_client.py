"""aidp_progress: report training progress to aidp from any training script.

Standard library only. The trainer copies this file next to the training script as
``aidp_progress.py`` (with its Keras callback, ``progress_keras.py``, as
``aidp_progress_keras.py``) and puts it on ``PYTHONPATH``, so a custom script does::

    import aidp_progress as aidp

    reporter = aidp.Reporter(total_steps=1000, samples_per_step=32)
    for step in range(aidp.resume_step() + 1, 1001):
        loss = train_one_step()
        reporter.step(step, loss=loss, epoch=step / steps_per_epoch, learning_rate=lr)
        if step % aidp.checkpoint_every() == 0:
            save_checkpoint(aidp.checkpoint_dir(step))   # write files there, then:
            aidp.checkpoint_saved(step)
    save_model(aidp.output_dir())
    aidp.completed({"accuracy": 0.91})

Keras 3 (``environment.framework: tensorflow``) needs one line::

    model.fit(x, y, epochs=5, batch_size=32, callbacks=[aidp.keras_callback()])
    aidp.keras_save(model, labels=["negative", "positive"])  # output_dir()/model.keras
    aidp.completed({"accuracy": 0.91})

:func:`keras_callback` reports every batch (throttled), writes checkpoints (the model's
weights with the optimizer's state, ``checkpoint.weights.h5``) at the end of an epoch once
``checkpoint_every`` steps have passed since the last one, and on a resumed attempt loads
the latest one and continues ``fit`` at the epoch after it (Keras resumes at epoch
boundaries, as its ``BackupAndRestore`` does; no step is trained twice).

Transport (the contract with the trainer): one line on stdout per message,
``@@aidp@@ <json object>``, written only by rank 0. Messages: ``progress`` (step,
total_steps, epoch, loss, learning_rate, metrics, samples_per_sec, eta_seconds),
``checkpoint`` (step, path relative to the workspace), ``completed`` (metrics), and
``heartbeat`` (no fields), which the first process of every node (``LOCAL_RANK`` 0) writes
from a daemon thread every ``AIDP_HEARTBEAT_SECONDS`` once this module is imported: a
node whose process sent heartbeats and then nothing at all for
``AIDP_TRAINER_NODE_TIMEOUT_SECONDS`` is taken for lost (the run resumes on a replacement
from its last checkpoint). stdout travels over SSH unchanged, so the same works on remote
nodes. All other output is relayed as logs.

Environment the trainer sets: ``AIDP_WORKSPACE``, ``AIDP_MODEL_DIR``, ``AIDP_DATA_DIR``,
``AIDP_OUTPUT_DIR``, ``AIDP_CHECKPOINT_ROOT``, ``AIDP_RESUME_DIR`` (only when resuming),
``AIDP_TRAIN_ARGS`` (JSON), ``AIDP_CHECKPOINT_EVERY``; ``RANK``/``WORLD_SIZE`` from torchrun.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = [
    "MARKER",
    "Reporter",
    "checkpoint_dir",
    "checkpoint_every",
    "checkpoint_saved",
    "completed",
    "data_dir",
    "emit",
    "is_main_process",
    "keras_callback",
    "keras_save",
    "model_dir",
    "output_dir",
    "report",
    "resume_dir",
    "resume_step",
    "train_args",
    "trainer_callback",
    "workspace",
]

MARKER = "@@aidp@@ "


def is_main_process() -> bool:
    """True on global rank 0 (or outside torchrun)."""
    return os.environ.get("RANK", "0") == "0"


def emit(message: dict[str, Any]) -> None:
    """Write one protocol line on stdout (rank 0 only) and flush it."""
    if not is_main_process():
        return
    line = MARKER + json.dumps(message, separators=(",", ":"), default=float)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _path(name: str, default: str) -> Path:
    return Path(os.environ.get(name) or default)


def workspace() -> Path:
    return _path("AIDP_WORKSPACE", ".")


def model_dir() -> Path:
    """The staged base model (config, tokenizer, safetensors)."""
    return _path("AIDP_MODEL_DIR", str(workspace() / "model"))


def data_dir() -> Path:
    """The staged dataset files."""
    return _path("AIDP_DATA_DIR", str(workspace() / "data"))


def output_dir() -> Path:
    """Where the final model goes; its files become the registered model version."""
    path = _path("AIDP_OUTPUT_DIR", str(workspace() / "output" / "model"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def train_args() -> dict[str, Any]:
    """``train.args`` of the project spec."""
    raw = os.environ.get("AIDP_TRAIN_ARGS") or "{}"
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}


def checkpoint_every() -> int:
    return max(1, int(os.environ.get("AIDP_CHECKPOINT_EVERY") or 50))


def resume_dir() -> Path | None:
    """The latest checkpoint's files when this attempt resumes, else None."""
    value = os.environ.get("AIDP_RESUME_DIR")
    return Path(value) if value else None


def resume_step() -> int:
    """The step of the checkpoint being resumed from (0 on a fresh start)."""
    return int(os.environ.get("AIDP_RESUME_STEP") or 0)


def checkpoint_dir(step: int) -> Path:
    """A fresh directory for the checkpoint of ``step``; call :func:`checkpoint_saved` after."""
    root = _path("AIDP_CHECKPOINT_ROOT", str(workspace() / "checkpoints"))
    path = root / f"step-{step}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoint_saved(step: int, path: Path | None = None) -> None:
    """Tell the trainer the checkpoint of ``step`` is complete (it is then stored encrypted)."""
    path = path or checkpoint_dir(step)
    try:
        rel = str(Path(path).resolve().relative_to(workspace().resolve()))
    except ValueError:
        rel = str(path)
    emit({"event": "checkpoint", "step": int(step), "path": rel})


def completed(metrics: dict[str, float] | None = None) -> None:
    """Tell the trainer training finished and :func:`output_dir` holds the model."""
    emit({"event": "completed", "metrics": {k: float(v) for k, v in (metrics or {}).items()}})


class Reporter:
    """Computes samples/s and ETA and emits ``progress`` messages, throttled.

    ``min_interval`` bounds the message rate; the final step (``step == total_steps``) and
    calls with ``force=True`` are always sent.
    """

    def __init__(
        self,
        *,
        total_steps: int | None = None,
        samples_per_step: int | None = None,
        min_interval: float = 0.2,
        start_step: int | None = None,
    ) -> None:
        self.total_steps = total_steps
        self.samples_per_step = samples_per_step
        self.min_interval = min_interval
        self._start_step = resume_step() if start_step is None else start_step
        self._started = time.monotonic()
        self._samples = 0
        self._last_sent = 0.0

    def step(
        self,
        step: int,
        *,
        loss: float | None = None,
        epoch: float | None = None,
        learning_rate: float | None = None,
        metrics: dict[str, float] | None = None,
        samples: int | None = None,
        force: bool = False,
    ) -> None:
        """Record that ``step`` finished (``samples`` processed in it, summed over ranks)."""
        self._samples += samples if samples is not None else (self.samples_per_step or 0)
        now = time.monotonic()
        last = self.total_steps is not None and step >= self.total_steps
        if not (force or last or now - self._last_sent >= self.min_interval):
            return
        self._last_sent = now
        elapsed = max(now - self._started, 1e-9)
        done = step - self._start_step
        rate = self._samples / elapsed if self._samples else None
        eta = None
        if self.total_steps is not None and done > 0:
            eta = max(0.0, (self.total_steps - step) * elapsed / done)
        emit(
            {
                "event": "progress",
                "step": int(step),
                "total_steps": self.total_steps,
                "epoch": None if epoch is None else float(epoch),
                "loss": None if loss is None else float(loss),
                "learning_rate": None if learning_rate is None else float(learning_rate),
                "metrics": {k: float(v) for k, v in (metrics or {}).items()},
                "samples_per_sec": rate,
                "eta_seconds": eta,
            }
        )


_default: Reporter | None = None


def report(step: int, *, total_steps: int | None = None, **fields: Any) -> None:
    """Module-level shortcut for one default :class:`Reporter`."""
    global _default
    if _default is None:
        _default = Reporter(total_steps=total_steps)
    if total_steps is not None:
        _default.total_steps = total_steps
    _default.step(step, **fields)


def trainer_callback(samples_per_step: int | None = None) -> Any:
    """A ``transformers.TrainerCallback`` reporting through this module (needs transformers)."""
    from transformers import TrainerCallback

    class AidpCallback(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.reporter: Reporter | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.reporter = Reporter(
                total_steps=state.max_steps or None,
                samples_per_step=samples_per_step
                or args.per_device_train_batch_size * max(1, args.world_size),
                start_step=state.global_step,
            )

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if self.reporter is None or not state.is_world_process_zero:
                return
            logs = logs or {}
            self.reporter.step(
                state.global_step,
                loss=logs.get("loss"),
                epoch=state.epoch,
                learning_rate=logs.get("learning_rate"),
                samples=0,
                force=True,
            )

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.reporter is not None and state.is_world_process_zero:
                self.reporter.step(state.global_step, epoch=state.epoch)

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.is_world_process_zero:
                path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                checkpoint_saved(state.global_step, path)

    return AidpCallback()


def keras_callback(
    *, checkpoint_every: int | None = None, samples_per_step: int | None = None
) -> Any:
    """A ``keras.callbacks.Callback``: live progress, checkpoints and resume (needs keras).

    Steps are optimizer steps (batches) counted over the whole ``fit``; ``total_steps`` is
    ``epochs × steps per epoch``. A checkpoint is written at the end of an epoch once
    ``checkpoint_every`` steps (default ``train.checkpoint_every``) have passed since the
    last; on a resumed attempt ``on_train_begin`` loads it (the model must be built, e.g.
    a functional model, and compiled) and ``fit`` continues at the next epoch.

    The callback lives in ``aidp_progress_keras.py``, staged beside this file: imported
    here, on first use, so scripts without Keras never load it.
    """
    from aidp_progress_keras import keras_callback as make  # type: ignore[import-not-found]

    return make(checkpoint_every=checkpoint_every, samples_per_step=samples_per_step)


def keras_save(model: Any, *, labels: list[str] | None = None, **serving: Any) -> Path:
    """Save a Keras model as ``output_dir()/model.keras`` (what aidp registers and serves),
    with ``aidp_serving.json`` beside it: the class names (``labels``) and other serving
    hints (``max_length`` for a tokenizer's inputs). Rank 0 only; returns the file."""
    path = output_dir() / "model.keras"
    if is_main_process():
        model.save(str(path))
        meta = {**serving, **({"labels": [str(x) for x in labels]} if labels else {})}
        (output_dir() / "aidp_serving.json").write_text(json.dumps(meta))
    return path


def _heartbeat(interval: float) -> None:
    line = (MARKER + '{"event":"heartbeat"}\n').encode()
    while True:
        time.sleep(interval)
        try:
            sys.stdout.flush()
            os.write(1, line)  # one write: never split by another thread's output
        except (OSError, ValueError):  # stdout closed: the process is ending
            return


def _start_heartbeat() -> None:
    """Heartbeats from the first process of each node, when the trainer asks for them."""
    try:
        interval = float(os.environ.get("AIDP_HEARTBEAT_SECONDS") or 0)
    except ValueError:
        return
    if interval <= 0 or os.environ.get("LOCAL_RANK", "0") != "0":
        return
    threading.Thread(
        target=_heartbeat, args=(interval,), name="aidp-heartbeat", daemon=True
    ).start()


_start_heartbeat()
