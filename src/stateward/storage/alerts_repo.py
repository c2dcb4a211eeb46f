"""The ``alerts`` table: alerts raised by the rules, and their acknowledgement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, select, update

from stateward.storage.dialect import insert_if_absent
from stateward.storage.records import AlertRecord, record
from stateward.storage.schema import alerts


def list_alerts(conn: Connection, include_acknowledged: bool, limit: int) -> list[AlertRecord]:
    """Newest first."""
    stmt = select(alerts)
    if not include_acknowledged:
        stmt = stmt.where(alerts.c.acknowledged_at.is_(None))
    rows = conn.execute(stmt.order_by(alerts.c.id.desc()).limit(limit))
    return [record(AlertRecord, r) for r in rows]


def acknowledged_at(conn: Connection, ids: Sequence[int]) -> dict[int, float | None]:
    """For each of ``ids`` that exists: when it was acknowledged (None: not yet)."""
    rows = conn.execute(
        select(alerts.c.id, alerts.c.acknowledged_at).where(alerts.c.id.in_(list(ids)))
    )
    return {int(r.id): r.acknowledged_at for r in rows}


def acknowledge(conn: Connection, ids: Sequence[int], at: float, by: str) -> None:
    conn.execute(
        update(alerts)
        .where(and_(alerts.c.id.in_(list(ids)), alerts.c.acknowledged_at.is_(None)))
        .values(acknowledged_at=at, acknowledged_by=by)
    )


def insert_unless_raised(conn: Connection, values: dict[str, Any]) -> AlertRecord | None:
    """Store an alert unless one with the same ``dedup`` key exists (then None)."""
    if not insert_if_absent(conn, alerts, ("dedup",), values):
        return None
    row = conn.execute(select(alerts).where(alerts.c.dedup == values["dedup"])).one()
    return record(AlertRecord, row)
