"""Plain values the service returns to transports (no storage record escapes the service)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class StoredState:
    body: bytes
    md5: bytes  # raw 16-byte digest, for Content-MD5
    seq: int
    serial: int


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    created: bool
    seq: int
    serial: int


@dataclass(frozen=True, slots=True)
class LockView:
    path: str
    id: str
    who: str
    operation: str
    client_version: str
    principal: str
    acquired_at: float
    age_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class VersionView:
    path: str
    seq: int
    serial: int
    lineage: str
    size: int
    stored_size: int
    md5: str
    sha256: str
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
    current: bool
    #: Secret findings in this version (None: not scanned yet). See ``stateward state scan``.
    secrets: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class StateListing:
    path: str
    serial: int | None
    seq: int | None
    size: int | None
    last_writer: str | None
    updated_at: float
    protected: bool
    deleted_at: float | None
    lock_id: str | None
    lock_who: str | None
    lock_age_seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class EventView:
    id: int
    at: float
    principal: str
    action: str
    path: str | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    versions_removed: int
    paths_purged: int
    orphans_removed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _HeldLock(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def lock_id(self) -> str: ...
    @property
    def who(self) -> str: ...
    @property
    def operation(self) -> str: ...
    @property
    def client_version(self) -> str: ...
    @property
    def principal(self) -> str: ...
    @property
    def acquired_at(self) -> float: ...


def lock_view(held: _HeldLock, now: float) -> LockView:
    return LockView(
        path=held.path,
        id=held.lock_id,
        who=held.who,
        operation=held.operation,
        client_version=held.client_version,
        principal=held.principal,
        acquired_at=held.acquired_at,
        age_seconds=max(0.0, now - held.acquired_at),
    )
