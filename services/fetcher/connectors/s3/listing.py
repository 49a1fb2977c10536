"""The objects under an S3 prefix, the revision digest over them, and each object's alias
(the name its content is reused by)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from services.fetcher.connectors.s3.errors import s3_errors
from services.fetcher.errors import FetchFailed
from shared.data_sources import parse_s3_uri
from shared.spec import Source

__all__ = ["S3Object", "alias", "digest", "list_objects"]

_MAX_OBJECTS = 100_000


@dataclass(frozen=True)
class S3Object:
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


def list_objects(client: Any, source: Source, endpoint: str | None) -> list[S3Object]:
    """The objects the source names, sorted by key: one object (a key equal to the prefix)
    or the keys under the prefix as a folder (folder markers skipped). FetchFailed for an
    unsafe key, too many objects or none."""
    bucket, prefix = parse_s3_uri(source.id)
    folder = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    objects: list[S3Object] = []
    single: S3Object | None = None
    token: str | None = None
    with s3_errors(source, endpoint):
        while True:
            args: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if token:
                args["ContinuationToken"] = token
            page = client.list_objects_v2(**args)
            for item in page.get("Contents", []):
                key, size = str(item["Key"]), int(item.get("Size", 0))
                etag = str(item.get("ETag", "")).strip()
                if prefix and key == prefix and not prefix.endswith("/"):
                    single = S3Object(prefix.rsplit("/", 1)[-1], key, etag, size)
                    continue
                if not key.startswith(folder) or (key.endswith("/") and size == 0):
                    continue  # a sibling sharing the prefix's letters, or a folder marker
                path = key[len(folder) :]
                if not _safe_path(path):
                    raise FetchFailed(
                        f"{source.uri}: the object key {key!r} is not a safe relative "
                        "path (empty, '.' or '..' segments, control characters)."
                    )
                objects.append(S3Object(path, key, etag, size))
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


def digest(endpoint: str | None, source: Source, objects: list[S3Object]) -> str:
    """The revision: sha256 over the endpoint, the bucket and the sorted listing."""
    bucket, _ = parse_s3_uri(source.id)
    lines = [endpoint or "aws", bucket]
    lines += [f"{o.key}\t{o.etag}\t{o.size}" for o in sorted(objects, key=lambda o: o.key)]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def alias(endpoint: str | None, bucket: str, obj: S3Object) -> str:
    """``s3:<sha256>`` of the object's endpoint, bucket, key, ETag and size."""
    ident = f"{endpoint or 'aws'}\n{bucket}\n{obj.key}\n{obj.etag}\n{obj.size}"
    return "s3:" + hashlib.sha256(ident.encode()).hexdigest()
