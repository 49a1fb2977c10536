"""A local server speaking enough of the HuggingFace Hub HTTP API for the real client.

``huggingface_hub`` (``snapshot_download``, ``hf_hub_download``, ``HfApi.repo_info`` /
``model_info`` / ``dataset_info``, ``list_repo_tree``, ``list_repo_refs``) is pointed at it
with ``HF_ENDPOINT=hub.url`` (or ``endpoint=hub.url``). Endpoints served::

    GET  /api/{models|datasets}/{id}[/revision/{rev}]        repo info (sha, siblings)
    GET  /api/{models|datasets}/{id}/tree/{rev}[/{path}]      file listing (oid, size, lfs)
    GET  /api/{models|datasets}/{id}/refs                     branches and tags
    HEAD|GET /[datasets/]{id}/resolve/{rev}/{path}            file (X-Repo-Commit, ETag, ...)
    HEAD|GET /_lfs/{sha256}                                   LFS blob target of a redirect

Files of at least ``lfs_threshold`` bytes behave like LFS files on the Hub: ``resolve``
answers ``302`` with ``X-Linked-Etag`` (sha256), ``X-Linked-Size`` and ``Location`` (same
host, so the client follows it and keeps auth; the target repeats ``X-Repo-Commit``);
smaller files are served inline with ``ETag`` = the git blob sha1. Range requests
(``bytes=N-`` / ``bytes=N-M``) answer ``206``.
Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``,
``GatedRepo``) exactly as the client parses them.

Usage::

    with HubServer() as hub:
        sha = hub.commit("org/tiny", {"config.json": b"{}"})      # 40-hex sha; repo auto-created
        os.environ["HF_ENDPOINT"] = hub.url

Run ``python -m tests.support.hf_server --port 8999 --repo org/name=DIR`` to serve folders.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = ["HubServer", "RepoFileEntry"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RepoFileEntry:
    """One file of a commit: content in memory (``data``) or on disk (``source``)."""

    size: int
    sha256: str
    git_oid: str  # sha1 of "blob <size>\0<content>", as git and the Hub report it
    data: bytes | None = None
    source: Path | None = None

    def open(self) -> BinaryIO:
        if self.source is not None:
            return self.source.open("rb")
        import io

        return io.BytesIO(self.data or b"")


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    commits: dict[str, dict[str, RepoFileEntry]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    token: str | None = None  # gated/private: this token is required
    private: bool = False
    metadata_public: bool = False  # gated: repo info and tree answer without the token
    created_at: str = field(default_factory=lambda: _hub_time())

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.tags:
            return self.tags[revision]
        if revision in self.commits:
            return revision
        return None


def _hub_time() -> str:
    """A timestamp in the Hub's format (``%Y-%m-%dT%H:%M:%S.%fZ``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _entry_from_bytes(data: bytes) -> RepoFileEntry:
    oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324 - git's id
    return RepoFileEntry(len(data), hashlib.sha256(data).hexdigest(), oid, data=data)


def _entry_from_path(path: Path) -> RepoFileEntry:
    size = path.stat().st_size
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size)  # noqa: S324
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha256.update(chunk)
            sha1.update(chunk)
    return RepoFileEntry(size, sha256.hexdigest(), sha1.hexdigest(), source=path)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        hub: Any,
        handler: type[BaseHTTPRequestHandler] | None = None,
    ) -> None:
        self.hub = hub  # the HubServer (or KaggleServer) whose content is served
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, handler or _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Close kept-alive connections so a stopped server really answers nothing."""
        with self.sockets_lock:
            sockets = list(self.open_sockets)
            self.open_sockets.clear()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class HubServer:
    """An in-memory HuggingFace Hub on ``127.0.0.1:<port>``, served from a thread.

    Public attributes: ``url`` (use as ``HF_ENDPOINT``), ``requests`` (list of
    ``(method, path)`` seen, path without query), ``lfs_threshold``, ``bytes_per_second``
    (throttle file bodies; None = full speed).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        lfs_threshold: int = 1 << 20,
        bytes_per_second: float | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.lfs_threshold = lfs_threshold
        self.bytes_per_second = bytes_per_second
        self.requests: list[tuple[str, str]] = []
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._lfs: dict[str, RepoFileEntry] = {}
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._counter = 0

    # -- lifecycle -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> HubServer:
        """Start serving (again, on the same port after :meth:`stop`)."""
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections (the port stays reserved for start)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.drop_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- content ---------------------------------------------------------------------

    def _repo(self, repo_id: str, repo_type: str, *, create: bool = False) -> _Repo:
        key = (repo_type, repo_id)
        with self._lock:
            repo = self._repos.get(key)
            if repo is None:
                if not create:
                    raise KeyError(f"no {repo_type} repo {repo_id}")
                repo = self._repos[key] = _Repo(repo_type=repo_type, repo_id=repo_id)
            return repo

    def _commit_entries(
        self,
        repo_id: str,
        entries: Mapping[str, RepoFileEntry | None],
        *,
        repo_type: str,
        branch: str,
        message: str,
        replace: bool,
    ) -> str:
        with self._lock:
            repo = self._repo(repo_id, repo_type, create=True)
            parent = repo.branches.get(branch)
            tree = {} if (replace or parent is None) else dict(repo.commits[parent])
            for path, entry in entries.items():
                if entry is None:
                    tree.pop(path, None)
                else:
                    tree[path.lstrip("/")] = entry
                    if entry.size >= self.lfs_threshold:
                        self._lfs[entry.sha256] = entry
            self._counter += 1
            material = json.dumps(
                [parent, sorted((p, e.git_oid) for p, e in tree.items()), message, self._counter]
            )
            sha = hashlib.sha1(material.encode()).hexdigest()  # noqa: S324 - a commit id
            repo.commits[sha] = tree
            repo.branches[branch] = sha
            return sha

    def commit(
        self,
        repo_id: str,
        files: Mapping[str, bytes | None],
        *,
        repo_type: str = "model",
        branch: str = "main",
        message: str = "update",
        replace: bool = False,
    ) -> str:
        """Commit ``files`` (path -> bytes; None deletes) on ``branch``; returns the sha.

        The new tree is the branch's previous tree plus ``files`` (``replace=True``: only
        ``files``). The repo and the branch are created if missing.
        """
        entries = {p: None if d is None else _entry_from_bytes(d) for p, d in files.items()}
        return self._commit_entries(
            repo_id, entries, repo_type=repo_type, branch=branch, message=message, replace=replace
        )

    def add_repo_dir(
        self,
        repo_id: str,
        directory: Path,
        *,
        repo_type: str = "model",
        branch: str = "main",
        message: str = "add files",
    ) -> str:
        """Commit every file under ``directory`` (served streamed from disk); returns the sha."""
        directory = Path(directory)
        entries: dict[str, RepoFileEntry | None] = {}
        for path in sorted(directory.rglob("*")):
            rel = path.relative_to(directory)
            if path.is_file() and not any(part.startswith(".") for part in rel.parts):
                entries[rel.as_posix()] = _entry_from_path(path)
        return self._commit_entries(
            repo_id, entries, repo_type=repo_type, branch=branch, message=message, replace=False
        )

    def create_tag(self, repo_id: str, tag: str, sha: str, *, repo_type: str = "model") -> None:
        """Point tag ``tag`` at commit ``sha``."""
        with self._lock:
            repo = self._repo(repo_id, repo_type)
            if sha not in repo.commits:
                raise KeyError(f"{repo_id} has no commit {sha}")
            repo.tags[tag] = sha

    def set_branch(self, repo_id: str, branch: str, sha: str, *, repo_type: str = "model") -> None:
        """Point ``branch`` at commit ``sha`` (create it or move it)."""
        with self._lock:
            repo = self._repo(repo_id, repo_type)
            if sha not in repo.commits:
                raise KeyError(f"{repo_id} has no commit {sha}")
            repo.branches[branch] = sha

    def gate(
        self,
        repo_id: str,
        *,
        token: str,
        repo_type: str = "model",
        private: bool = False,
        metadata_public: bool = False,
    ) -> None:
        """Require ``Authorization: Bearer <token>``.

        Gated (default): 401 ``GatedRepo`` without a token, 403 ``GatedRepo`` with a wrong
        one. ``private=True``: 401 ``RepoNotFound`` either way, as the Hub hides private
        repos. ``metadata_public=True`` (gated only): repo info and tree answer anyone, as
        huggingface.co does for gated repos; only file downloads need the token.
        """
        with self._lock:
            repo = self._repo(repo_id, repo_type, create=True)
            repo.token, repo.private = token, private
            repo.metadata_public = metadata_public and not private

    def delete_repo(self, repo_id: str, *, repo_type: str = "model") -> None:
        with self._lock:
            self._repos.pop((repo_type, repo_id), None)

    def head(self, repo_id: str, branch: str = "main", *, repo_type: str = "model") -> str:
        """The commit sha ``branch`` points at."""
        return self._repo(repo_id, repo_type).branches[branch]

    def downloads(self, path_suffix: str = "") -> int:
        """How many GETs of file content (resolve or LFS) were served, optionally filtered."""
        return sum(
            1
            for method, path in list(self.requests)
            if method == "GET"
            and ("/resolve/" in path or path.startswith("/_lfs/"))
            and path.endswith(path_suffix)
        )


# --- request handling --------------------------------------------------------------------


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    @property
    def hub(self) -> HubServer:
        return self.server.hub

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch(head=False)

    def _dispatch(self, *, head: bool) -> None:
        parts = urlsplit(self.path)
        self.hub.requests.append((self.command, parts.path))
        try:
            self._route(parts.path, parse_qs(parts.query), head=head)
        except _HubError as err:
            self._error(err, head=head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # routing ---------------------------------------------------------------------------

    def _route(self, path: str, _query: dict[str, list[str]], *, head: bool) -> None:
        segments = [unquote(s) for s in path.strip("/").split("/")]
        if segments[:1] == ["_lfs"] and len(segments) == 2:
            entry = self.hub._lfs.get(segments[1])
            if entry is None:
                raise _HubError(404, "EntryNotFound", "LFS object not found")
            commit = _query.get("commit", [None])[0]
            self._send_file(entry, head=head, etag=entry.sha256, commit=commit)
            return
        if segments[:1] == ["api"] and len(segments) >= 4 and segments[1] in ("models", "datasets"):
            self._api(segments[1][:-1], segments[2:])
            return
        repo_type = "model"
        if segments[:1] in (["datasets"], ["models"]):
            repo_type = "dataset" if segments[0] == "datasets" else "model"
            segments = segments[1:]
        if "resolve" in segments:
            i = segments.index("resolve")
            if i in (1, 2) and len(segments) >= i + 3:
                repo_id = "/".join(segments[:i])
                self._resolve(
                    repo_type, repo_id, segments[i + 1], "/".join(segments[i + 2 :]), head
                )
                return
        raise _HubError(404, None, "Not Found")

    def _api(self, repo_type: str, rest: list[str]) -> None:
        # rest = owner/name[/revision/<rev>|/tree/<rev>[/path]|/refs]
        for split in (2, 1):
            repo_id, tail = "/".join(rest[:split]), rest[split:]
            if (repo_type, repo_id) in self.hub._repos:
                break
        else:
            raise _HubError(401, "RepoNotFound", "Repository not found")
        repo = self.hub._repos[(repo_type, repo_id)]
        if not repo.metadata_public:
            repo = self._authorise(repo_type, repo_id)
        if not tail or tail[0] == "revision":
            revision = "/".join(tail[1:]) if tail else "main"
            sha = self._commit(repo, revision)
            self._json(self._info(repo, sha))
        elif tail[0] == "tree" and len(tail) >= 2:
            sha = self._commit(repo, tail[1])
            prefix = "/".join(tail[2:])
            self._json(self._tree(repo, sha, prefix))
        elif tail == ["refs"]:

            def refs(kind: str, items: dict[str, str]) -> list[dict[str, str]]:
                return [
                    {"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": s}
                    for n, s in sorted(items.items())
                ]

            self._json(
                {
                    "branches": refs("heads", repo.branches),
                    "tags": refs("tags", repo.tags),
                    "converts": [],
                    "pullRequests": [],
                }
            )
        else:
            raise _HubError(404, None, "Not Found")

    def _authorise(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self.hub._repos.get((repo_type, repo_id))
        if repo is None:
            raise _HubError(401, "RepoNotFound", "Repository not found")
        if repo.token is not None:
            header = self.headers.get("Authorization", "")
            given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
            if given != repo.token:
                if repo.private:
                    raise _HubError(401, "RepoNotFound", "Repository not found")
                if not given:
                    raise _HubError(
                        401,
                        "GatedRepo",
                        f"Access to {repo_type} {repo_id} is restricted. You must have access "
                        "to it and be authenticated to access it. Please log in.",
                    )
                raise _HubError(
                    403,
                    "GatedRepo",
                    f"Access to {repo_type} {repo_id} is restricted and you are not in the "
                    "authorized list.",
                )
        return repo

    @staticmethod
    def _commit(repo: _Repo, revision: str) -> str:
        sha = repo.resolve(revision)
        if sha is None:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return sha

    def _info(self, repo: _Repo, sha: str) -> dict[str, Any]:
        files = repo.commits[sha]
        siblings = []
        for path, entry in sorted(files.items()):
            item: dict[str, Any] = {"rfilename": path, "size": entry.size, "blobId": entry.git_oid}
            if entry.size >= self.hub.lfs_threshold:
                item["lfs"] = {"size": entry.size, "sha256": entry.sha256, "pointerSize": 134}
            siblings.append(item)
        return {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],  # noqa: S324
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": sha,
            "lastModified": _hub_time(),
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": "auto" if (repo.token and not repo.private) else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(e.size for e in files.values()),
        }

    def _tree(self, repo: _Repo, sha: str, prefix: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        folders: set[str] = set()
        for path, entry in sorted(repo.commits[sha].items()):
            if prefix and not path.startswith(prefix.rstrip("/") + "/"):
                continue
            parents = path.split("/")[:-1]
            for depth in range(1, len(parents) + 1):
                folders.add("/".join(parents[:depth]))
            item: dict[str, Any] = {
                "type": "file",
                "oid": entry.git_oid,
                "size": entry.size,
                "path": path,
            }
            if entry.size >= self.hub.lfs_threshold:
                item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": 134}
            out.append(item)
        for folder in sorted(folders):
            if not prefix or folder.startswith(prefix.rstrip("/") + "/"):
                oid = hashlib.sha1(folder.encode()).hexdigest()  # noqa: S324
                out.append({"type": "directory", "oid": oid, "size": 0, "path": folder})
        return out

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str, head: bool) -> None:
        repo = self._authorise(repo_type, repo_id)
        sha = self._commit(repo, revision)
        entry = repo.commits[sha].get(path)
        if entry is None:
            raise _HubError(404, "EntryNotFound", f"{path} does not exist on {revision}", sha)
        if entry.size >= self.hub.lfs_threshold:
            self.send_response(302)
            self.send_header("Location", f"/_lfs/{entry.sha256}?commit={sha}")
            self.send_header("X-Repo-Commit", sha)
            self.send_header("X-Linked-Etag", f'"{entry.sha256}"')
            self.send_header("X-Linked-Size", str(entry.size))
            self.send_header("ETag", f'"{entry.git_oid}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send_file(entry, head=head, etag=entry.git_oid, commit=sha)

    # responses -------------------------------------------------------------------------

    def _send_file(
        self, entry: RepoFileEntry, *, head: bool, etag: str, commit: str | None
    ) -> None:
        start, end = 0, entry.size - 1
        status = 200
        range_header = self.headers.get("Range")
        if range_header and range_header.startswith("bytes=") and entry.size > 0:
            first, _, last = range_header[6:].split(",")[0].partition("-")
            start = int(first) if first else max(entry.size - int(last), 0)
            end = int(last) if (first and last) else entry.size - 1
            end = min(end, entry.size - 1)
            if start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{entry.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        length = max(end - start + 1, 0)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{etag}"')
        if commit is not None:
            self.send_header("X-Repo-Commit", commit)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{entry.size}")
        self.end_headers()
        if head:
            return
        for chunk in _read_range(entry, start, length):
            self.wfile.write(chunk)
            if self.hub.bytes_per_second:
                time.sleep(len(chunk) / self.hub.bytes_per_second)

    def _json(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, err: _HubError, *, head: bool) -> None:
        data = json.dumps({"error": err.message}).encode()
        self.send_response(err.status)
        self.send_header("Content-Type", "application/json")
        if err.code:
            self.send_header("X-Error-Code", err.code)
        self.send_header("X-Error-Message", err.message)
        if err.commit:
            self.send_header("X-Repo-Commit", err.commit)
        self.send_header("Content-Length", "0" if head else str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)


def _read_range(entry: RepoFileEntry, start: int, length: int) -> Iterator[bytes]:
    chunk_size = 64 * 1024
    with entry.open() as handle:
        handle.seek(start)
        left = length
        while left > 0:
            chunk = handle.read(min(chunk_size, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def resolve_url(
    hub_url: str, repo_id: str, path: str, *, revision: str = "main", repo_type: str = "model"
) -> str:
    """The ``resolve`` URL of a file, as ``hf_hub_url`` builds it."""
    prefix = "datasets/" if repo_type == "dataset" else ""
    return f"{hub_url}/{prefix}{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve folders as HuggingFace Hub repos.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--repo",
        action="append",
        default=[],
        metavar="[datasets/]ORG/NAME=DIR",
        help="serve DIR as a repo (prefix the id with datasets/ for a dataset repo)",
    )
    args = parser.parse_args(argv)
    hub = HubServer(host=args.host, port=args.port)
    for spec in args.repo:
        repo_id, _, directory = spec.partition("=")
        repo_type = "model"
        if repo_id.startswith("datasets/"):
            repo_id, repo_type = repo_id.removeprefix("datasets/"), "dataset"
        sha = hub.add_repo_dir(repo_id, Path(directory), repo_type=repo_type)
        print(f"{repo_type} {repo_id} @ main = {sha}", flush=True)
    hub.start()
    print(f"HF_ENDPOINT={hub.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        hub.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
