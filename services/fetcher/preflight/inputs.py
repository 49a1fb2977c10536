"""What the check reads, decrypted by the fetcher from the store into memory (no
plaintext on disk): the model's tokenizer and config files and the dataset's first rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from services.fetcher.preflight.limits import MAX_FILE_BYTES, MAX_MODEL_FILE_BYTES, ROWS
from shared.spec import ProjectSpec
from shared.store import ArtifactStore, ManifestFile

__all__ = ["collect_inputs"]

#: The model files the check reads.
_MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
_DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".tsv", ".txt")


def _read(store: ArtifactStore, f: ManifestFile) -> bytes:
    return b"".join(store.read(f.digest))


def _lines(store: ArtifactStore, f: ManifestFile) -> Iterator[bytes]:
    """The file's lines, decrypted chunk by chunk (stops early when the caller does)."""
    rest = b""
    for chunk in store.read(f.digest):
        rest += bytes(chunk)
        *lines, rest = rest.split(b"\n")
        yield from lines
    if rest:
        yield rest


def _data_files(paths: list[str], chat: bool) -> list[str]:
    """The dataset files the task reads, sorted (hidden folders skipped)."""
    kinds = (".jsonl", ".json", ".parquet") if chat else _DATA_SUFFIXES
    return sorted(
        p
        for p in paths
        if PurePosixPath(p).suffix.lower() in kinds
        and not any(part.startswith(".") for part in PurePosixPath(p).parts)
    )


def collect_inputs(
    store: ArtifactStore, spec: ProjectSpec, *, model_key: str, dataset_key: str
) -> dict[str, Any]:
    """Decrypt what the check reads (the fetcher's side): the model's tokenizer and config
    files, each data file's first ROWS lines (JSONL, with its row count) or its bytes."""
    model = {f.path: f for f in store.get_manifest(model_key).files}
    files = {
        name: _read(store, model[name])
        for name in _MODEL_FILES
        if name in model and model[name].size <= MAX_MODEL_FILE_BYTES
    }
    dataset = {f.path: f for f in store.get_manifest(dataset_key).files}
    entries: list[dict[str, Any]] = []
    budget = ROWS
    for path in _data_files(list(dataset), spec.task == "chat"):
        f = dataset[path]
        if path.lower().endswith(".jsonl"):
            lines: list[bytes] = []
            total = 0
            for line in _lines(store, f):
                if line.strip():
                    total += 1
                    if len(lines) < budget:
                        lines.append(line)
            budget -= len(lines)
            entries.append({"path": path, "lines": lines, "total": total})
        elif f.size > MAX_FILE_BYTES:
            entries.append({"path": path, "skipped": True})
        else:
            entries.append({"path": path, "data": _read(store, f)})
    return {"model": files, "data": entries}
