"""The pre-flight check of chat / causal-lm data, on a real encrypted store and the tiny chat
model's real tokenizer and chat template."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from services.fetcher.preflight import check_artifacts, estimate_params
from services.trainer.staging import node_sources
from shared.events import DatasetValidated, ValidationFailed
from shared.secrets import InMemoryVault
from shared.spec import ProjectSpec
from shared.store import ArtifactStore, Manifest, ManifestFile
from tests.support.tiny_chat_model import chat_dataset_rows, chat_spec, make_tiny_chat_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_chat_model(tmp_path_factory.mktemp("m") / "tiny-chat")


def _put(store: ArtifactStore, files: dict[str, bytes]) -> str:
    entries = []
    for path, data in sorted(files.items()):
        digest, size = store.put_stream([data])
        entries.append(ManifestFile(path, digest, size))
    return store.put_manifest(Manifest(source="test", revision="r", files=entries))


def _check(
    tmp_path: Path,
    model_dir: Path,
    data: bytes,
    *,
    template: str | None = None,
    timeout: float = 120,
    **spec_kw: Any,
) -> DatasetValidated | ValidationFailed:
    store = ArtifactStore(tmp_path / "store", InMemoryVault())
    files = {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()}
    if template is not None:
        files["chat_template.jinja"] = template.encode()
        config = json.loads(files["tokenizer_config.json"])
        config.pop("chat_template", None)
        files["tokenizer_config.json"] = json.dumps(config).encode()
    model_key = _put(store, files)
    dataset_key = _put(store, {"train.jsonl": data})
    spec = ProjectSpec.model_validate(chat_spec("pf", **spec_kw))
    return check_artifacts(
        store, spec, model_key=model_key, dataset_key=dataset_key, timeout=timeout
    )


def _jsonl(rows: list[Any]) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def test_a_good_chat_dataset_passes_with_token_counts_and_an_estimate(
    tmp_path: Path, model_dir: Path
) -> None:
    event = _check(tmp_path, model_dir, _jsonl(chat_dataset_rows(48)))
    assert isinstance(event, DatasetValidated), event
    assert event.rows_checked == event.rows_total == 48
    assert event.tokens_mean and 10 < event.tokens_mean < 64 and event.tokens_max
    assert event.method == "lora" and event.estimated_steps == 6  # max_steps of chat_spec
    assert event.model_params and event.model_params < 1_000_000
    assert event.over_max_length == 0 and event.issues == []


def test_malformed_rows_fail_with_their_row_numbers(tmp_path: Path, model_dir: Path) -> None:
    rows: list[Any] = chat_dataset_rows(10)
    rows[2] = {"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "x"}]}
    empty = {"role": "assistant", "content": ""}
    rows[4] = {"messages": [{"role": "user", "content": "hi"}, empty]}
    rows[6] = {"conversation": []}
    rows[7] = "{not json"
    event = _check(tmp_path, model_dir, _jsonl(rows))
    assert isinstance(event, ValidationFailed), event
    assert event.error_rows == 4 and event.rows_checked == 10
    problems = {i.row: i.problem for i in event.issues}
    assert set(problems) == {3, 5, 7, 8}
    assert "roles not alternating" in problems[3]
    assert "empty content" in problems[5]
    assert "missing column 'messages'" in problems[7]
    assert "not valid JSON" in problems[8]
    assert "row 3 of train.jsonl" in event.reason


def test_rows_over_max_length_are_warnings(tmp_path: Path, model_dir: Path) -> None:
    rows = chat_dataset_rows(6)
    rows[1]["messages"][-1]["content"] = "The apple is red. " * 40
    event = _check(tmp_path, model_dir, _jsonl(rows), args={"max_length": 64})
    assert isinstance(event, DatasetValidated)
    assert event.over_max_length == 1
    assert [(i.row, i.severity) for i in event.issues] == [(2, "warning")]
    assert "over max_length 64" in event.issues[0].problem


def test_method_left_out_is_chosen_from_the_model_size(tmp_path: Path) -> None:
    qwen_05b = {
        "model_type": "qwen2",
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    }
    params = estimate_params(qwen_05b)
    assert params is not None and 450e6 < params < 550e6  # Qwen2-0.5B: 494M
    assert estimate_params({"model_type": "bert"}) is None
    # the node decides with the same rule: its _lora imports the staged shared/model_size.py
    src = tmp_path / "src"
    for rel, data in node_sources().items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    sys.path.insert(0, str(src))
    try:
        import _lora  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(src))
        sys.modules.pop("_model_size", None)
    gpt2 = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "vocab_size": 50257}
    for config in (qwen_05b, gpt2, {"model_type": "bert"}):
        assert _lora.estimate_params(config) == estimate_params(config)


def test_a_hub_template_that_loops_is_cut_off_and_the_run_goes_on(
    tmp_path: Path, model_dir: Path
) -> None:
    looping = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    event = _check(tmp_path, model_dir, _jsonl(chat_dataset_rows(4)), template=looping, timeout=5)
    assert isinstance(event, DatasetValidated) and event.rows_checked == 0
    assert "did not finish in 5 s" in event.notes[0]


def test_a_template_reaching_for_python_internals_is_refused_by_the_sandbox(
    tmp_path: Path, model_dir: Path
) -> None:
    hostile = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    event = _check(tmp_path, model_dir, _jsonl(chat_dataset_rows(3)), template=hostile)
    assert isinstance(event, ValidationFailed) and event.error_rows == 3
    assert "the chat template failed" in event.issues[0].problem
    assert "unsafe" in event.issues[0].problem


def test_causal_lm_rows_need_their_text_column(tmp_path: Path, model_dir: Path) -> None:
    store = ArtifactStore(tmp_path / "store", InMemoryVault())
    model_key = _put(store, {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()})
    csv = b"text,label\nthe apple is red,1\n,0\nthe sky is blue,1\n"
    dataset_key = _put(store, {"train.csv": csv, ".hidden/x.csv": b"text\n\n"})
    spec = chat_spec("pf", method="full", args={"lora_r": None})
    spec["task"], spec["train"]["args"] = "causal-lm", {"max_steps": 4, "max_length": 32}
    event = check_artifacts(
        store, ProjectSpec.model_validate(spec), model_key=model_key, dataset_key=dataset_key
    )
    assert isinstance(event, ValidationFailed) and event.rows_checked == 3
    assert [(i.file, i.row) for i in event.issues] == [("train.csv", 2)]
    assert "missing or empty column 'text'" in event.issues[0].problem
