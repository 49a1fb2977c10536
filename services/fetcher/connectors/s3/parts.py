"""An S3 object into its partial file by ranged GETs of ``part_bytes`` at the listed ETag,
resumed from the bytes on disk after an interruption."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import IO, Any

import stamina

from services.fetcher.connectors.base import Progress
from services.fetcher.connectors.s3.errors import s3_errors
from services.fetcher.connectors.s3.listing import S3Object
from services.fetcher.errors import FetchFailed
from shared.spec import Source

__all__ = ["PartReader"]

log = logging.getLogger(__name__)

_PART_RETRIES = 5


@dataclass(frozen=True)
class PartReader:
    """Ranged GETs of one source's objects (one client, one bucket) into partial files."""

    client: Any
    source: Source
    endpoint: str | None
    bucket: str
    part_bytes: int
    progress: Progress

    def fill(self, obj: S3Object, fh: IO[bytes]) -> None:
        """Complete the partial file ``fh`` with ranged GETs, resuming after interruptions."""
        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError

        have = fh.seek(0, os.SEEK_END)
        if have > obj.size:
            fh.truncate(0)
            have = fh.seek(0)
        if have:
            log.info("resuming %s/%s at byte %d of %d", self.bucket, obj.key, have, obj.size)
            self.progress(have)
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
                        have = self._fill_part(obj, fh)
            except (BotoCoreError, HTTPError, OSError) as exc:
                fh.flush()
                have = fh.seek(0, os.SEEK_END)
                raise FetchFailed(
                    f"Downloading {self.source.uri} was interrupted ({type(exc).__name__}) "
                    f"at byte {have} of {obj.key!r}; it resumes from there.",
                    retryable=True,
                ) from None
        fh.flush()
        os.fsync(fh.fileno())

    def _fill_part(self, obj: S3Object, fh: IO[bytes]) -> int:
        """Append the next part (at most ``part_bytes``) to ``fh``, from the bytes it holds;
        the bytes it holds after. An interruption is raised after logging it."""
        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError

        fh.flush()
        have = fh.seek(0, os.SEEK_END)
        end = min(have + self.part_bytes, obj.size) - 1
        try:
            body = self._get_part(obj, have, end)
            try:  # a broken stream resumes from the bytes written so far
                for chunk in body.iter_chunks(1 << 20):
                    fh.write(chunk)
                    have += len(chunk)
                    self.progress(len(chunk))
            finally:
                body.close()
            fh.flush()
            if have != end + 1:
                raise OSError(f"short part: {have} of {end + 1} bytes")
        except (BotoCoreError, HTTPError, OSError) as exc:
            log.warning(
                "part of %s/%s interrupted at byte %d (%s)",
                self.bucket,
                obj.key,
                have,
                type(exc).__name__,
            )
            raise
        return have

    def _get_part(self, obj: S3Object, start: int, end: int) -> Any:
        """The body of bytes ``start..end`` of ``obj`` at its listed ETag. A refusal by the
        service is a FetchFailed; a connection error is raised as is (and resumed)."""
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(
                Bucket=self.bucket, Key=obj.key, Range=f"bytes={start}-{end}", IfMatch=obj.etag
            )
        except ClientError:
            with s3_errors(self.source, self.endpoint):
                raise
        return response["Body"]
