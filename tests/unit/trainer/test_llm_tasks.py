"""The LLM task scripts (issue 15) run directly as the node would: chat SFT with TRL + LoRA,
checkpoints and an exact resume, causal-lm with LoRA."""

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
from tests.support.tiny_chat_model import chat_dataset_rows, make_tiny_chat_model, write_jsonl

pytestmark = pytest.mark.slow

ARGS = {"max_steps": 6, "batch_size": 4, "learning_rate": 0.005, "max_length": 64, "lora_r": 4}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_chat_model(tmp_path_factory.mktemp("llm") / "model")


def run_task(
    ws: Path,
    script: str,
    args: dict[str, Any],
    *,
    method: str = "lora",
    every: int = 1000,
    resume: Path | None = None,
) -> list[dict[str, Any]]:
    src = write_node_sources(ws)
    env = {
        "PATH": os.environ["PATH"],
        "AIDP_WORKSPACE": str(ws),
        "AIDP_TRAIN_ARGS": json.dumps(args),
        "AIDP_TRAIN_METHOD": method,
        "AIDP_CHECKPOINT_EVERY": str(every),
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
        [sys.executable, str(src / script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [
        json.loads(line.split(" ", 1)[1])
        for line in proc.stdout.splitlines()
        if line.startswith("@@aidp@@ ")
    ]


def _workspace(root: Path, model_dir: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    ws = root / name
    shutil.copytree(model_dir, ws / "model")
    write_jsonl(ws / "data" / "train.jsonl", rows)
    return ws


def _losses(messages: list[dict[str, Any]]) -> dict[int, float]:
    return {
        m["step"]: m["loss"]
        for m in messages
        if m["event"] == "progress" and m.get("loss") is not None
    }


def test_chat_lora_trains_checkpoints_and_resumes_exactly(tmp_path: Path, model_dir: Path) -> None:
    ws = _workspace(tmp_path, model_dir, "a", chat_dataset_rows(48))
    messages = run_task(ws, "chat.py", ARGS, every=4)
    assert [m["step"] for m in messages if m["event"] == "progress"][-1] == 6
    saved = [m for m in messages if m["event"] == "checkpoint"]
    assert saved[0] == {"event": "checkpoint", "step": 4, "path": "checkpoints/checkpoint-4"}
    done = next(m for m in messages if m["event"] == "completed")
    assert done["metrics"]["steps"] == 6 and done["metrics"]["lora_r"] == 4
    out = ws / "output" / "model"
    assert (out / "adapter_model.safetensors").exists() and not (out / "model.safetensors").exists()
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["base_model_name_or_path"] == "base"
    facts = json.loads((out / "aidp_adapter.json").read_text())
    assert facts["method"] == "lora" and sorted(facts["target_modules"]) == ["q_proj", "v_proj"]
    assert (out / "tokenizer_config.json").exists()

    # A new attempt from checkpoint 4 (read-only, as staged) trains steps 5-6 exactly again.
    resume = tmp_path / "resume" / "checkpoint-4"
    shutil.copytree(ws / "checkpoints" / "checkpoint-4", resume)
    for path in resume.rglob("*"):
        path.chmod(0o444 if path.is_file() else 0o555)
    again = _workspace(tmp_path, model_dir, "b", chat_dataset_rows(48))
    resumed = run_task(again, "chat.py", ARGS, resume=resume)
    first, second = _losses(messages), _losses(resumed)
    assert min(second) == 5 and max(second) == 6
    for step in (5, 6):
        assert second[step] == pytest.approx(first[step], rel=1e-4)


def test_causal_lm_lora_saves_the_adapter_and_adapter_only_checkpoints(
    tmp_path: Path, model_dir: Path
) -> None:
    ws = tmp_path / "clm"
    shutil.copytree(model_dir, ws / "model")
    write_jsonl(
        ws / "data" / "train.jsonl",
        [{"text": f"The apple number {i} is red and tasty."} for i in range(64)],
    )
    args = {"max_steps": 5, "batch_size": 4, "max_length": 16, "lora_r": 4}
    messages = run_task(ws, "causal_lm.py", args, every=3)
    assert any(m["event"] == "checkpoint" and m["step"] == 3 for m in messages)
    assert sorted(p.name for p in (ws / "checkpoints" / "step-3").iterdir()) == [
        "adapter.safetensors",
        "optimizer.pt",
        "scheduler.pt",
        "state.json",
    ]
    out = ws / "output" / "model"
    assert (out / "adapter_model.safetensors").exists()
    assert json.loads((out / "aidp_adapter.json").read_text())["method"] == "lora"
