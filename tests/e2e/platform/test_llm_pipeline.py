"""LLM fine-tuning end to end on the embedded platform (issue 15): a tiny Llama chat model
and a chat dataset on the test hub; ``task: chat, method: lora`` is checked before any node
exists, trains with TRL + peft in a real run environment, and registers the adapter with
its lineage; a dataset with a broken row fails the check with its row number and nothing is
provisioned; bad LoRA specs are refused with 422."""

from __future__ import annotations

import io
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.platform.conftest import embedded_platform
from tests.support.hf_server import HubServer
from tests.support.pipeline import ApiUser
from tests.support.tiny_chat_model import (
    TINY_CHAT_DATASET,
    chat_dataset_rows,
    chat_spec,
    publish_tiny_chat_project,
    write_jsonl,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BROKEN_DATASET = "aidp-tests/tiny-chat-broken"
BROKEN_ROW = 5  # 1-based: the line of train.jsonl whose roles do not alternate


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("llm")
    with HubServer() as hub:
        publish_tiny_chat_project(hub, root / "mirror")
        rows = chat_dataset_rows(16)
        rows[BROKEN_ROW - 1] = {
            "messages": [
                {"role": "user", "content": "What colour is the sky?"},
                {"role": "user", "content": "Answer me."},
            ]
        }
        data = write_jsonl(root / "broken" / "train.jsonl", rows)
        hub.commit(BROKEN_DATASET, {"train.jsonl": data.read_bytes()}, repo_type="dataset")
        log = root / "aidp.log"
        with embedded_platform(root / "data", hub, log) as url:
            yield url, log


def _name() -> str:
    return f"llm-{uuid.uuid4().hex[:8]}"


def _types(user: ApiUser, run_id: str) -> list[str]:
    return [e["event"]["type"] for e in user.events(run_id)]


def test_chat_lora_is_checked_trains_and_registers_the_adapter_with_lineage(
    platform: tuple[str, Path],
) -> None:
    url, log = platform
    alice = ApiUser(url)
    project = alice.create_project(chat_spec(_name(), dataset=TINY_CHAT_DATASET, method="lora"))
    run = alice.wait_for_run(project["current_run_id"], timeout=1500)
    assert run["status"] == "succeeded", log.read_text()[-6000:]

    events = alice.events(run["id"])
    types = [e["event"]["type"] for e in events]
    # the check ran before any node was asked for, and passed
    assert types.index("DatasetValidated") < types.index("NodesReady"), types
    report = next(e["event"]["payload"] for e in events if e["event"]["type"] == "DatasetValidated")
    assert report["rows_checked"] == 48 and report["method"] == "lora"
    assert report["tokens_mean"] > 0 and report["estimated_steps"] == 6
    steps = [
        e["event"]["payload"]["step"] for e in events if e["event"]["type"] == "TrainingProgress"
    ]
    assert steps and steps[-1] == 6

    models = alice.http.get(f"/api/projects/{project['id']}/models").json()
    assert len(models) == 1
    model = models[0]
    assert model["method"] == "lora"
    adapter = model["lineage"]["adapter"]
    assert adapter["method"] == "lora" and adapter["r"] == 4 and adapter["merged"] is False
    assert sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]  # peft's Llama default
    assert adapter["base"]["source"].startswith("hf://aidp-tests/tiny-chat-llama")
    assert len(adapter["base"]["revision"]) == 40
    assert model["lineage"]["method"] == "lora"

    # the version holds the adapter and its base: base + adapter load from the download
    download = alice.http.get(f"/api/models/{model['id']}/download")
    assert download.status_code == 200
    names = set(tarfile.open(fileobj=io.BytesIO(download.content)).getnames())
    names = {n.split("/", 1)[1] for n in names if "/" in n}  # under model-v<N>/
    assert {"adapter_config.json", "adapter_model.safetensors", "aidp_adapter.json"} <= names
    assert {"base/config.json", "base/model.safetensors", "base/tokenizer.json"} <= names
    assert "model.safetensors" not in names  # no full copy of the weights

    # another user sees none of it
    mallory = ApiUser(url)
    assert mallory.http.get(f"/api/projects/{project['id']}/models").status_code == 404
    assert mallory.http.get(f"/api/models/{model['id']}/download").status_code == 404


def test_a_broken_row_fails_the_check_with_its_row_number_and_provisions_nothing(
    platform: tuple[str, Path],
) -> None:
    url, log = platform
    alice = ApiUser(url)
    project = alice.create_project(chat_spec(_name(), dataset=BROKEN_DATASET))
    run = alice.wait_for_run(project["current_run_id"], timeout=600)
    assert run["status"] == "failed", log.read_text()[-4000:]
    assert f"row {BROKEN_ROW} of train.jsonl" in (run.get("error") or ""), run

    events = alice.events(run["id"])
    types = [e["event"]["type"] for e in events]
    failed = next(e["event"]["payload"] for e in events if e["event"]["type"] == "ValidationFailed")
    assert failed["error_rows"] == 1 and failed["rows_checked"] == 16
    assert [(i["row"], i["file"]) for i in failed["issues"]] == [(BROKEN_ROW, "train.jsonl")]
    assert "roles not alternating" in failed["issues"][0]["problem"]
    # no compute: nothing was provisioned, started or released
    for kind in ("ProvisioningProgress", "NodesReady", "TrainingStarted", "NodesReleased"):
        assert kind not in types, types


def test_unknown_lora_keys_and_qlora_without_cuda_are_refused(
    platform: tuple[str, Path],
) -> None:
    url, _ = platform
    alice = ApiUser(url)
    spec = chat_spec(_name(), args={"lora_rank": 8})
    r = alice.http.post("/api/projects", json={"name": spec["name"], "spec": spec})
    assert r.status_code == 422, r.text
    assert "lora_rank" in r.text and "did you mean lora_r" in r.text

    spec = chat_spec(_name(), method="qlora")
    r = alice.http.post("/api/projects", json={"name": spec["name"], "spec": spec})
    assert r.status_code == 422, r.text
    assert "qlora needs CUDA" in r.text and "use method lora" in r.text

    spec = chat_spec(_name(), method="full", args={"lora_r": 4})
    r = alice.http.post("/api/projects", json={"name": spec["name"], "spec": spec})
    assert r.status_code == 422 and "lora_r" in r.text
    assert alice.http.get("/api/projects").json() == [] or all(
        p["name"] != spec["name"] for p in alice.http.get("/api/projects").json()
    )
