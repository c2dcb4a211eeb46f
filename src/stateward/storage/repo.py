"""Metadata queries, each taking an open connection (the caller owns the transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from stateward.storage.schema import (
    audit,
    blob_keys,
    events,
    locks,
    schema_info,
    secret_findings,
    secret_scans,
    states,
    versions,
)


def get_state(conn: Connection, path: str) -> Row[Any] | None:
    return conn.execute(select(states).where(states.c.path == path)).first()


def ensure_state(conn: Connection, path: str, now: float) -> None:
    """Create the path's row (with no version yet) if it does not exist."""
    if get_state(conn, path) is None:
        insert_state(conn, path, now, current_seq=None)


def update_state(conn: Connection, path: str, **values: Any) -> None:
    conn.execute(update(states).where(states.c.path == path).values(**values))


def get_version(conn: Connection, path: str, seq: int) -> Row[Any] | None:
    return conn.execute(
        select(versions).where(versions.c.path == path, versions.c.seq == seq)
    ).first()


# Hot-path statements are built once with bind parameters: constructing a SQLAlchemy
# statement costs more than executing it against SQLite.
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
_GET_LOCK = select(locks).where(locks.c.path == bindparam("path"))
_DELETE_LOCK = delete(locks).where(locks.c.path == bindparam("path"))
_DELETE_LOCK_ID = _DELETE_LOCK.where(locks.c.lock_id == bindparam("lock_id"))
_INSERT_VERSION = insert(versions)
_INSERT_STATE = insert(states)
#: The lock compare-and-set, per dialect; values are passed as parameters at execution.
#: ``preserve_rowcount``: SQLAlchemy keeps an INSERT's rowcount only when asked (psycopg
#: reports -1 once the cursor is closed; sqlite3 happens to keep it).
_INSERT_LOCK = {
    "postgresql": postgresql.insert(locks)
    .on_conflict_do_nothing(index_elements=["path"])
    .execution_options(preserve_rowcount=True),
    "sqlite": sqlite.insert(locks)
    .on_conflict_do_nothing(index_elements=["path"])
    .execution_options(preserve_rowcount=True),
}
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


def current_version(conn: Connection, path: str) -> Row[Any] | None:
    """The current version row of a live (not deleted) path, in one statement."""
    return conn.execute(_CURRENT_VERSION, {"path": path}).first()


def write_context(conn: Connection, path: str) -> Any:
    """Everything a write checks about a path, in one statement: the state row and its
    current version's identity (``seq`` is NULL when there is no version)."""
    return conn.execute(_WRITE_CONTEXT, {"path": path}).first()


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


def list_versions(
    conn: Connection, path: str, limit: int, before: int | None
) -> Sequence[Row[Any]]:
    """Versions newest first, each with ``secrets`` (findings count, NULL if not scanned)."""
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
    return conn.execute(q.order_by(versions.c.seq.desc()).limit(limit)).all()


def insert_version(conn: Connection, **values: Any) -> None:
    conn.execute(_INSERT_VERSION, values)


def advance_state(conn: Connection, path: str, seq: int, now: float) -> None:
    """Point ``path`` at its new current version (and clear delete/override flags)."""
    conn.execute(_ADVANCE_STATE, {"p": path, "seq": seq, "next": seq + 1, "now": now})


def delete_versions(conn: Connection, path: str, seqs: Sequence[int]) -> None:
    """Remove versions and their key references (the wrapped keys go with the blobs)."""
    if seqs:
        doomed = select(versions.c.blob_key).where(
            versions.c.path == path, versions.c.seq.in_(seqs)
        )
        conn.execute(delete(blob_keys).where(blob_keys.c.blob_key.in_(doomed)))
        for table in (secret_scans, secret_findings):
            conn.execute(delete(table).where(table.c.path == path, table.c.seq.in_(seqs)))
        conn.execute(delete(versions).where(versions.c.path == path, versions.c.seq.in_(seqs)))


def get_lock(conn: Connection, path: str) -> Row[Any] | None:
    return conn.execute(_GET_LOCK, {"path": path}).first()


def insert_lock_if_absent(conn: Connection, values: dict[str, Any]) -> bool:
    """The lock compare-and-set: insert unless a row for the path exists. True if inserted."""
    stmt = _INSERT_LOCK["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
    return bool(conn.execute(stmt, values).rowcount == 1)


def list_locks(conn: Connection) -> Sequence[Row[Any]]:
    return conn.execute(select(locks).order_by(locks.c.path)).all()


def delete_lock(conn: Connection, path: str, lock_id: str | None = None) -> int:
    if lock_id is None:
        return conn.execute(_DELETE_LOCK, {"path": path}).rowcount
    return conn.execute(_DELETE_LOCK_ID, {"path": path, "lock_id": lock_id}).rowcount


def record_event(
    conn: Connection, at: float, principal: str, action: str, path: str | None, detail: str = ""
) -> None:
    conn.execute(
        insert(events).values(at=at, principal=principal, action=action, path=path, detail=detail)
    )


def list_events(conn: Connection, path: str | None, limit: int) -> Sequence[Row[Any]]:
    q = select(events)
    if path is not None:
        q = q.where(events.c.path == path)
    return conn.execute(q.order_by(events.c.id.desc()).limit(limit)).all()


def list_states(conn: Connection, include_deleted: bool) -> Sequence[Any]:
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
    return conn.execute(q).all()


def all_blob_keys(conn: Connection) -> set[str]:
    return set(conn.execute(select(versions.c.blob_key)).scalars())


def paths_with_versions(conn: Connection) -> Sequence[Any]:
    cols = (states.c.path, states.c.current_seq, states.c.deleted_at, states.c.protected)
    return conn.execute(select(*cols)).all()


def ping(conn: Connection) -> None:
    conn.execute(select(func.count()).select_from(schema_info)).scalar_one()


def insert_blob_key(conn: Connection, blob_key: str, path: str, ref: Any) -> None:
    """Record which key protects ``blob_key`` (``ref``: a barrier ``KeyRef``)."""
    conn.execute(
        _INSERT_BLOB_KEY,
        {
            "blob_key": blob_key,
            "path": path,
            "provider": ref.provider,
            "kind": ref.kind,
            "key_id": ref.key_id,
            "key_version": ref.key_version,
        },
    )


_INSERT_BLOB_KEY = insert(blob_keys)


_AUDIT_HEAD = select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)
_INSERT_AUDIT = insert(audit)


def audit_head(conn: Connection) -> tuple[int, str] | None:
    """(seq, hash) of the newest audit record; read inside the write transaction."""
    row = conn.execute(_AUDIT_HEAD).first()
    return None if row is None else (int(row.seq), str(row.hash))


def insert_audit(conn: Connection, **values: Any) -> None:
    conn.execute(_INSERT_AUDIT, values)


def count_states_by_status(conn: Connection) -> dict[str, int]:
    """Paths with a current version: ``active`` and soft-``deleted`` (restorable)."""
    deleted = states.c.deleted_at.is_not(None)
    query = select(deleted, func.count()).where(states.c.current_seq.is_not(None)).group_by(deleted)
    return {("deleted" if bool(d) else "active"): int(n) for d, n in conn.execute(query).all()}
