from __future__ import annotations

from pathlib import Path

import pytest

from cli.specfile import SpecError, load_spec

BASIC = """
name: demo
model: hf://sentence-transformers/all-MiniLM-L6-v2@main
dataset: hf://datasets/stanfordnlp/imdb
task: text-classification
train: {args: {epochs: 1}}
deploy: {enabled: true}
"""


def _write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_spec_loads_as_dict(tmp_path: Path) -> None:
    data = load_spec(_write(tmp_path, BASIC))
    assert data["name"] == "demo" and data["deploy"] == {"enabled": True}


def test_name_override(tmp_path: Path) -> None:
    assert load_spec(_write(tmp_path, BASIC), name="other")["name"] == "other"


def test_custom_entrypoint_is_inlined(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print('hi')\n")
    spec = _write(
        tmp_path,
        "name: c\nmodel: hf://a/b\ntask: custom\ntrain: {entrypoint: train.py}\n",
    )
    assert load_spec(spec)["train"]["script"] == "print('hi')\n"


def test_missing_entrypoint_names_the_field(tmp_path: Path) -> None:
    spec = _write(tmp_path, "name: c\nmodel: hf://a/b\ntask: custom\ntrain: {entrypoint: x.py}\n")
    with pytest.raises(SpecError, match=r"train\.entrypoint.*x\.py"):
        load_spec(spec)


def test_entrypoint_outside_folder_refused(tmp_path: Path) -> None:
    (tmp_path / "evil.py").write_text("")
    sub = tmp_path / "p"
    sub.mkdir()
    spec = _write(sub, "name: c\nmodel: hf://a/b\ntask: custom\ntrain: {entrypoint: ../evil.py}\n")
    with pytest.raises(SpecError, match="inside"):
        load_spec(spec)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (BASIC.replace("name: demo", "name: Bad Name"), "name"),
        (BASIC + "colour: red\n", "colour"),
        (BASIC.replace("hf://sentence", "ftp://sentence"), "model"),
        (BASIC + "resources: {nodes: 0}\n", "resources.nodes"),
    ],
)
def test_invalid_spec_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(_write(tmp_path, text))
    assert f"{field}:" in str(info.value)


def test_not_yaml_or_not_mapping(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="mapping"):
        load_spec(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(SpecError, match="YAML"):
        load_spec(_write(tmp_path, "a: [\n"))
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
