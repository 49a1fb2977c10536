"""The command line and environment of a training process on a node.

A built-in task on one node with one process is started directly with the node's python
(the environment torchrun would give it: ``RANK=0``, ``WORLD_SIZE=1`` …): torchrun's agent
would import torch, rendezvous and poll its worker only to supervise a single process,
which costs seconds at start and at exit and nothing is gained. Every other launch —
custom scripts (their contract is "run under torchrun"), several nodes, several GPUs —
goes through ``python -m torch.distributed.run``.

``environment.framework: tensorflow``: always one process started directly (no torch in
the env; TensorFlow uses every GPU of the node from one process), with the same rank
variables; the built-in tasks run their Keras 3 templates (:data:`KERAS_SCRIPTS`).

Thread settings: ``train.args.num_threads`` (> 0) also sets ``OMP_NUM_THREADS`` /
``MKL_NUM_THREADS``, so intra-op threads never oversubscribe a node's cores.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from dataclasses import dataclass
from typing import Any

from shared.spec import ProjectSpec

__all__ = ["KERAS_SCRIPTS", "TASK_SCRIPTS", "Launch", "launch_env", "plan_launch", "script_of"]

TASK_SCRIPTS = {
    "text-classification": "src/text_classification.py",
    "image-classification": "src/image_classification.py",
    "causal-lm": "src/causal_lm.py",
    "chat": "src/chat.py",
}

#: The Keras 3 templates of the built-in tasks (``environment.framework: tensorflow``).
KERAS_SCRIPTS = {
    "text-classification": "src/keras_text_classification.py",
    "image-classification": "src/keras_image_classification.py",
}


def script_of(spec: ProjectSpec) -> str:
    """The training script, relative to the workspace."""
    if spec.task == "custom":
        return posixpath.join("src", "user", spec.train.entrypoint or "train.py")
    if spec.environment.framework == "tensorflow":
        return KERAS_SCRIPTS[spec.task]
    return TASK_SCRIPTS[spec.task]


def _threads(args: dict[str, Any]) -> int:
    try:
        return max(0, int(args.get("num_threads") or 0))
    except (TypeError, ValueError):
        return 0


def launch_env(
    *,
    workspace: str,
    spec: ProjectSpec,
    accelerator: str,
    run_id: uuid.UUID | str,
    resume_step: int | None = None,
    heartbeat_seconds: float | None = None,
) -> dict[str, str]:
    """The variables every training process of a run gets (besides the rank variables).
    ``heartbeat_seconds``: how often aidp_progress writes its heartbeat line."""
    ws = workspace
    variables = {
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": posixpath.join(ws, "src"),
        "AIDP_WORKSPACE": ws,
        "AIDP_MODEL_DIR": posixpath.join(ws, "model"),
        "AIDP_DATA_DIR": posixpath.join(ws, "data"),
        "AIDP_OUTPUT_DIR": posixpath.join(ws, "output", "model"),
        "AIDP_CHECKPOINT_ROOT": posixpath.join(ws, "checkpoints"),
        "AIDP_TRAIN_ARGS": json.dumps(spec.train.args),
        "AIDP_TRAIN_METHOD": spec.train.method or "",  # empty: the task decides by size
        "AIDP_CHECKPOINT_EVERY": str(spec.train.checkpoint_every),
        "AIDP_ACCELERATOR": accelerator,
        "AIDP_RUN_ID": str(run_id),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TRANSFORMERS_VERBOSITY": "warning",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if spec.environment.framework == "tensorflow":
        variables["TF_CPP_MIN_LOG_LEVEL"] = "2"  # TensorFlow's C++ start-up chatter
        variables["KERAS_BACKEND"] = "tensorflow"
    threads = _threads(spec.train.args)
    if threads:
        variables["OMP_NUM_THREADS"] = variables["MKL_NUM_THREADS"] = str(threads)
    if heartbeat_seconds:
        variables["AIDP_HEARTBEAT_SECONDS"] = f"{heartbeat_seconds:g}"
    if resume_step is not None:
        variables["AIDP_RESUME_DIR"] = posixpath.join(ws, "resume")
        variables["AIDP_RESUME_STEP"] = str(resume_step)
    return variables


@dataclass(frozen=True)
class Launch:
    """How one node starts its part of a run."""

    argv: list[str]
    env: dict[str, str]


def plan_launch(
    *,
    python: str,
    workspace: str,
    spec: ProjectSpec,
    nnodes: int,
    node_rank: int,
    nproc: int,
    rdzv: str | None,
    run_id: uuid.UUID | str,
    env: dict[str, str],
) -> Launch:
    """argv + environment for node ``node_rank`` of ``nnodes`` (``rdzv``: node 0's
    ``host:port`` when ``nnodes > 1``)."""
    script = posixpath.join(workspace, script_of(spec))
    single_process = spec.task != "custom" and nnodes == 1 and nproc == 1
    if single_process or spec.environment.framework == "tensorflow":
        single = {
            "RANK": "0",
            "LOCAL_RANK": "0",
            "GROUP_RANK": "0",
            "WORLD_SIZE": "1",
            "LOCAL_WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1",
        }
        return Launch([python, "-u", script], {**env, **single})
    argv = [python, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    if nnodes == 1 or rdzv is None:
        argv += ["--standalone", "--nnodes", "1"]
    else:
        argv += [
            "--nnodes",
            str(nnodes),
            "--node-rank",
            str(node_rank),
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            rdzv,
            "--rdzv-id",
            str(run_id),
            # node 0 hosts the rendezvous store, no other node tries: local nodes all see
            # the endpoint as their own loopback, and a node that won the race to bind it
            # without being rank 0 leaves the workers waiting on a store nobody serves
            "--rdzv-conf",
            f"is_host={'1' if node_rank == 0 else '0'}",
        ]
    return Launch([*argv, script], dict(env))
