"""TensorFlow / Keras end to end (issue 18 item 1), the whole platform in one process:
a ``environment.framework: tensorflow`` project builds a hash-locked ``tensorflow-cpu`` env
(no torch), a custom Keras script (``examples/keras-sentiment/train.py``) trains on the
project's test dataset with live progress through ``aidp_progress.keras_callback``, is
killed after a checkpoint and resumes from it, and the registered ``model.keras`` (lineage
naming the framework) is deployed and predicts through the same v2 endpoint."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.platform.conftest import embedded_platform
from tests.support.hf_server import HubServer
from tests.support.pipeline import TINY_DATASET, TINY_MODEL, ApiUser

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "keras-sentiment" / "train.py"


def keras_script(step_sleep: float) -> str:
    """The example script, each batch slowed down so the test can kill it mid-run."""
    text = EXAMPLE.read_text()
    slow = (
        "keras.callbacks.LambdaCallback("
        f"on_train_batch_end=lambda batch, logs: __import__('time').sleep({step_sleep})), "
    )
    assert text.count("callbacks=[") == 1
    return text.replace("callbacks=[", "callbacks=[" + slow)


def keras_spec(*, epochs: int, step_sleep: float) -> dict[str, Any]:
    return {
        "name": f"keras-{uuid.uuid4().hex[:8]}",
        "model": f"hf://{TINY_MODEL}@main",
        "dataset": f"hf://datasets/{TINY_DATASET}@main",
        "task": "custom",
        "train": {
            "entrypoint": "train.py",
            "script": keras_script(step_sleep),
            "args": {"epochs": epochs, "batch_size": 8, "learning_rate": 0.01},
            "checkpoint_every": 8,  # 64 rows, batches of 8: a checkpoint every epoch
        },
        "environment": {"python": "3.11", "framework": "tensorflow", "packages": []},
        "resources": {"provider": "local", "nodes": 1, "accelerator": "cpu"},
        "deploy": {"enabled": True},
    }


def training_pids(run_id: str) -> list[int]:
    """The run's training process(es): their command line names the run's workspace."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if f"aidp-run-{run_id}".encode() in cmdline and b"train.py" in cmdline:
            if b"bwrap" not in cmdline.split(b"\0")[0]:
                found.append(int(entry))
    return found


def why(alice: ApiUser, run_id: str, log: Path) -> str:
    """The run, its failure events and the platform's log without access lines."""
    failed = [
        e["event"]["payload"]
        for e in alice.events(run_id)
        if e["event"]["type"] in ("TrainingFailed", "NodesFailed", "DeploymentFailed")
    ]
    lines = [line for line in log.read_text().splitlines() if "uvicorn.access" not in line]
    return f"{alice.run(run_id)}\n{failed}\n" + "\n".join(lines[-80:])


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["event"] for e in events if e["event"]["type"] == kind]


@pytest.fixture
def embedded(tmp_path: Path, hub: HubServer) -> Iterator[str]:
    with embedded_platform(tmp_path / "data", hub, tmp_path / "aidp.log") as url:
        yield url


def test_keras_custom_script_resumes_after_kill_deploys_and_predicts(
    embedded: str, tmp_path: Path
) -> None:
    alice = ApiUser(embedded)
    project = alice.create_project(keras_spec(epochs=12, step_sleep=0.15))
    run_id = project["current_run_id"]
    log = tmp_path / "aidp.log"

    # the first attempt gets past a checkpoint (step 16: two epochs), then is killed
    deadline = time.monotonic() + 900
    while True:
        assert time.monotonic() < deadline, why(alice, run_id, log)
        events = alice.events(run_id)
        steps = [e["payload"]["step"] for e in of_type(events, "TrainingProgress")]
        if alice.run(run_id)["status"] in ("failed", "cancelled"):
            pytest.fail(f"run ended early: {why(alice, run_id, log)}")
        if steps and max(steps) >= 20:
            break
        time.sleep(0.5)
    pids = training_pids(run_id)
    assert pids, "no training process found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    run = alice.wait_for_run(run_id, timeout=900)
    assert run["status"] == "deployed", why(alice, run_id, log)
    events = alice.events(run_id)

    ready = of_type(events, "NodesReady")[0]["payload"]["env"]
    assert ready["framework"] == "tensorflow" and ready["tensorflow_version"]
    assert ready["torch_version"] == ""  # no torch in a TensorFlow env

    started = of_type(events, "TrainingStarted")
    assert [s["payload"]["attempt"] for s in started] == [1, 2]
    resumed = started[1]["payload"]["resumed_from_step"]
    assert resumed is not None and resumed >= 16 and resumed % 8 == 0

    progress = of_type(events, "TrainingProgress")
    first = [p["payload"]["step"] for p in progress if p["occurred_at"] < started[1]["occurred_at"]]
    after = [p["payload"]["step"] for p in progress if p["occurred_at"] > started[1]["occurred_at"]]
    assert first == sorted(first) and first[-1] >= 20
    assert after == sorted(after) and after[0] > resumed, (resumed, after[:3])
    assert after[-1] == 96 and progress[-1]["payload"]["total_steps"] == 96
    assert any(p["payload"]["loss"] is not None for p in progress)
    completed = of_type(events, "TrainingCompleted")[0]["payload"]
    assert completed["metrics"]["accuracy"] >= 0.9

    models = alice.http.get(f"/api/projects/{project['id']}/models").json()
    assert len(models) == 1
    lineage = models[0]["lineage"]
    assert lineage["framework"] == "tensorflow" and lineage["tensorflow_version"]
    assert lineage["env_lock_hash"] == ready["lock_hash"]
    assert lineage["dataset"]["source"].endswith(TINY_DATASET + "@main")

    deployment_id = of_type(events, "ModelDeployed")[0]["payload"]["deployment_id"]
    r = alice.http.post(
        f"/api/deployments/{deployment_id}/predict",
        json={"inputs": ["a great and lovely film", "an awful dreadful plot"]},
    )
    assert r.status_code == 200, r.text
    outputs = r.json()["outputs"]
    assert [o["label"] for o in outputs] == ["pos", "neg"], outputs
    assert all(0.5 < o["score"] <= 1.0 for o in outputs)
    bad = alice.http.post(f"/api/deployments/{deployment_id}/predict", json={"inputs": []})
    assert bad.status_code in (400, 422), bad.text

    # another user sees neither the model nor the deployment
    mallory = ApiUser(embedded)
    assert mallory.http.get(f"/api/projects/{project['id']}/models").status_code == 404
    r = mallory.http.post(f"/api/deployments/{deployment_id}/predict", json={"inputs": ["x"]})
    assert r.status_code == 404


def test_keras_text_classification_template_trains_and_serves(
    embedded: str, tmp_path: Path
) -> None:
    """The built-in task with framework tensorflow runs its Keras 3 template: the base
    model's tokenizer and word embeddings, ``model.fit``; the deployment tokenizes."""
    alice = ApiUser(embedded)
    spec = {
        "name": f"keras-tc-{uuid.uuid4().hex[:8]}",
        "model": f"hf://{TINY_MODEL}@main",
        "dataset": f"hf://datasets/{TINY_DATASET}@main",
        "task": "text-classification",
        "train": {
            "args": {"max_steps": 12, "batch_size": 8, "learning_rate": 0.01, "max_length": 16},
            "checkpoint_every": 4,
        },
        "environment": {"python": "3.11", "framework": "tensorflow"},
        "deploy": {"enabled": True},
    }
    project = alice.create_project(spec)
    run_id = project["current_run_id"]
    run = alice.wait_for_run(run_id, timeout=900)
    assert run["status"] == "deployed", why(alice, run_id, tmp_path / "aidp.log")
    events = alice.events(run_id)
    steps = [e["payload"]["step"] for e in of_type(events, "TrainingProgress")]
    assert steps == sorted(steps) and steps[-1] == 12
    assert of_type(events, "NodesReady")[0]["payload"]["env"]["framework"] == "tensorflow"
    deployment_id = of_type(events, "ModelDeployed")[0]["payload"]["deployment_id"]
    r = alice.http.post(
        f"/api/deployments/{deployment_id}/predict", json={"inputs": ["a lovely film", "bad"]}
    )
    assert r.status_code == 200, r.text
    outputs = r.json()["outputs"]
    assert len(outputs) == 2 and {o["label"] for o in outputs} <= {"pos", "neg"}
    assert all(0.0 < o["score"] <= 1.0 for o in outputs)
