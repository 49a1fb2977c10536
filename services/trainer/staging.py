"""Moving artifacts between the encrypted store and a node's run workspace.

Layout of a run workspace on a node (``<node workdir>/aidp-run-<run id>``)::

    cache/blobs/<name>     decrypted blobs by their store name: a relaunch re-sends nothing
    model/ data/           hard links into the cache, by the manifests' relative paths
    resume/                the checkpoint being resumed from
    src/                   the task scripts and what they import (node_sources)
    checkpoints/ output/   written by training, stored encrypted by the trainer

The cache lives inside the workspace so plaintext exists only there; removing the
workspace (when the run's nodes are released or the run ends undeployed) removes it all.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from services.trainer.nodes.base import NodeExecutor
from shared.errors import NotFound, ProviderError
from shared.store import ArtifactStore, DiskFull, Manifest, ManifestFile
from shared.store_migration import migrate_manifest, successor

__all__ = [
    "TASKS_DIR",
    "StoredTree",
    "manifest_of",
    "node_sources",
    "restore_missing",
    "stage_manifest",
    "stage_sources",
    "store_tree",
    "workspace_of",
]

TASKS_DIR = Path(__file__).parent / "tasks"
PROGRESS_CLIENT = Path(__file__).parent / "progress_client.py"
#: ``aidp_progress.keras_callback``'s implementation, staged beside it
PROGRESS_KERAS = Path(__file__).parent / "progress_keras.py"
SERVING_DIR = Path(__file__).parent / "model_server"
#: the parameter-count rule the pre-flight check uses too, staged as ``_model_size.py``
MODEL_SIZE = Path(__file__).parents[2] / "shared" / "model_size.py"


def workspace_of(executor: NodeExecutor, run_id: object) -> str:
    """The run's workspace path on the node."""
    return posixpath.join(executor.node.workdir, f"aidp-run-{run_id}")


async def _decrypted(store: ArtifactStore, digest: str) -> AsyncIterator[bytes]:
    """Decrypted, verified chunks of a blob, read in a worker thread."""
    iterator: Iterator[bytes] = store.read(digest)
    done = object()
    while True:
        chunk = await asyncio.to_thread(next, iterator, done)
        if chunk is done:
            return
        yield chunk  # type: ignore[misc]


async def stage_manifest(
    *, executor: NodeExecutor, store: ArtifactStore, key: str, workspace: str, dest: str
) -> int:
    """Place a manifest's files under ``workspace/dest``; returns the bytes transferred."""
    manifest = await asyncio.to_thread(manifest_of, store, key)
    cache = posixpath.join(workspace, "cache", "blobs")
    blobs = {f.digest: posixpath.join(cache, f.digest) for f in manifest.files}
    present = await executor.existing(blobs.values())
    sent = 0
    for f in manifest.files:
        blob = blobs[f.digest]
        if blob in present:
            continue
        await executor.write_chunks(blob, _decrypted(store, f.digest))
        present.add(blob)
        sent += f.size
    pairs = [(blobs[f.digest], posixpath.join(workspace, dest, f.path)) for f in manifest.files]
    if pairs:
        await executor.link_files(pairs)
    return sent


def manifest_of(store: ArtifactStore, key: str) -> Manifest:
    """The manifest ``key``; one named before keyed blob names (an ``ArtifactsCached`` the
    old version published before the upgrade) is followed to its migrated successor."""
    try:
        return store.get_manifest(key)
    except NotFound:
        if not store.has(successor(store, key)):
            raise
        return store.get_manifest(migrate_manifest(store, key))


def node_sources() -> dict[str, bytes]:
    """What a run's ``src/`` holds for training, by workspace-relative path: the task
    scripts, ``aidp_progress.py``, ``aidp_progress_keras.py`` and ``_model_size.py``."""
    files = {f"src/{p.name}": p.read_bytes() for p in sorted(TASKS_DIR.glob("*.py"))}
    files["src/aidp_progress.py"] = PROGRESS_CLIENT.read_bytes()
    files["src/aidp_progress_keras.py"] = PROGRESS_KERAS.read_bytes()
    files["src/_model_size.py"] = MODEL_SIZE.read_bytes()
    return files


async def stage_sources(*, executor: NodeExecutor, workspace: str, extra: dict[str, str]) -> None:
    """Copy the task scripts, ``aidp_progress.py`` (and ``aidp_progress_keras.py``), the
    serving script and ``extra`` files."""
    files = node_sources()
    for p in sorted(SERVING_DIR.glob("*.py")):
        files[f"src/serving_{p.name}"] = p.read_bytes()
    for rel, text in extra.items():
        files[rel] = text.encode()
    for rel, data in files.items():
        await executor.write_chunks(posixpath.join(workspace, rel), _once(data))


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@dataclass(frozen=True)
class StoredTree:
    """A node folder stored as a manifest."""

    key: str  #: the manifest key
    size: int  #: plaintext bytes of its files
    files: tuple[ManifestFile, ...]
    created: frozenset[str]  #: blobs (the manifest's too) that were not in the store before
    sent: int  #: bytes actually transferred (files already in the store are not re-sent)


async def store_tree(
    *,
    executor: NodeExecutor,
    store: ArtifactStore,
    root: str,
    source: str,
    revision: str,
    meta: dict[str, object],
) -> StoredTree:
    """Encrypt every file under ``root`` on the node into the store.

    Files are hashed (sha256) on the node first and named here with the store's naming key,
    which never goes to the node: one already in the store is referenced, not sent again (a
    checkpoint's unchanged files, a tokenizer equal to the base model's).
    """
    rels = [r for r in await executor.list_files(root) if not posixpath.basename(r).startswith(".")]
    paths = {rel: posixpath.join(root, rel) for rel in rels}
    hashes = await executor.hash_files(paths.values())
    files: list[ManifestFile] = []
    created: set[str] = set()
    sent = 0
    digests = {
        rel: await asyncio.to_thread(store.name_for_sha256, hashes[paths[rel]][0]) for rel in rels
    }
    stored = {rel for rel in rels if await asyncio.to_thread(store.has, digests[rel])}
    try:  # refused before any byte is sent when the new files cannot fit
        await asyncio.to_thread(
            store.ensure_room, sum(hashes[paths[rel]][1] for rel in rels if rel not in stored)
        )
        for rel in rels:
            size, digest = hashes[paths[rel]][1], digests[rel]
            if rel not in stored:
                digest, size = await _put_remote(executor, store, paths[rel], expect=digest)
                created.add(digest)
                sent += size
            files.append(ManifestFile(path=rel, digest=digest, size=size))
        manifest = Manifest(source=source, revision=revision, files=files, meta=dict(meta))
        key = await asyncio.to_thread(_put_manifest, store, manifest, created)
    except DiskFull:
        # no tree is half stored: what this call added goes (a concurrent tree that
        # shares one of these blobs stores it again: see restore_missing)
        for digest in created:
            await asyncio.to_thread(store.delete, digest)
        raise
    return StoredTree(key, sum(f.size for f in files), tuple(files), frozenset(created), sent)


def _put_manifest(store: ArtifactStore, manifest: Manifest, created: set[str]) -> str:
    existed = store.has(_manifest_key(store, manifest))
    key = store.put_manifest(manifest)
    if not existed:
        created.add(key)
    return key


def _manifest_key(store: ArtifactStore, manifest: Manifest) -> str:
    return store.name_of_bytes(manifest.to_json())


async def restore_missing(
    *, executor: NodeExecutor, store: ArtifactStore, root: str, tree: StoredTree
) -> int:
    """Store again any of ``tree``'s blobs that vanished (a concurrent prune by another
    replica deleted a blob this tree shares); returns how many were restored."""
    restored = 0
    for f in tree.files:
        if not await asyncio.to_thread(store.has, f.digest):
            await _put_remote(executor, store, posixpath.join(root, f.path), expect=f.digest)
            restored += 1
    if not await asyncio.to_thread(store.has, tree.key):
        raise ProviderError(f"manifest {tree.key} vanished from the store", retryable=True)
    return restored


async def _put_remote(
    executor: NodeExecutor, store: ArtifactStore, path: str, *, expect: str | None = None
) -> tuple[str, int]:
    """Stream one node file into the store (a thread encrypts; this task feeds it)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)

    def chunks() -> Iterator[bytes]:
        while True:
            item = asyncio.run_coroutine_threadsafe(queue.get(), loop).result()
            if item is None:
                return
            yield item

    worker = asyncio.ensure_future(asyncio.to_thread(store.put_stream, chunks()))
    try:
        async for chunk in executor.read_chunks(path):
            await queue.put(chunk)
    finally:
        await queue.put(None)
    digest, size = await worker
    if expect is not None and digest != expect:
        raise ProviderError(f"{path} changed on the node while it was stored", retryable=True)
    return digest, size
