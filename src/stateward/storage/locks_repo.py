"""The ``locks`` table: at most one row per path, so taking a lock is one insert-if-absent."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, delete, select

from stateward.storage.dialect import insert_if_absent
from stateward.storage.records import LockRecord, record
from stateward.storage.schema import locks

_GET = select(locks).where(locks.c.path == bindparam("path"))
_DELETE = delete(locks).where(locks.c.path == bindparam("path"))
_DELETE_ID = _DELETE.where(locks.c.lock_id == bindparam("lock_id"))


def get(conn: Connection, path: str) -> LockRecord | None:
    row = conn.execute(_GET, {"path": path}).first()
    return None if row is None else record(LockRecord, row)


def insert_if_free(conn: Connection, values: dict[str, Any]) -> bool:
    """The lock compare-and-set: insert unless the path has a lock row. True if inserted."""
    return insert_if_absent(conn, locks, ("path",), values)


def list_all(conn: Connection) -> list[LockRecord]:
    return [record(LockRecord, r) for r in conn.execute(select(locks).order_by(locks.c.path))]


def delete_lock(conn: Connection, path: str, lock_id: str | None = None) -> int:
    """Remove the path's lock (only if it has ``lock_id``, when given); rows removed."""
    if lock_id is None:
        return int(conn.execute(_DELETE, {"path": path}).rowcount)
    return int(conn.execute(_DELETE_ID, {"path": path, "lock_id": lock_id}).rowcount)
