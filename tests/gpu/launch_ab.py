"""Start-up cost of the two ways the trainer launches a built-in task (run on a quiet machine).

    python tests/gpu/launch_ab.py [--reps 3] [--steps 200] [--cuda]

``direct``: ``python -u task.py`` with the rank variables torchrun would set (what the
trainer does for one node × one process); ``torchrun``: ``python -m torch.distributed.run
--standalone --nproc-per-node 1 task.py`` (what it did before, and still does for custom
scripts and multi-process runs). Alternating runs on the same staged workspace, one
intra-op thread (``OMP_NUM_THREADS=1``) unless ``--cuda``. Prints, per mode, the medians of:
process start -> first progress line, total wall time, and the loop's steady samples/s.
Needs only torch, transformers, safetensors plus this repository (no aidp services).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
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
RANK_ENV = {
    "RANK": "0",
    "LOCAL_RANK": "0",
    "GROUP_RANK": "0",
    "WORLD_SIZE": "1",
    "LOCAL_WORLD_SIZE": "1",
    "MASTER_ADDR": "127.0.0.1",
}


def run_once(ws: Path, mode: str, env: dict[str, str]) -> dict[str, float]:
    script = str(ws / "src" / "text_classification.py")
    if mode == "direct":
        argv = [sys.executable, "-u", script]
        env = {**env, **RANK_ENV}
    else:
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        argv += ["--nnodes", "1", "--nproc-per-node", "1", script]
    began = time.monotonic()
    first = None
    metrics: dict[str, float] = {}
    with subprocess.Popen(
        argv, env=env, cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.startswith("@@aidp@@ "):
                continue
            msg = json.loads(line.split(" ", 1)[1])
            if msg["event"] == "progress" and first is None:
                first = time.monotonic() - began
            if msg["event"] == "completed":
                metrics = msg["metrics"]
    wall = time.monotonic() - began
    if proc.returncode != 0 or first is None:
        raise SystemExit(f"{mode} run failed (exit {proc.returncode})")
    return {
        "first_progress_s": first,
        "wall_s": wall,
        "steady": float(metrics.get("train_steady_samples_per_second", 0.0)),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--cuda", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aidp-ab-") as tmp:
        ws = Path(tmp)
        build_tiny_bert(ws / "model", hidden=64)
        write_sentiment_csv(ws / "data" / "train.csv", rows=512)
        (ws / "src").mkdir()
        for path in TASKS.glob("*.py"):
            shutil.copy(path, ws / "src" / path.name)
        shutil.copy(CLIENT, ws / "src" / "aidp_progress.py")
        train = {"max_steps": args.steps, "batch_size": 16, "learning_rate": 1e-3}
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "AIDP_WORKSPACE": str(ws),
            "AIDP_ACCELERATOR": "cuda" if args.cuda else "cpu",
            "AIDP_CHECKPOINT_EVERY": "1000000",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ws / "src"),
        }
        if not args.cuda:
            train["num_threads"] = 1
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
        env["AIDP_TRAIN_ARGS"] = json.dumps(train)
        run_once(ws, "direct", env)  # warm-up (page cache, bytecode), discarded
        results: dict[str, list[dict[str, float]]] = {"direct": [], "torchrun": []}
        for i in range(args.reps):
            for mode in ("direct", "torchrun") if i % 2 == 0 else ("torchrun", "direct"):
                results[mode].append(run_once(ws, mode, env))
    device = "cuda" if args.cuda else "cpu, 1 thread"
    print(f"launch A/B ({device}, {args.steps} steps, {args.reps} alternating reps, medians)")
    for mode, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"  {mode:8s} start->first progress {med['first_progress_s']:.2f} s, "
            f"wall {med['wall_s']:.2f} s, steady {med['steady']:.1f} samples/s "
            f"(runs: {[round(r['first_progress_s'], 2) for r in runs]})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
