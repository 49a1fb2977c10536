"""The ``s3://`` connector: the revision is a digest of the listing, taken again (and
compared) for every download; objects are read into partial files, then handed over."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from services.fetcher.connectors.base import Connector, Credentials, Progress, RemoteFile
from services.fetcher.connectors.s3.endpoint import ClientFactory, checked_endpoint, signed
from services.fetcher.connectors.s3.errors import s3_errors
from services.fetcher.connectors.s3.listing import S3Object, alias, digest, list_objects
from services.fetcher.connectors.s3.partials import locked, sweep_partials
from services.fetcher.connectors.s3.parts import PartReader
from services.fetcher.errors import FetchFailed
from shared.data_sources import parse_s3_uri
from shared.spec import Source

__all__ = ["S3Connector"]


class S3Connector(Connector):
    """Any S3-compatible object store through boto3 (see the package docstring)."""

    def __init__(
        self,
        *,
        allow_hosts: list[str],
        connect_timeout: float,
        read_timeout: float,
        part_bytes: int,
        partial_dir: Path,
    ) -> None:
        self.allow_hosts = allow_hosts
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.part_bytes = part_bytes
        self.partial_dir = partial_dir

    @property
    def _clients(self) -> ClientFactory:
        return ClientFactory(self.allow_hosts, self.connect_timeout, self.read_timeout)

    # -- the connector contract ----------------------------------------------------------

    def pinned_revision(self, source: Source) -> str | None:
        return None

    def credentialed(self, creds: Credentials) -> bool:
        return signed(creds)

    def resolve(self, source: Source, creds: Credentials) -> str:
        endpoint = self._endpoint(source, creds)
        return digest(endpoint, source, self._list(source, creds, endpoint))

    def authorize(self, source: Source, revision: str, creds: Credentials) -> bool:
        endpoint = self._endpoint(source, creds)
        objects = self._list(source, creds, endpoint)
        if digest(endpoint, source, objects) != revision:
            raise FetchFailed(f"{source.uri} changed while it was checked.", retryable=True)
        bucket, _ = parse_s3_uri(source.id)
        client = self._clients.client(source, creds, endpoint)
        with s3_errors(source, endpoint):
            client.head_object(Bucket=bucket, Key=objects[0].key, IfMatch=objects[0].etag)
        return not self.credentialed(creds)  # read without credentials: a public bucket

    def list_files(self, source: Source, revision: str, creds: Credentials) -> list[RemoteFile]:
        endpoint = self._endpoint(source, creds)
        objects = self._current(source, revision, creds, endpoint)
        bucket, _ = parse_s3_uri(source.id)
        return [
            RemoteFile(path=o.path, size=o.size, aliases=(alias(endpoint, bucket, o),))
            for o in objects
        ]

    def download(
        self,
        source: Source,
        revision: str,
        creds: Credentials,
        files: list[RemoteFile],
        workdir: Path,
        progress: Progress,
    ) -> Iterator[tuple[str, Path]]:
        endpoint = self._endpoint(source, creds)
        bucket, _ = parse_s3_uri(source.id)
        objects = {o.path: o for o in self._current(source, revision, creds, endpoint)}
        reader = PartReader(
            client=self._clients.client(source, creds, endpoint),
            source=source,
            endpoint=endpoint,
            bucket=bucket,
            part_bytes=self.part_bytes,
            progress=progress,
        )
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        sweep_partials(self.partial_dir)
        for index, item in enumerate(files):
            obj = objects[item.path]
            tag = f"{source.id}\n{revision}\n{obj.key}\n{obj.etag}\n{obj.size}"
            part = self.partial_dir / (hashlib.sha256(tag.encode()).hexdigest() + ".part")
            target = workdir / f"object-{index}"
            with locked(part) as fh:
                reader.fill(obj, fh)
                os.replace(part, target)  # complete: the scratch directory owns it now
            yield obj.path, target

    # -- internals -----------------------------------------------------------------------

    def _endpoint(self, source: Source, creds: Credentials) -> str | None:
        return checked_endpoint(source, creds, self.allow_hosts)

    def _list(self, source: Source, creds: Credentials, endpoint: str | None) -> list[S3Object]:
        return list_objects(self._clients.client(source, creds, endpoint), source, endpoint)

    def _current(
        self, source: Source, revision: str, creds: Credentials, endpoint: str | None
    ) -> list[S3Object]:
        """The listing, which must still give ``revision`` (else the fetch starts over)."""
        objects = self._list(source, creds, endpoint)
        if digest(endpoint, source, objects) != revision:
            raise FetchFailed(
                f"{source.uri} changed while it was fetched; it will be fetched again.",
                retryable=True,
            )
        return objects
