"""``train.args`` strictness (issue 16 item 3): unknown keys refused per task, the nearest
valid name suggested, custom tasks free-form; the table follows the trainer's TrainConfig."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shared.spec import ProjectSpec
from shared.train_args import COMMON_ARGS, TASK_ARGS, check_train_args, nearest

ROOT = Path(__file__).resolve().parents[3]


def _spec(task: str = "text-classification", **args: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "demo",
        "model": "hf://org/model@main",
        "dataset": "hf://datasets/org/data@main",
        "task": task,
        "train": {"args": args},
    }
    if task == "custom":
        spec["train"]["entrypoint"] = "train.py"
    return spec


def test_common_args_are_the_fields_of_train_config() -> None:
    tree = ast.parse((ROOT / "services/trainer/tasks/_common.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TrainConfig")
    fields = {
        s.target.id
        for s in cls.body
        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
    }
    assert fields - {"text_column", "label_column"} == COMMON_ARGS


def test_a_typo_is_refused_with_the_nearest_name() -> None:
    with pytest.raises(ValidationError) as caught:
        ProjectSpec.model_validate(_spec(max_step=40))
    message = str(caught.value)
    assert "train.args.max_step" in message and "did you mean max_steps?" in message


def test_a_key_far_from_any_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"train.args.zzz: .*valid keys: batch_size, "):
        check_train_args("causal-lm", {"zzz": 1})


def test_keys_are_per_task() -> None:
    ProjectSpec.model_validate(_spec(text_column="review", label_column="stars", epochs=2))
    with pytest.raises(ValidationError, match="label_column: unknown key for task causal-lm"):
        ProjectSpec.model_validate(_spec("causal-lm", label_column="stars"))
    with pytest.raises(ValidationError, match="image-classification"):
        ProjectSpec.model_validate(_spec("image-classification", text_column="t"))


def test_custom_tasks_take_any_key() -> None:
    spec = ProjectSpec.model_validate(_spec("custom", steps=3, sleep=0.1, targets={}))
    assert spec.train.args == {"steps": 3, "sleep": 0.1, "targets": {}}
    assert TASK_ARGS["custom"] is None


def test_nearest() -> None:
    assert nearest("learning_rte", COMMON_ARGS) == "learning_rate"
    assert nearest("batchsize", COMMON_ARGS) == "batch_size"
    assert nearest("qqqq", COMMON_ARGS) is None
