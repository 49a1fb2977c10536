"""Validation metrics during training (issue 16 item 5): with an evaluation split the
classification task reports eval loss, accuracy and macro F1 in its progress, every
``eval_every`` steps (and at each epoch's end by default), and F1 in its final metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.trainer.factories import build_tiny_bert, write_sentiment_csv
from tests.unit.trainer.test_tasks import run_task

pytestmark = pytest.mark.slow


def test_text_classification_reports_eval_metrics_while_training(tmp_path: Path) -> None:
    build_tiny_bert(tmp_path / "model")
    write_sentiment_csv(tmp_path / "data" / "train.csv", rows=24)
    write_sentiment_csv(tmp_path / "data" / "test.csv", rows=8)  # the evaluation split
    messages = run_task(
        tmp_path,
        "text_classification.py",
        {"max_steps": 4, "batch_size": 4, "max_length": 16, "eval_every": 2},
    )
    progress = [m for m in messages if m["event"] == "progress"]
    evaluated = {
        int(m["step"]): m["metrics"]  # type: ignore[call-overload]
        for m in progress
        if m["metrics"]
    }
    assert sorted(evaluated) == [2, 4]
    for figures in evaluated.values():
        assert set(figures) == {"eval_loss", "eval_accuracy", "eval_f1"}  # type: ignore[arg-type]
        assert 0.0 <= figures["eval_f1"] <= 1.0  # type: ignore[index]
    done = [m for m in messages if m["event"] == "completed"]
    assert done and {"eval_accuracy", "eval_f1", "eval_loss_final"} <= set(done[0]["metrics"])  # type: ignore[arg-type]


def test_macro_f1() -> None:
    import torch

    from services.trainer.staging import TASKS_DIR

    # only the pure function: _common imports aidp_progress (a node-side module) at the top
    source = (TASKS_DIR / "_common.py").read_text()
    start = source.index("def macro_f1(")
    end = source.index("\n\n\ndef ", start)
    namespace: dict[str, Any] = {}
    exec(compile("import torch\n" + source[start:end], "_common.py", "exec"), namespace)  # noqa: S102
    macro_f1 = namespace["macro_f1"]
    labels = torch.tensor([0, 0, 1, 1])
    assert macro_f1(torch.tensor([0, 0, 1, 1]), labels) == 1.0
    assert macro_f1(torch.tensor([1, 1, 0, 0]), labels) == 0.0
    # class 0: tp 2, fp 1, fn 0 → 0.8; class 1: tp 1, fp 0, fn 1 → 2/3
    assert abs(macro_f1(torch.tensor([0, 0, 0, 1]), labels) - (0.8 + 2 / 3) / 2) < 1e-9
