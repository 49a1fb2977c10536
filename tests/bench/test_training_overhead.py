"""Benchmark: the built-in text-classification task run by aidp vs the same loop run directly.

Figures printed: samples/s of each (the loop's own timing, first step included, no
checkpoints in either), their ratio (target >= 0.97), and the overhead in seconds from the
moment NodesReady + ArtifactsCached are published to the first TrainingProgress.
Interleaved rounds; the best of each side is compared (the machine is shared).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.trainer.staging import PROGRESS_CLIENT, TASKS_DIR
from tests.unit.trainer.conftest import running_trainer, text_spec
from tests.unit.trainer.factories import build_tiny_bert, write_sentiment_csv

pytestmark = pytest.mark.bench

ARGS = {"max_steps": 150, "batch_size": 16, "learning_rate": 0.001, "num_threads": 1}
ROUNDS = 2


def direct_run(tiny: tuple[Path, Path], ws: Path) -> float:
    """The same task script, run by hand: no trainer, no torchrun, no relay."""
    shutil.rmtree(ws, ignore_errors=True)
    (ws / "src").mkdir(parents=True)
    for path in TASKS_DIR.glob("*.py"):
        shutil.copy(path, ws / "src" / path.name)
    shutil.copy(PROGRESS_CLIENT, ws / "src" / "aidp_progress.py")
    shutil.copytree(tiny[0], ws / "model")
    shutil.copytree(tiny[1], ws / "data")
    env = {
        "PATH": os.environ["PATH"],
        "AIDP_WORKSPACE": str(ws),
        "HF_HUB_OFFLINE": "1",
        "AIDP_TRAIN_ARGS": json.dumps(ARGS),
        "AIDP_CHECKPOINT_EVERY": "100000",
    }
    out = subprocess.run(
        [sys.executable, str(ws / "src" / "text_classification.py")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    done = [
        json.loads(line.split(" ", 1)[1])
        for line in out.splitlines()
        if line.startswith("@@aidp@@ ") and '"completed"' in line
    ]
    return float(done[-1]["metrics"]["train_samples_per_second"])


async def test_training_overhead(tmp_path: Path) -> None:
    tiny = (
        build_tiny_bert(tmp_path / "tiny" / "model", hidden=64),
        write_sentiment_csv(tmp_path / "tiny" / "data" / "train.csv", rows=512).parent,
    )
    direct, via_aidp, overheads = [], [], []
    async with running_trainer(tmp_path, tiny) as trainer:
        for _ in range(ROUNDS):
            direct.append(direct_run(tiny, tmp_path / "direct"))
            spec = text_spec(args=ARGS, checkpoint_every=100000)
            run_id = await trainer.start_run(spec=spec, order="spec-nodes-artifacts")
            t0 = time.time()
            first = await trainer.events.first("TrainingProgress", run_id, timeout=300)
            overheads.append(first.occurred_at.timestamp() - t0)
            done = await trainer.events.first("TrainingCompleted", run_id, timeout=600)
            via_aidp.append(float(done.payload["metrics"]["train_samples_per_second"]))
    ratio = max(via_aidp) / max(direct)
    print(
        f"\ntext-classification samples/s: direct {[round(x, 1) for x in direct]}, "
        f"aidp {[round(x, 1) for x in via_aidp]}; ratio (best/best) {ratio:.3f} (target >= 0.97)"
    )
    print(
        f"overhead NodesReady+ArtifactsCached -> first TrainingProgress: "
        f"{[round(x, 2) for x in overheads]} s (min {min(overheads):.2f} s)"
    )
    assert ratio > 0.5  # the target is reported, not enforced, on a shared machine
