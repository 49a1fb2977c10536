"""botocore errors as FetchFailed with a readable message (never a credential)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from services.fetcher.errors import FetchFailed
from shared.data_sources import parse_s3_uri
from shared.spec import Source

__all__ = ["s3_errors"]

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


@contextmanager
def s3_errors(source: Source, endpoint: str | None) -> Iterator[None]:
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
