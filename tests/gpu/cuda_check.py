"""CUDA check of the built-in text-classification task (run on a GPU machine by hand).

    python tests/gpu/cuda_check.py [--steps 100] [--hidden 256] [--layers 4]

Builds a small random BERT + WordPiece tokenizer and a CSV, copies the task scripts into a
temporary workspace exactly as the trainer stages them, runs the task under torchrun with
``AIDP_ACCELERATOR=cuda`` and prints the device, the steps and samples/s it reported.
Needs only torch, transformers, safetensors (and numpy) plus this repository.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.unit.trainer.factories import build_tiny_bert, write_sentiment_csv  # noqa: E402

TASKS = ROOT / "services" / "trainer" / "tasks"
CLIENT = ROOT / "services" / "trainer" / "progress_client.py"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import torch

    print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 2
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        print(f"device {i}: {props.name}, {props.total_memory / 2**30:.1f} GiB")
    with tempfile.TemporaryDirectory(prefix="aidp-cuda-") as tmp:
        ws = Path(tmp)
        build_tiny_bert(ws / "model", hidden=args.hidden, layers=args.layers)
        write_sentiment_csv(ws / "data" / "train.csv", rows=2048)
        (ws / "src").mkdir()
        for path in TASKS.glob("*.py"):
            shutil.copy(path, ws / "src" / path.name)
        shutil.copy(CLIENT, ws / "src" / "aidp_progress.py")
        train_args = {"max_steps": args.steps, "batch_size": args.batch_size, "learning_rate": 1e-4}
        env = {
            **os.environ,
            "AIDP_WORKSPACE": str(ws),
            "AIDP_ACCELERATOR": "cuda",
            "AIDP_TRAIN_ARGS": json.dumps(train_args),
            "AIDP_CHECKPOINT_EVERY": str(max(1, args.steps // 2)),
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ws / "src"),
        }
        argv = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "1",
            str(ws / "src" / "text_classification.py"),
        ]
        began = time.time()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
        wall = time.time() - began
        messages = [
            json.loads(line.split(" ", 1)[1])
            for line in proc.stdout.splitlines()
            if line.startswith("@@aidp@@ ")
        ]
        if proc.returncode != 0:
            print(proc.stderr[-4000:])
            print(f"FAILED with exit code {proc.returncode}")
            return 1
        progress = [m for m in messages if m["event"] == "progress"]
        done = [m for m in messages if m["event"] == "completed"]
        ckpts = [m["step"] for m in messages if m["event"] == "checkpoint"]
        metrics = done[-1]["metrics"] if done else {}
        print(
            f"steps reported: {progress[0]['step']}..{progress[-1]['step']} "
            f"({len(progress)} progress messages), checkpoints at {ckpts}"
        )
        print(
            f"samples/s (loop): {metrics.get('train_samples_per_second', 0):.1f}; "
            f"final loss {metrics.get('train_loss', float('nan')):.4f}; "
            f"accuracy {metrics.get('train_accuracy', float('nan')):.3f}; wall {wall:.1f} s"
        )
        saved = sorted(p.name for p in (ws / "output" / "model").iterdir())
        print(f"saved model files: {saved}")
        return 0 if done and progress[-1]["step"] == args.steps else 1


if __name__ == "__main__":
    sys.exit(main())
