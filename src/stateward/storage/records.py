"""What the repositories return: plain frozen values, never database rows.

A row type depends on the driver and hides its columns from the type checker; these name every
field, so the service's checks (the lock, the lineage/serial guards) read typed values and a
column renamed in the schema fails where the record is built, not deep inside a guard.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar

R = TypeVar("R")


def record(cls: type[R], row: Any) -> R:
    """``cls`` built from the row's columns of the same names (extra columns are ignored)."""
    mapping = row._mapping
    return cls(**{f.name: mapping[f.name] for f in fields(cls) if f.name in mapping})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class StateRecord:
    path: str
    current_seq: int | None
    next_seq: int
    created_at: float
    updated_at: float
    deleted_at: float | None
    deleted_by: str | None
    protected: bool
    override_next_write: bool


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """An immutable version (``secrets``: findings of its scan, None when not scanned yet or
    not asked for)."""

    id: int
    path: str
    seq: int
    serial: int
    lineage: str
    size: int
    stored_size: int
    md5: str
    sha256: str
    blob_key: str
    author: str
    created_at: float
    client_version: str
    terraform_version: str
    lock_id: str | None
    resource_count: int
    output_count: int
    client_encrypted: bool
    kind: str
    source_seq: int | None
    secrets: int | None = None


@dataclass(frozen=True, slots=True)
class WriteContext:
    """Everything a write checks about a path: its state row and its current version's
    identity (``seq`` and the rest are None when the path has no version)."""

    path: str
    next_seq: int
    deleted_at: float | None
    override_next_write: bool
    seq: int | None
    serial: int | None
    lineage: str | None
    sha256: str | None
    resource_count: int | None

    @property
    def live(self) -> bool:
        """A current version exists and the path is not soft-deleted."""
        return self.deleted_at is None and self.seq is not None


@dataclass(frozen=True, slots=True)
class LockRecord:
    path: str
    lock_id: str
    info: bytes
    who: str
    operation: str
    client_version: str
    principal: str
    acquired_at: float


@dataclass(frozen=True, slots=True)
class StateListingRecord:
    """One path of a listing: its state row, current version and lock, joined."""

    path: str
    current_seq: int | None
    updated_at: float
    protected: bool
    deleted_at: float | None
    serial: int | None
    size: int | None
    author: str | None
    lock_id: str | None
    lock_who: str | None
    lock_acquired_at: float | None


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: int
    at: float
    principal: str
    action: str
    path: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: int
    name: str
    hash: str
    roles: str  # JSON list
    paths: str  # JSON list
    created_at: float
    created_by: str
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None


@dataclass(frozen=True, slots=True)
class AlertRecord:
    id: int
    at: float
    rule: str
    kind: str
    severity: str
    path: str | None
    principal: str | None
    summary: str
    audit_seq: int | None
    acknowledged_at: float | None
    acknowledged_by: str | None


@dataclass(frozen=True, slots=True)
class AuditRow:
    """A stored audit record: the chained JSON and the columns beside it."""

    seq: int
    prev_hash: str
    hash: str
    record: str
