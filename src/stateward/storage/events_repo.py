"""The ``events`` table: administrative events per path (break-lock, overrides, deletes …)."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select

from stateward.storage.records import EventRecord, record
from stateward.storage.schema import events


def record_event(
    conn: Connection, at: float, principal: str, action: str, path: str | None, detail: str = ""
) -> None:
    conn.execute(
        insert(events).values(at=at, principal=principal, action=action, path=path, detail=detail)
    )


def list_events(conn: Connection, path: str | None, limit: int) -> list[EventRecord]:
    q = select(events)
    if path is not None:
        q = q.where(events.c.path == path)
    return [
        record(EventRecord, r) for r in conn.execute(q.order_by(events.c.id.desc()).limit(limit))
    ]
