"""Moving artifacts between the encrypted store and a node's run workspace.

Layout of a run workspace on a node (``<node workdir>/aidp-run-<run id>``)::

    cache/blobs/<sha256>   decrypted blobs, content-addressed: a relaunch re-sends nothing
    model/ data/           hard links into the cache, by the manifests' relative paths
    resume/                the checkpoint being resumed from
    src/                   the task scripts and aidp_progress.py
    checkpoints/ output/   written by training, stored encrypted by the trainer

The cache lives inside the workspace so plaintext exists only there; removing the
workspace (when the run's nodes are released or the run ends undeployed) removes it all.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from services.trainer.nodes import NodeExecutor
from shared.store import ArtifactStore, Manifest, ManifestFile

__all__ = ["TASKS_DIR", "stage_manifest", "stage_sources", "store_tree", "workspace_of"]

TASKS_DIR = Path(__file__).parent / "tasks"
PROGRESS_CLIENT = Path(__file__).parent / "progress_client.py"
SERVING_DIR = Path(__file__).parent / "serving"


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
    manifest = await asyncio.to_thread(store.get_manifest, key)
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


async def stage_sources(*, executor: NodeExecutor, workspace: str, extra: dict[str, str]) -> None:
    """Copy the task scripts, ``aidp_progress.py``, the serving script and ``extra`` files."""
    files: dict[str, bytes] = {
        f"src/{p.name}": p.read_bytes() for p in sorted(TASKS_DIR.glob("*.py"))
    }
    files["src/aidp_progress.py"] = PROGRESS_CLIENT.read_bytes()
    for p in sorted(SERVING_DIR.glob("*.py")):
        files[f"src/serving_{p.name}"] = p.read_bytes()
    for rel, text in extra.items():
        files[rel] = text.encode()
    for rel, data in files.items():
        await executor.write_chunks(posixpath.join(workspace, rel), _once(data))


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def store_tree(
    *,
    executor: NodeExecutor,
    store: ArtifactStore,
    root: str,
    source: str,
    revision: str,
    meta: dict[str, object],
) -> tuple[str, int]:
    """Encrypt every file under ``root`` on the node into the store: (manifest key, bytes)."""
    files: list[ManifestFile] = []
    for rel in await executor.list_files(root):
        if posixpath.basename(rel).startswith("."):
            continue
        digest, size = await _put_remote(executor, store, posixpath.join(root, rel))
        files.append(ManifestFile(path=rel, digest=digest, size=size))
    manifest = Manifest(source=source, revision=revision, files=files, meta=dict(meta))
    key = await asyncio.to_thread(store.put_manifest, manifest)
    return key, sum(f.size for f in files)


async def _put_remote(executor: NodeExecutor, store: ArtifactStore, path: str) -> tuple[str, int]:
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
    return await worker
