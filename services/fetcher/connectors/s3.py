"""``s3://bucket/prefix`` sources: any S3-compatible object store, through boto3.

Endpoint: the spec's ``dataset.endpoint``, else the owner's ``S3_ENDPOINT_URL`` secret, else
AWS. A given endpoint passes the SSRF guard's address rules (:func:`~..ssrf.check_host`):
internal addresses only when ``AIDP_FETCH_ALLOW_HOSTS`` names them, and plain ``http://``
only for such an allowed host (an on-premises store); every operation checks it again. A
plain-http endpoint is then addressed by the checked IP (pinned, path-style requests); an
https one by its name, which TLS verifies (a rebound address cannot present it).
Credentials: the ``S3_ACCESS_KEY_ID`` / ``S3_SECRET_ACCESS_KEY`` (optional
``S3_SESSION_TOKEN``) secrets; without them requests are unsigned (a public bucket).

The prefix names a folder (``s3://b/data/`` and ``s3://b/data`` alike: the keys under
``data/``, paths relative to it) or one object (a key equal to it: one file, its base name).
Folder markers (keys ending in ``/``) are skipped; a key that is no safe relative path
(``..``, empty segments, control characters) fails the fetch.

Revision: sha256 over the endpoint, the bucket and the sorted ``key, ETag, size`` lines of
the listing (64 hex): it changes whenever an object is added, removed or rewritten. The
listing is taken again for the download and must give the same digest, and each object is
read with ``If-Match: <ETag>``, so what is stored is exactly the revision's content.

Download: ranged GETs of ``AIDP_S3_PART_BYTES`` each, appended to a partial file under
``<work dir>/s3-partial`` named by the source, revision and object (locked while written).
An interrupted part is requested again from the bytes already on disk — within the same
attempt (up to 5 times in a row), in the job's next attempt, or after a restart — and the
file moves into the download's scratch directory once complete. Partial files untouched for
a week are deleted. Objects stored before (same endpoint, bucket, key, ETag and size) are
reused through their alias ``s3:<sha256>`` after the requester's access was checked.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import stamina

from services.fetcher.connectors.base import Connector, Credentials, Progress, RemoteFile
from services.fetcher.errors import FetchFailed
from services.fetcher.ssrf import check_host, is_allowed
from shared.data_sources import check_s3_options, parse_s3_uri
from shared.spec import Source

__all__ = ["S3Connector"]

log = logging.getLogger(__name__)

_MAX_OBJECTS = 100_000
_PART_RETRIES = 5
_STALE_PARTIAL_SECONDS = 7 * 24 * 3600
_ACCESS_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "AllAccessDisabled",
    "AccountProblem",
    "403",
    "401",
}


@dataclass(frozen=True)
class _Object:
    path: str  # relative to the prefix
    key: str
    etag: str
    size: int


def _safe_path(path: str) -> bool:
    parts = path.split("/")
    return (
        bool(path)
        and len(path) <= 1024
        and all(p not in ("", ".", "..") for p in parts)
        and all(c.isprintable() and c != "\\" for c in path)
    )


class S3Connector(Connector):
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

    # -- the connector contract ----------------------------------------------------------

    def pinned_revision(self, source: Source) -> str | None:
        return None

    def credentialed(self, creds: Credentials) -> bool:
        return bool(creds.s3_access_key_id and creds.s3_secret_access_key)

    def resolve(self, source: Source, creds: Credentials) -> str:
        endpoint = self._endpoint(source, creds)
        return self._digest(endpoint, source, self._list(source, creds, endpoint))

    def authorize(self, source: Source, revision: str, creds: Credentials) -> bool:
        endpoint = self._endpoint(source, creds)
        objects = self._list(source, creds, endpoint)
        if self._digest(endpoint, source, objects) != revision:
            raise FetchFailed(f"{source.uri} changed while it was checked.", retryable=True)
        bucket, _ = parse_s3_uri(source.id)
        client = self._client(source, creds, endpoint)
        with self._errors(source, endpoint):
            client.head_object(Bucket=bucket, Key=objects[0].key, IfMatch=objects[0].etag)
        return not self.credentialed(creds)  # read without credentials: a public bucket

    def list_files(self, source: Source, revision: str, creds: Credentials) -> list[RemoteFile]:
        endpoint = self._endpoint(source, creds)
        objects = self._current(source, revision, creds, endpoint)
        bucket, _ = parse_s3_uri(source.id)
        return [
            RemoteFile(path=o.path, size=o.size, aliases=(self._alias(endpoint, bucket, o),))
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
        client = self._client(source, creds, endpoint)
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        self._sweep_partials()
        for index, item in enumerate(files):
            obj = objects[item.path]
            tag = f"{source.id}\n{revision}\n{obj.key}\n{obj.etag}\n{obj.size}"
            part = self.partial_dir / (hashlib.sha256(tag.encode()).hexdigest() + ".part")
            target = workdir / f"object-{index}"
            with _locked(part) as fh:
                self._fill(client, source, endpoint, bucket, obj, fh, progress)
                os.replace(part, target)  # complete: the scratch directory owns it now
            yield obj.path, target

    # -- internals -----------------------------------------------------------------------

    def _endpoint(self, source: Source, creds: Credentials) -> str | None:
        """The endpoint to use, checked by the SSRF guard (None: AWS)."""
        endpoint = source.endpoint or creds.s3_endpoint_url
        if not endpoint:
            return None
        endpoint = endpoint.strip().rstrip("/")
        if not source.endpoint:  # from the secret: validated here, never echoed
            try:
                check_s3_options(endpoint, None)
            except ValueError:
                raise FetchFailed(
                    "The S3_ENDPOINT_URL secret is not an https:// (or http://) base URL "
                    "without user info, path or query."
                ) from None
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        label = f"{source.uri} (endpoint {parts.scheme}://{parts.netloc})"
        addresses = check_host(host, port, allow=self.allow_hosts, label=label)
        if parts.scheme == "http" and not all(
            is_allowed(host, a, self.allow_hosts) for a in addresses
        ):
            raise FetchFailed(
                f"Refused to fetch {label}: plain http:// endpoints are only used for hosts "
                "an administrator lists in AIDP_FETCH_ALLOW_HOSTS; use https://."
            )
        return endpoint

    def _client(self, source: Source, creds: Credentials, endpoint: str | None) -> Any:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        signed = self.credentialed(creds)
        if not signed and (creds.s3_access_key_id or creds.s3_secret_access_key):
            raise FetchFailed(
                f"{source.uri}: name both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY in the "
                "spec's secrets (only one of them was found), or neither for a public bucket."
            )
        config = Config(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path" if endpoint else "auto"},
            signature_version=None if signed else UNSIGNED,
            ignore_configured_endpoint_urls=True,
            user_agent_extra="aidp-fetcher",
        )
        # a session of its own: never the process's AWS profile, environment or files
        session = boto3.session.Session(
            aws_access_key_id=creds.s3_access_key_id if signed else None,
            aws_secret_access_key=creds.s3_secret_access_key if signed else None,
            aws_session_token=creds.s3_session_token if signed else None,
            region_name=source.region or "us-east-1",
        )
        return session.client("s3", endpoint_url=self._pinned(source, endpoint), config=config)

    def _pinned(self, source: Source, endpoint: str | None) -> str | None:
        """The URL the client connects to. A plain-http endpoint (an allow-listed internal
        store) is addressed by the IP the guard checks now, so a second DNS answer cannot
        send the request elsewhere; an https one keeps its name (TLS verifies that name,
        which a rebound address cannot present)."""
        if endpoint is None or not endpoint.startswith("http://"):
            return endpoint
        parts = urlsplit(endpoint)
        port = parts.port or 80
        label = f"{source.uri} (endpoint http://{parts.netloc})"
        addresses = check_host(parts.hostname or "", port, allow=self.allow_hosts, label=label)
        for address in addresses:  # the first checked address that answers
            try:
                socket.create_connection((str(address), port), timeout=self.connect_timeout).close()
            except OSError:
                continue
            literal = f"[{address}]" if address.version == 6 else str(address)
            return f"http://{literal}:{port}"
        raise FetchFailed(
            f"Could not reach the S3 service at {parts.netloc} for {source.uri}; "
            "it will be retried.",
            retryable=True,
        )

    @contextmanager
    def _errors(self, source: Source, endpoint: str | None) -> Iterator[None]:
        """botocore errors as FetchFailed with a readable message (never a credential)."""
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"at {urlsplit(endpoint).netloc}" if endpoint else "on AWS"
        bucket, _ = parse_s3_uri(source.id)
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code == "NoSuchBucket":
                raise FetchFailed(f"The bucket {bucket} does not exist {where}.") from None
            if code in _ACCESS_CODES or status in (401, 403):
                raise FetchFailed(
                    f"Access to {source.uri} {where} was denied ({code or status}): check the "
                    "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY secrets named in the spec and "
                    "that they may list and read the bucket."
                ) from None
            if code in ("PreconditionFailed", "NoSuchKey", "412"):
                raise FetchFailed(
                    f"An object of {source.uri} changed while it was fetched; trying again.",
                    retryable=True,
                ) from None
            raise FetchFailed(
                f"The S3 service {where} answered {code or status} for {source.uri}.",
                retryable=status >= 500 or code in ("SlowDown", "RequestTimeout"),
            ) from None
        except BotoCoreError as exc:
            raise FetchFailed(
                f"Could not reach the S3 service {where} for {source.uri} "
                f"({type(exc).__name__}); it will be retried.",
                retryable=True,
            ) from None

    def _list(self, source: Source, creds: Credentials, endpoint: str | None) -> list[_Object]:
        bucket, prefix = parse_s3_uri(source.id)
        client = self._client(source, creds, endpoint)
        folder = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        objects: list[_Object] = []
        single: _Object | None = None
        token: str | None = None
        with self._errors(source, endpoint):
            while True:
                args: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
                if token:
                    args["ContinuationToken"] = token
                page = client.list_objects_v2(**args)
                for item in page.get("Contents", []):
                    key, size = str(item["Key"]), int(item.get("Size", 0))
                    etag = str(item.get("ETag", "")).strip()
                    if prefix and key == prefix and not prefix.endswith("/"):
                        single = _Object(prefix.rsplit("/", 1)[-1], key, etag, size)
                        continue
                    if not key.startswith(folder) or (key.endswith("/") and size == 0):
                        continue  # a sibling sharing the prefix's letters, or a folder marker
                    path = key[len(folder) :]
                    if not _safe_path(path):
                        raise FetchFailed(
                            f"{source.uri}: the object key {key!r} is not a safe relative "
                            "path (empty, '.' or '..' segments, control characters)."
                        )
                    objects.append(_Object(path, key, etag, size))
                    if len(objects) > _MAX_OBJECTS:
                        raise FetchFailed(
                            f"{source.uri} holds more than {_MAX_OBJECTS} objects; "
                            "name a narrower prefix."
                        )
                if not page.get("IsTruncated"):
                    break
                token = page.get("NextContinuationToken")
        if single is not None:
            return [single]
        if not objects:
            raise FetchFailed(f"{source.uri} holds no objects (an empty or missing prefix).")
        return sorted(objects, key=lambda o: o.key)

    @staticmethod
    def _digest(endpoint: str | None, source: Source, objects: list[_Object]) -> str:
        bucket, _ = parse_s3_uri(source.id)
        lines = [endpoint or "aws", bucket]
        lines += [f"{o.key}\t{o.etag}\t{o.size}" for o in sorted(objects, key=lambda o: o.key)]
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def _current(
        self, source: Source, revision: str, creds: Credentials, endpoint: str | None
    ) -> list[_Object]:
        objects = self._list(source, creds, endpoint)
        if self._digest(endpoint, source, objects) != revision:
            raise FetchFailed(
                f"{source.uri} changed while it was fetched; it will be fetched again.",
                retryable=True,
            )
        return objects

    @staticmethod
    def _alias(endpoint: str | None, bucket: str, obj: _Object) -> str:
        ident = f"{endpoint or 'aws'}\n{bucket}\n{obj.key}\n{obj.etag}\n{obj.size}"
        return "s3:" + hashlib.sha256(ident.encode()).hexdigest()

    def _fill(
        self,
        client: Any,
        source: Source,
        endpoint: str | None,
        bucket: str,
        obj: _Object,
        fh: IO[bytes],
        progress: Progress,
    ) -> None:
        """Complete the partial file ``fh`` with ranged GETs, resuming after interruptions."""
        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError

        have = fh.seek(0, os.SEEK_END)
        if have > obj.size:
            fh.truncate(0)
            have = fh.seek(0)
        if have:
            log.info("resuming %s/%s at byte %d of %d", bucket, obj.key, have, obj.size)
            progress(have)
        while have < obj.size:
            # Each part: tried again from the bytes written so far after an interruption,
            # _PART_RETRIES times at most (a part that completes starts a fresh count).
            try:
                for attempt in stamina.retry_context(
                    on=(BotoCoreError, HTTPError, OSError),
                    attempts=_PART_RETRIES + 1,
                    timeout=None,
                    wait_initial=0.2,
                    wait_max=1.0,
                    wait_jitter=0.0,
                ):
                    with attempt:
                        have = self._fill_part(client, source, endpoint, bucket, obj, fh, progress)
            except (BotoCoreError, HTTPError, OSError) as exc:
                fh.flush()
                have = fh.seek(0, os.SEEK_END)
                raise FetchFailed(
                    f"Downloading {source.uri} was interrupted ({type(exc).__name__}) "
                    f"at byte {have} of {obj.key!r}; it resumes from there.",
                    retryable=True,
                ) from None
        fh.flush()
        os.fsync(fh.fileno())

    def _fill_part(
        self,
        client: Any,
        source: Source,
        endpoint: str | None,
        bucket: str,
        obj: _Object,
        fh: IO[bytes],
        progress: Progress,
    ) -> int:
        """Append the next part (at most ``part_bytes``) to ``fh``, from the bytes it holds;
        the bytes it holds after. An interruption is raised after logging it."""
        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError

        fh.flush()
        have = fh.seek(0, os.SEEK_END)
        end = min(have + self.part_bytes, obj.size) - 1
        try:
            body = self._get_part(client, source, endpoint, bucket, obj, have, end)
            try:  # a broken stream resumes from the bytes written so far
                for chunk in body.iter_chunks(1 << 20):
                    fh.write(chunk)
                    have += len(chunk)
                    progress(len(chunk))
            finally:
                body.close()
            fh.flush()
            if have != end + 1:
                raise OSError(f"short part: {have} of {end + 1} bytes")
        except (BotoCoreError, HTTPError, OSError) as exc:
            log.warning(
                "part of %s/%s interrupted at byte %d (%s)",
                bucket,
                obj.key,
                have,
                type(exc).__name__,
            )
            raise
        return have

    def _get_part(
        self,
        client: Any,
        source: Source,
        endpoint: str | None,
        bucket: str,
        obj: _Object,
        start: int,
        end: int,
    ) -> Any:
        """The body of bytes ``start..end`` of ``obj`` at its listed ETag. A refusal by the
        service is a FetchFailed; a connection error is raised as is (and resumed)."""
        from botocore.exceptions import ClientError

        try:
            response = client.get_object(
                Bucket=bucket, Key=obj.key, Range=f"bytes={start}-{end}", IfMatch=obj.etag
            )
        except ClientError:
            with self._errors(source, endpoint):
                raise
        return response["Body"]

    def _sweep_partials(self) -> None:
        """Delete partial files nobody touched for a week (abandoned sources)."""
        cutoff = time.time() - _STALE_PARTIAL_SECONDS
        for path in self.partial_dir.glob("*.part"):
            try:
                if path.stat().st_mtime < cutoff:
                    with path.open("ab") as fh:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        path.unlink(missing_ok=True)
            except OSError:
                continue  # being written, or gone


@contextmanager
def _locked(path: Path) -> Iterator[IO[bytes]]:
    """``path`` opened for appending under an exclusive flock; reopened if another holder
    moved it away meanwhile (so the lock is always on the file at ``path``)."""
    while True:
        fh = path.open("ab+")
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            same = os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()
    try:
        yield fh
    finally:
        fh.close()
