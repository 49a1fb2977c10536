"""Registered LoRA adapters: what a LoRA run's model version holds and where its base is.

A LoRA/QLoRA run's ``output/model`` (see ``tasks/_lora.py``) holds the adapter
(``adapter_config.json``, ``adapter_model.safetensors``), the tokenizer and
``aidp_adapter.json``. When it is registered unmerged, :func:`with_base` adds the base
model's files under ``base/`` to the version's manifest — the same blobs as the cached
base artifact (no byte is copied or sent), held for the version in the store
(:mod:`shared.blob_holds`) so that the fetcher evicting the base keeps them — so the
version is self-contained: a download or a server gets base + adapter from one manifest.
:func:`adapter_facts` reads ``aidp_adapter.json`` for the lineage (method, rank, alpha,
dropout, target modules).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from services.trainer.staging import StoredTree, manifest_of
from shared.store import ArtifactStore, Manifest, ManifestFile

__all__ = ["ADAPTER_FACTS", "BASE_DIR", "adapter_facts", "with_base"]

ADAPTER_FACTS = "aidp_adapter.json"
BASE_DIR = "base"
_MAX_FACTS_BYTES = 64 * 1024


def adapter_facts(store: ArtifactStore, tree: StoredTree) -> dict[str, Any]:
    """``aidp_adapter.json`` of a stored output tree, checked; {} when it is not a LoRA
    model (or the file is not what the task writes: the node is not trusted)."""
    entry = next((f for f in tree.files if f.path == ADAPTER_FACTS), None)
    if entry is None or entry.size > _MAX_FACTS_BYTES:
        return {}
    try:
        facts = json.loads(b"".join(store.read(entry.digest)))
    except ValueError:
        return {}
    if not isinstance(facts, dict) or facts.get("method") not in ("lora", "qlora"):
        return {}
    targets = facts.get("target_modules")
    if isinstance(targets, list):
        targets = [str(t)[:100] for t in targets[:64]]
    elif targets is not None:
        targets = str(targets)[:100]

    def number(name: str) -> float | None:
        value = facts.get(name)
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None

    return {
        "method": facts["method"],
        "r": number("r"),
        "lora_alpha": number("lora_alpha"),
        "lora_dropout": number("lora_dropout"),
        "target_modules": targets,
        "merged": facts.get("merged") is True,
    }


def with_base(store: ArtifactStore, tree: StoredTree, base_key: str) -> StoredTree:
    """``tree`` plus the base model's files under ``base/``, as a new manifest (the tree's
    own files keep their paths; a tree file already under ``base/`` is dropped)."""
    base = manifest_of(store, base_key)
    own = [f for f in tree.files if not f.path.startswith(f"{BASE_DIR}/")]
    files = [*own, *(ManifestFile(f"{BASE_DIR}/{f.path}", f.digest, f.size) for f in base.files)]
    old = store.get_manifest(tree.key)
    manifest = Manifest(
        source=old.source, revision=old.revision, files=files, meta={**old.meta, "base": "base/"}
    )
    existed = store.has(store.name_of_bytes(manifest.to_json()))
    key = store.put_manifest(manifest)
    # the fetcher may evict the base artifact later: the version keeps its base/ blobs
    store.holds.hold((f.digest for f in base.files), holder=key)
    created = tree.created if existed else tree.created | {key}
    return replace(
        tree,
        key=key,
        size=sum(f.size for f in files),
        files=tuple(files),
        created=frozenset(created),
    )
