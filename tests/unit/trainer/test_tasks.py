"""The built-in task scripts, run directly as the node would (no torchrun, one process)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from tests.support.node_src import write_node_sources
from tests.unit.trainer.factories import build_tiny_gpt2, write_sentiment_csv

pytestmark = pytest.mark.slow


def run_task(ws: Path, script: str, args: dict[str, object]) -> list[dict[str, object]]:
    src = write_node_sources(ws)
    env = {
        "PATH": os.environ["PATH"],
        "AIDP_WORKSPACE": str(ws),
        "AIDP_TRAIN_ARGS": json.dumps(args),
        "AIDP_CHECKPOINT_EVERY": "1000",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(src),
    }
    proc = subprocess.run(
        [sys.executable, str(src / script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [
        json.loads(line.split(" ", 1)[1])
        for line in proc.stdout.splitlines()
        if line.startswith("@@aidp@@ ")
    ]


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_causal_lm_trains_on_a_text_column(tmp_path: Path) -> None:
    build_tiny_gpt2(tmp_path / "model")
    write_sentiment_csv(tmp_path / "data" / "train.csv", rows=32)
    messages = run_task(
        tmp_path, "causal_lm.py", {"max_steps": 4, "batch_size": 2, "max_length": 8}
    )
    assert [m["step"] for m in messages if m["event"] == "progress"][-1] == 4
    done = [m for m in messages if m["event"] == "completed"]
    assert done and "train_perplexity" in done[0]["metrics"]  # type: ignore[operator]
    assert (tmp_path / "output" / "model" / "model.safetensors").exists()


def test_image_classification_reads_class_folders(tmp_path: Path) -> None:
    from transformers import ViTConfig, ViTModel

    ViTModel(
        ViTConfig(
            image_size=8,
            patch_size=4,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
        )
    ).save_pretrained(tmp_path / "model")
    for label, color in (("red", (250, 10, 10)), ("blue", (10, 10, 250))):
        for i in range(4):
            (tmp_path / "data" / label).mkdir(parents=True, exist_ok=True)
            (tmp_path / "data" / label / f"{i}.png").write_bytes(png(6 + i, 6, color))
    messages = run_task(tmp_path, "image_classification.py", {"max_steps": 3, "batch_size": 4})
    done = [m for m in messages if m["event"] == "completed"]
    assert done and "train_accuracy" in done[0]["metrics"]  # type: ignore[operator]
    config = json.loads((tmp_path / "output" / "model" / "config.json").read_text())
    assert set(config["id2label"].values()) == {"red", "blue"}
