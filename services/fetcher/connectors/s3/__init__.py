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

Modules: :mod:`.connector` (the connector contract), :mod:`.endpoint` (the checked endpoint
and the boto3 client), :mod:`.listing` (objects, revision digest, aliases), :mod:`.parts`
(ranged GETs into a partial file), :mod:`.partials` (partial files: locks and sweeping),
:mod:`.errors` (botocore errors as FetchFailed).
"""

from __future__ import annotations

from services.fetcher.connectors.s3.connector import S3Connector

__all__ = ["S3Connector"]
