"""Tables owned by the fetcher service (names prefixed ``fetcher_``).

- ``fetcher_jobs``: one fetch job per run (the state machine resumed after a crash), with
  the claim of the replica running it (``claimed_by`` until ``claim_expires_at``).
- ``fetcher_artifacts``: one cached manifest per (source, resolved revision), and whether it
  was fetched with credentials (then each hit is authorised with the requester's own) and
  who stored it (``owner_id``: per-owner eviction).
- ``fetcher_artifact_files``: the blobs each artifact references (eviction, dedupe counts).
- ``fetcher_aliases``: provider ids of content (git blob oid, LFS sha256) -> stored digest,
  so unchanged files of a new revision are not downloaded again.
- ``fetcher_pins``: artifacts an active run uses (never evicted).
- ``fetcher_leases``: single-flight downloads across tasks and replicas.
- ``fetcher_uploads``: uploaded files and their owner.
- ``fetcher_store_naming``: one-time steps done on the references (keyed blob names).
- ``fetcher_resolutions``: the last commit each floating ref (``@main``, a tag) resolved to,
  so a fetch can fall back to it while the provider is unreachable (issue 19).

Digests here are blob names in the store (keyed, see :mod:`shared.blob_names`), except the
provider ids of ``fetcher_aliases``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, Text
from sqlmodel import Field, SQLModel

from shared.service.clock import utcnow
from shared.service.states import Transitions

__all__ = [
    "FETCH_JOB",
    "Alias",
    "Artifact",
    "ArtifactFile",
    "FetchJob",
    "FetchJobState",
    "Lease",
    "Pin",
    "Resolution",
    "StoreNaming",
    "Upload",
    "utcnow",
]


class FetchJobState(StrEnum):
    """The status of a fetch job (the strings stored in ``fetcher_jobs.status``)."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: A pending job ends once: cached, failed or cancelled.
FETCH_JOB = Transitions(
    FetchJobState,
    {
        FetchJobState.PENDING: {
            FetchJobState.DONE,
            FetchJobState.FAILED,
            FetchJobState.CANCELLED,
        }
    },
)


class FetchJob(SQLModel, table=True):
    __tablename__ = "fetcher_jobs"

    run_id: uuid.UUID = Field(primary_key=True)
    project_id: uuid.UUID | None = Field(default=None, index=True)
    owner_id: str | None = Field(default=None, max_length=64)
    spec: str = Field(sa_column=Column(Text, nullable=False))  # JSON
    cause: str = Field(sa_column=Column(Text, nullable=False))  # the triggering envelope (JSON)
    status: str = Field(
        default="pending", max_length=16, index=True
    )  # pending|done|failed|cancelled
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    claimed_by: str | None = Field(default=None, max_length=64)  # replica running the job
    claim_expires_at: datetime | None = None  # renewed while it runs; others take over after
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Artifact(SQLModel, table=True):
    __tablename__ = "fetcher_artifacts"

    key: str = Field(primary_key=True, max_length=600)  # "<source>@<revision>"
    source: str = Field(max_length=512, index=True)
    kind: str = Field(max_length=16)
    resolved_revision: str = Field(max_length=128)
    cache_key: str = Field(max_length=64)  # manifest key in the store
    digest: str = Field(max_length=64)  # the single file's blob name, else the manifest key
    size_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    # fetched with the requester's credentials: a later hit is served only to a requester
    # whose own credentials the provider accepts for it (an anonymous fetch is shared)
    credentialed: bool = False
    # the user whose fetch or upload stored it: eviction takes the requester's own entries
    # first (None: stored before owners were kept, treated as shared)
    owner_id: str | None = Field(default=None, max_length=64, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime = Field(default_factory=utcnow, index=True)


class ArtifactFile(SQLModel, table=True):
    __tablename__ = "fetcher_artifact_files"

    artifact_key: str = Field(primary_key=True, max_length=600)
    path: str = Field(primary_key=True, max_length=1024)
    digest: str = Field(max_length=64, index=True)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))


class Alias(SQLModel, table=True):
    __tablename__ = "fetcher_aliases"

    alias: str = Field(primary_key=True, max_length=128)  # "git:<oid>" or "sha256:<hex>"
    digest: str = Field(max_length=64)


class Pin(SQLModel, table=True):
    __tablename__ = "fetcher_pins"

    run_id: uuid.UUID = Field(primary_key=True)
    artifact_key: str = Field(primary_key=True, max_length=600)
    created_at: datetime = Field(default_factory=utcnow)


class Lease(SQLModel, table=True):
    __tablename__ = "fetcher_leases"

    key: str = Field(primary_key=True, max_length=600)
    holder: str = Field(max_length=64)
    expires_at: datetime


class Upload(SQLModel, table=True):
    __tablename__ = "fetcher_uploads"

    id: str = Field(primary_key=True, max_length=64)
    owner_id: str = Field(max_length=64, index=True)
    filename: str = Field(max_length=255)
    digest: str = Field(max_length=64)
    size_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class StoreNaming(SQLModel, table=True):
    """A one-time step on this database's blob references, done (see services.fetcher.naming)."""

    __tablename__ = "fetcher_store_naming"

    step: str = Field(primary_key=True, max_length=64)
    done_at: datetime = Field(default_factory=utcnow)


class Resolution(SQLModel, table=True):
    """The last immutable revision a floating ref resolved to (``<name>@<ref>``)."""

    __tablename__ = "fetcher_resolutions"

    key: str = Field(primary_key=True, max_length=600)  # "<source name>@<requested ref>"
    revision: str = Field(max_length=128)
    resolved_at: datetime = Field(default_factory=utcnow)
