"""The ``audit`` table (the hash-chained trail) and ``audit_cursors`` (where each follower of
the trail has got to). Storage knows the columns, not the chain's rules: sealing and verifying
records is the domain's (``domain/audit_chain.py``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from stateward.storage.records import AuditRow
from stateward.storage.schema import audit, audit_cursors

_HEAD = select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)
_INSERT = insert(audit)


def head(conn: Connection) -> tuple[int, str] | None:
    """(seq, hash) of the newest record; read inside the write transaction that extends it."""
    row = conn.execute(_HEAD).first()
    return None if row is None else (int(row.seq), str(row.hash))


def head_seq(conn: Connection) -> int:
    found = head(conn)
    return 0 if found is None else found[0]


def insert_record(conn: Connection, **values: Any) -> None:
    conn.execute(_INSERT, values)


def records_after(
    conn: Connection,
    after: int,
    limit: int,
    *,
    since: float | None = None,
    until: float | None = None,
    path: str | None = None,
) -> list[tuple[int, str]]:
    """``(seq, record JSON)`` of up to ``limit`` records after ``after``, in chain order,
    narrowed by time and by an exact path when given."""
    stmt = select(audit.c.seq, audit.c.record).where(audit.c.seq > after)
    if since is not None:
        stmt = stmt.where(audit.c.at >= since)
    if until is not None:
        stmt = stmt.where(audit.c.at < until)
    if path is not None:
        stmt = stmt.where(audit.c.path == path)
    rows = conn.execute(stmt.order_by(audit.c.seq).limit(limit)).all()
    return [(int(r.seq), str(r.record)) for r in rows]


def chain_rows(conn: Connection, after: int, limit: int) -> list[AuditRow]:
    """Up to ``limit`` stored records after ``after`` with their chain columns."""
    stmt = (
        select(audit.c.seq, audit.c.prev_hash, audit.c.hash, audit.c.record)
        .where(audit.c.seq > after)
        .order_by(audit.c.seq)
        .limit(limit)
    )
    return [
        AuditRow(int(r.seq), str(r.prev_hash), str(r.hash), str(r.record))
        for r in conn.execute(stmt)
    ]


def read_before(conn: Connection, path: str, principal: str, since: float, before: int) -> bool:
    """Did ``principal`` read ``path`` successfully at or after ``since``, in a record before
    seq ``before``? (the rare-reader alert rule)."""
    stmt = select(audit.c.seq).where(
        audit.c.path == path,
        audit.c.at >= since,
        audit.c.seq < before,
        audit.c.principal == principal,
        audit.c.action == "read",
        audit.c.outcome == "ok",
    )
    return conn.execute(stmt.limit(1)).first() is not None


def authentications_before(conn: Connection, seq: int, window: float) -> list[str]:
    """Record JSON of the ``authenticate`` records in the ``window`` seconds up to record
    ``seq`` (the alert engine rebuilds its failure counters from them)."""
    last = conn.execute(select(audit.c.at).where(audit.c.seq == seq)).first()
    if last is None:
        return []
    rows = conn.execute(
        select(audit.c.record)
        .where(
            audit.c.seq <= seq,
            audit.c.at >= float(last.at) - window,
            audit.c.action == "authenticate",
        )
        .order_by(audit.c.seq)
    )
    return [str(r.record) for r in rows]


# -- followers' cursors --------------------------------------------------------------------------


def cursor(conn: Connection, name: str) -> int:
    """Where follower ``name`` has got to (created at 0 when first asked)."""
    row = conn.execute(select(audit_cursors.c.seq).where(audit_cursors.c.name == name)).first()
    if row is None:
        conn.execute(insert(audit_cursors).values(name=name, seq=0))
        return 0
    return int(row.seq)


def save_cursor(conn: Connection, name: str, seq: int) -> None:
    conn.execute(update(audit_cursors).where(audit_cursors.c.name == name).values(seq=seq))


def start_cursor_at_head(conn: Connection, name: str) -> None:
    """A follower seen for the first time starts after the newest record."""
    if conn.execute(select(audit_cursors.c.seq).where(audit_cursors.c.name == name)).first():
        return
    conn.execute(insert(audit_cursors).values(name=name, seq=head_seq(conn)))
