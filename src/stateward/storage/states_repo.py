"""The ``states`` and ``versions`` tables: paths, their immutable versions, and the pointer from
a path to its current version. Every function takes an open connection (the caller owns the
transaction) and returns records (``storage/records.py``), never rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update

from stateward.storage.records import (
    StateListingRecord,
    StateRecord,
    VersionRecord,
    WriteContext,
    record,
)
from stateward.storage.schema import (
    blob_keys,
    locks,
    secret_findings,
    secret_scans,
    states,
    versions,
)

# Hot-path statements are built once with bind parameters: constructing a SQLAlchemy
# statement costs more than executing it against SQLite.
_GET_STATE = select(states).where(states.c.path == bindparam("path"))
_CURRENT_VERSION = (
    select(versions)
    .join(states, (states.c.path == versions.c.path) & (states.c.current_seq == versions.c.seq))
    .where(states.c.path == bindparam("path"), states.c.deleted_at.is_(None))
)
_WRITE_CONTEXT = (
    select(
        states.c.path,
        states.c.next_seq,
        states.c.deleted_at,
        states.c.override_next_write,
        versions.c.seq,
        versions.c.serial,
        versions.c.lineage,
        versions.c.sha256,
        versions.c.resource_count,
    )
    .select_from(
        states.outerjoin(
            versions,
            (versions.c.path == states.c.path) & (versions.c.seq == states.c.current_seq),
        )
    )
    .where(states.c.path == bindparam("path"))
)
_INSERT_VERSION = insert(versions)
_INSERT_STATE = insert(states)
_ADVANCE_STATE = (
    update(states)
    .where(states.c.path == bindparam("p"))
    .values(
        current_seq=bindparam("seq"),
        next_seq=bindparam("next"),
        updated_at=bindparam("now"),
        deleted_at=None,
        deleted_by=None,
        override_next_write=False,
    )
)


# -- states --------------------------------------------------------------------------------------


def get_state(conn: Connection, path: str) -> StateRecord | None:
    row = conn.execute(_GET_STATE, {"path": path}).first()
    return None if row is None else record(StateRecord, row)


def insert_state(conn: Connection, path: str, now: float, current_seq: int | None) -> None:
    conn.execute(
        _INSERT_STATE,
        {
            "path": path,
            "current_seq": current_seq,
            "next_seq": (current_seq or 0) + 1,
            "created_at": now,
            "updated_at": now,
            "protected": False,
            "override_next_write": False,
        },
    )


def ensure_state(conn: Connection, path: str, now: float) -> None:
    """Create the path's row (with no version yet) if it does not exist."""
    if get_state(conn, path) is None:
        insert_state(conn, path, now, current_seq=None)


def update_state(conn: Connection, path: str, **values: Any) -> None:
    conn.execute(update(states).where(states.c.path == path).values(**values))


def advance_state(conn: Connection, path: str, seq: int, now: float) -> None:
    """Point ``path`` at its new current version (and clear delete/override flags)."""
    conn.execute(_ADVANCE_STATE, {"p": path, "seq": seq, "next": seq + 1, "now": now})


def list_states(conn: Connection, include_deleted: bool) -> list[StateListingRecord]:
    q = (
        select(
            states.c.path,
            states.c.current_seq,
            states.c.updated_at,
            states.c.protected,
            states.c.deleted_at,
            versions.c.serial,
            versions.c.size,
            versions.c.author,
            locks.c.lock_id,
            locks.c.who.label("lock_who"),
            locks.c.acquired_at.label("lock_acquired_at"),
        )
        .select_from(
            states.outerjoin(
                versions,
                (versions.c.path == states.c.path) & (versions.c.seq == states.c.current_seq),
            ).outerjoin(locks, locks.c.path == states.c.path)
        )
        .order_by(states.c.path)
    )
    if not include_deleted:
        q = q.where(states.c.deleted_at.is_(None))
    return [record(StateListingRecord, r) for r in conn.execute(q)]


def all_states(conn: Connection) -> list[StateRecord]:
    """Every path's state row (maintenance walks them)."""
    return [record(StateRecord, r) for r in conn.execute(select(states))]


def count_by_status(conn: Connection) -> dict[str, int]:
    """Paths with a current version: ``active`` and soft-``deleted`` (restorable)."""
    deleted = states.c.deleted_at.is_not(None)
    query = select(deleted, func.count()).where(states.c.current_seq.is_not(None)).group_by(deleted)
    return {("deleted" if bool(d) else "active"): int(n) for d, n in conn.execute(query).all()}


# -- versions ------------------------------------------------------------------------------------


def write_context(conn: Connection, path: str) -> WriteContext | None:
    """Everything a write checks about a path, in one statement."""
    row = conn.execute(_WRITE_CONTEXT, {"path": path}).first()
    return None if row is None else record(WriteContext, row)


def current_version(conn: Connection, path: str) -> VersionRecord | None:
    """The current version of a live (not deleted) path, in one statement."""
    row = conn.execute(_CURRENT_VERSION, {"path": path}).first()
    return None if row is None else record(VersionRecord, row)


def get_version(conn: Connection, path: str, seq: int) -> VersionRecord | None:
    row = conn.execute(
        select(versions).where(versions.c.path == path, versions.c.seq == seq)
    ).first()
    return None if row is None else record(VersionRecord, row)


def list_versions(
    conn: Connection, path: str, limit: int, before: int | None
) -> list[VersionRecord]:
    """Versions newest first, each with ``secrets`` (findings count, None if not scanned)."""
    scans = secret_scans
    q = (
        select(versions, scans.c.findings.label("secrets"))
        .select_from(
            versions.outerjoin(
                scans, (scans.c.path == versions.c.path) & (scans.c.seq == versions.c.seq)
            )
        )
        .where(versions.c.path == path)
    )
    if before is not None:
        q = q.where(versions.c.seq < before)
    rows = conn.execute(q.order_by(versions.c.seq.desc()).limit(limit))
    return [record(VersionRecord, r) for r in rows]


def insert_version(conn: Connection, **values: Any) -> None:
    conn.execute(_INSERT_VERSION, values)


def version_digests(conn: Connection, path: str) -> list[str]:
    """The SHA-256 of every version of ``path``, oldest first (imports resume from them)."""
    stmt = select(versions.c.sha256).where(versions.c.path == path).order_by(versions.c.seq)
    return [str(sha) for sha in conn.execute(stmt).scalars()]


def version_ages(conn: Connection, path: str) -> list[tuple[int, float, str]]:
    """``(seq, created_at, blob_key)`` of every version of ``path`` (retention)."""
    stmt = select(versions.c.seq, versions.c.created_at, versions.c.blob_key).where(
        versions.c.path == path
    )
    return [(int(r.seq), float(r.created_at), str(r.blob_key)) for r in conn.execute(stmt)]


def version_exists(conn: Connection, version_id: int) -> bool:
    return (
        conn.execute(select(versions.c.id).where(versions.c.id == version_id)).first() is not None
    )


def blob_referenced(conn: Connection, blob_key: str) -> bool:
    """Does a version point at ``blob_key``?"""
    stmt = select(versions.c.id).where(versions.c.blob_key == blob_key)
    return conn.execute(stmt).first() is not None


def all_blob_keys(conn: Connection) -> set[str]:
    return set(conn.execute(select(versions.c.blob_key)).scalars())


def count_versions(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(versions)).scalar_one())


def delete_versions(conn: Connection, path: str, seqs: Sequence[int]) -> None:
    """Remove versions with their key references and scan results (the wrapped keys go with
    the blobs, which the caller deletes after the commit)."""
    if seqs:
        doomed = select(versions.c.blob_key).where(
            versions.c.path == path, versions.c.seq.in_(seqs)
        )
        conn.execute(delete(blob_keys).where(blob_keys.c.blob_key.in_(doomed)))
        for table in (secret_scans, secret_findings):
            conn.execute(delete(table).where(table.c.path == path, table.c.seq.in_(seqs)))
        conn.execute(delete(versions).where(versions.c.path == path, versions.c.seq.in_(seqs)))


def purge_path(conn: Connection, path: str) -> list[str]:
    """Delete every row of ``path``; return the blob keys to remove after the commit."""
    keys = list(conn.execute(select(versions.c.blob_key).where(versions.c.path == path)).scalars())
    for table in (blob_keys, secret_scans, secret_findings):
        conn.execute(delete(table).where(table.c.path == path))
    conn.execute(delete(versions).where(versions.c.path == path))
    conn.execute(delete(locks).where(locks.c.path == path))
    conn.execute(delete(states).where(states.c.path == path))
    return keys
