"""TensorFlow / Keras end to end (issue 18 item 1), the whole platform in one process:
a ``environment.framework: tensorflow`` project builds a hash-locked ``tensorflow-cpu`` env
(no torch), a custom Keras script (``examples/keras-sentiment/train.py``) trains on the
project's test dataset with live progress through ``aidp_progress.keras_callback``, is
killed after a checkpoint and resumes from it, and the registered ``model.keras`` (lineage
naming the framework) is deployed and predicts through the same v2 endpoint."""

from __future__ import annotations

import os
import signal
import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.platform.conftest import embedded_platform
from tests.support.hf_server import HubServer
from tests.support.pipeline import TINY_DATASET, TINY_MODEL, ApiUser, publish_tiny_project

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


COLORS = "aidp-tests/tiny-colors"


@dataclass
class Platform:
    url: str
    log: Path


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One embedded platform for the module (its start is the slow part), with the tiny
    model, the sentiment CSV and a dataset of red and green PNGs on the mirror."""
    root = tmp_path_factory.mktemp("keras")
    with HubServer() as hub:
        publish_tiny_project(hub, root / "mirror-src")
        files = {}
        for i in range(8):
            shade = 150 + 10 * i
            files[f"red/{i}.png"] = _png(12, (shade, 10, 10))
            files[f"green/{i}.png"] = _png(12, (10, shade, 10))
        hub.commit(COLORS, files, repo_type="dataset")
        with embedded_platform(root / "data", hub, root / "aidp.log") as url:
            yield Platform(url, root / "aidp.log")


def test_keras_custom_script_resumes_after_kill_deploys_and_predicts(
    platform: Platform,
) -> None:
    alice = ApiUser(platform.url)
    project = alice.create_project(keras_spec(epochs=8, step_sleep=0.15))
    run_id = project["current_run_id"]
    log = platform.log

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
    environment = alice.http.get(f"/api/runs/{run_id}/environment").json()
    assert environment["framework"] == "tensorflow" and environment["keras_version"]
    assert environment["lock_hash"] == ready["lock_hash"]
    assert "tensorflow-cpu==" in environment["lock"] and "\ntorch==" not in environment["lock"]

    started = of_type(events, "TrainingStarted")
    assert [s["payload"]["attempt"] for s in started] == [1, 2]
    resumed = started[1]["payload"]["resumed_from_step"]
    assert resumed is not None and resumed >= 8 and resumed % 8 == 0  # an epoch end

    progress = of_type(events, "TrainingProgress")
    first = [p["payload"]["step"] for p in progress if p["occurred_at"] < started[1]["occurred_at"]]
    after = [p["payload"]["step"] for p in progress if p["occurred_at"] > started[1]["occurred_at"]]
    assert first == sorted(first) and first[-1] >= 20
    assert after == sorted(after) and after[0] > resumed, (resumed, after[:3])
    assert after[-1] == 64 and progress[-1]["payload"]["total_steps"] == 64
    assert any(p["payload"]["loss"] is not None for p in progress)
    completed = of_type(events, "TrainingCompleted")[0]["payload"]
    assert completed["metrics"]["accuracy"] >= 0.9

    models = alice.http.get(f"/api/projects/{project['id']}/models").json()
    assert len(models) == 1
    lineage = models[0]["lineage"]
    assert lineage["framework"] == "tensorflow" and lineage["tensorflow_version"]
    assert lineage["env_lock_hash"] == ready["lock_hash"]
    assert lineage["dataset"]["source"] == f"hf://datasets/{TINY_DATASET}"
    assert len(lineage["dataset"]["revision"]) == 40  # the commit @main resolved to

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
    mallory = ApiUser(platform.url)
    assert mallory.http.get(f"/api/projects/{project['id']}/models").status_code == 404
    r = mallory.http.post(f"/api/deployments/{deployment_id}/predict", json={"inputs": ["x"]})
    assert r.status_code == 404


def test_keras_templates_train_and_serve(platform: Platform) -> None:
    """The built-in tasks with framework tensorflow run their Keras 3 templates (submitted
    together): text-classification from the base model's tokenizer and word embeddings
    (the deployment tokenizes), image-classification on PNG folders per class decoded by
    TensorFlow, a small CNN at the base model's image size (64: the tiny model names none;
    the deployment takes pixel arrays and refuses text with a 4xx)."""
    alice = ApiUser(platform.url)
    common = {
        "model": f"hf://{TINY_MODEL}@main",
        "environment": {"python": "3.11", "framework": "tensorflow"},
        "deploy": {"enabled": True},
    }
    text = alice.create_project(
        {
            **common,
            "name": f"keras-tc-{uuid.uuid4().hex[:8]}",
            "dataset": f"hf://datasets/{TINY_DATASET}@main",
            "task": "text-classification",
            "train": {
                "args": {"max_steps": 12, "batch_size": 8, "learning_rate": 0.01, "max_length": 16},
                "checkpoint_every": 4,
            },
        }
    )
    image = alice.create_project(
        {
            **common,
            "name": f"keras-ic-{uuid.uuid4().hex[:8]}",
            "dataset": f"hf://datasets/{COLORS}@main",
            "task": "image-classification",
            "train": {"args": {"max_steps": 8, "batch_size": 4, "learning_rate": 0.01}},
        }
    )
    deployments = {}
    for project, total in ((text, 12), (image, 8)):
        run_id = project["current_run_id"]
        run = alice.wait_for_run(run_id, timeout=900)
        assert run["status"] == "deployed", why(alice, run_id, platform.log)
        events = alice.events(run_id)
        steps = [e["payload"]["step"] for e in of_type(events, "TrainingProgress")]
        assert steps == sorted(steps) and steps[-1] == total
        assert of_type(events, "NodesReady")[0]["payload"]["env"]["framework"] == "tensorflow"
        deployments[project["id"]] = of_type(events, "ModelDeployed")[0]["payload"]["deployment_id"]

    r = alice.http.post(
        f"/api/deployments/{deployments[text['id']]}/predict",
        json={"inputs": ["a lovely film", "bad"]},
    )
    assert r.status_code == 200, r.text
    outputs = r.json()["outputs"]
    assert len(outputs) == 2 and {o["label"] for o in outputs} <= {"pos", "neg"}
    assert all(0.0 < o["score"] <= 1.0 for o in outputs)

    red = [[[200, 10, 10]] * 64] * 64
    predict = f"/api/deployments/{deployments[image['id']]}/predict"
    r = alice.http.post(predict, json={"inputs": [red]})
    assert r.status_code == 200, r.text
    (output,) = r.json()["outputs"]
    assert output["label"] in ("red", "green") and 0.0 < output["score"] <= 1.0
    r = alice.http.post(predict, json={"inputs": ["text"]})
    assert 400 <= r.status_code < 500 and "numbers" in r.text, r.text


def _png(size: int, rgb: tuple[int, int, int]) -> bytes:
    raw = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
