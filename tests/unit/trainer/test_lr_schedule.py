"""The built-in tasks' training loop (tasks/_common.py) schedules the learning rate with
transformers' ``get_linear_schedule_with_warmup`` and a resumed attempt continues the
schedule exactly where the checkpoint left it (learning rates and losses of the steps after
the checkpoint are those of the uninterrupted run). Runs the loop as the node does: the task
files and ``aidp_progress`` side by side, in a fresh interpreter."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.node_src import write_node_sources

pytestmark = pytest.mark.slow  # two runs of the loop in fresh interpreters (torch imports)

TOTAL, WARMUP, LR = 10, 3, 0.1

SCRIPT = f"""
import functools, types
import torch
import aidp_progress as aidp
aidp.Reporter = functools.partial(aidp.Reporter, min_interval=0.0)  # every step's progress
from _common import Distributed, TrainConfig, run_training

class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)

    def forward(self, x, labels):
        return types.SimpleNamespace(loss=torch.nn.functional.mse_loss(self.lin(x), labels))

torch.manual_seed(0)
data = {{"x": torch.randn(64, 4), "labels": torch.randn(64, 1)}}
model = Tiny()
cfg = TrainConfig(
    max_steps={TOTAL}, batch_size=4, learning_rate={LR}, warmup_steps={WARMUP},
    checkpoint_every=4,
)
run_training(model=model, data=data, cfg=cfg, ctx=Distributed())
aidp.completed({{}})
"""


def _run(ws: Path, resume: Path | None = None) -> list[dict[str, Any]]:
    src = write_node_sources(ws)
    (src / "lr_check.py").write_text(SCRIPT)
    env = {
        "PATH": os.environ["PATH"],
        "AIDP_WORKSPACE": str(ws),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(src),
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
    }
    if resume is not None:
        env["AIDP_RESUME_DIR"] = str(resume)
        env["AIDP_RESUME_STEP"] = resume.name.rsplit("-", 1)[1]
    proc = subprocess.run(
        [sys.executable, str(src / "lr_check.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [
        json.loads(line.split(" ", 1)[1])
        for line in proc.stdout.splitlines()
        if line.startswith("@@aidp@@ ")
    ]


def _by_step(messages: list[dict[str, Any]], key: str) -> dict[int, float]:
    return {m["step"]: m[key] for m in messages if m["event"] == "progress" and key in m}


def _linear_with_warmup(step: int) -> float:
    """transformers' schedule, written out: 0 -> LR over WARMUP steps, then down to 0."""
    if step < WARMUP:
        return LR * step / WARMUP
    return LR * max(0.0, (TOTAL - step) / (TOTAL - WARMUP))


def test_linear_schedule_with_warmup_and_an_exact_resume(tmp_path: Path) -> None:
    first = _run(tmp_path / "a")
    rates = _by_step(first, "learning_rate")
    assert sorted(rates) == list(range(1, TOTAL + 1))
    for step, rate in rates.items():  # the rate reported after the step's scheduler.step()
        assert rate == pytest.approx(_linear_with_warmup(step), abs=1e-12), step
    assert rates[WARMUP] == pytest.approx(LR) and rates[TOTAL] == 0.0
    saved = {m["step"]: m["path"] for m in first if m["event"] == "checkpoint"}
    assert sorted(saved) == [4, 8]
    assert (tmp_path / "a" / saved[4] / "scheduler.pt").is_file()

    resume = tmp_path / "resume" / "step-4"
    shutil.copytree(tmp_path / "a" / saved[4], resume)
    second = _run(tmp_path / "b", resume=resume)
    again = _by_step(second, "learning_rate")
    assert sorted(again) == list(range(5, TOTAL + 1))
    for step in again:
        assert again[step] == pytest.approx(rates[step], abs=1e-12), step
    losses, resumed_losses = _by_step(first, "loss"), _by_step(second, "loss")
    for step in resumed_losses:
        assert resumed_losses[step] == pytest.approx(losses[step], rel=1e-6), step
