"""Alerts in the service: listing and acknowledging (``audit`` on the whole store), and storing
what the alert follower raises (internal: no transport calls :meth:`AlertOps.store_alert`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, and_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from stateward.domain.actions import Action
from stateward.domain.alerts import AckResult, Alert, AlertDraft
from stateward.domain.errors import BadRequest, NotFound
from stateward.domain.principal import Principal
from stateward.service.base import ServiceBase
from stateward.storage.schema import alerts, audit

MAX_LIST = 1000
MAX_ACK = 1000
#: ``preserve_rowcount``: an INSERT's rowcount is kept only when asked (see repo._INSERT_LOCK).
_INSERT_ALERT = {
    "postgresql": postgresql.insert(alerts)
    .on_conflict_do_nothing(index_elements=["dedup"])
    .execution_options(preserve_rowcount=True),
    "sqlite": sqlite.insert(alerts)
    .on_conflict_do_nothing(index_elements=["dedup"])
    .execution_options(preserve_rowcount=True),
}


def _alert(row: Row[Any]) -> Alert:
    return Alert(
        id=int(row.id),
        at=float(row.at),
        rule=row.rule,
        kind=row.kind,
        severity=row.severity,
        path=row.path,
        principal=row.principal,
        summary=row.summary,
        audit_seq=row.audit_seq,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
    )


class AlertOps(ServiceBase):
    def list_alerts(
        self, who: Principal, include_acknowledged: bool = False, limit: int = 100
    ) -> list[Alert]:
        """Alerts, newest first; by default only those not yet acknowledged (needs ``audit``
        on the whole store)."""
        self._authorize(who, Action.AUDIT)
        if not 1 <= limit <= MAX_LIST:
            raise BadRequest(f"limit must be between 1 and {MAX_LIST}")
        stmt = select(alerts)
        if not include_acknowledged:
            stmt = stmt.where(alerts.c.acknowledged_at.is_(None))
        with self._read_tx() as conn:
            rows = conn.execute(stmt.order_by(alerts.c.id.desc()).limit(limit)).all()
        return [_alert(r) for r in rows]

    def acknowledge_alerts(self, who: Principal, ids: Sequence[int]) -> AckResult:
        """Mark alerts as seen (needs ``audit`` on the whole store). All or nothing: an unknown
        ID refuses the whole request. Acknowledging twice is not an error."""
        self._authorize(who, Action.AUDIT)
        wanted = sorted(set(ids))
        if not wanted or len(wanted) > MAX_ACK:
            raise BadRequest(f"give between 1 and {MAX_ACK} alert IDs")
        with self._write_tx() as conn:
            rows = conn.execute(
                select(alerts.c.id, alerts.c.acknowledged_at).where(alerts.c.id.in_(wanted))
            ).all()
            found = {int(r.id): r.acknowledged_at for r in rows}
            missing = [i for i in wanted if i not in found]
            if missing:
                shown = ", ".join(str(i) for i in missing[:10])
                raise NotFound(f"no alert with ID {shown}")
            fresh = [i for i in wanted if found[i] is None]
            if fresh:
                conn.execute(
                    update(alerts)
                    .where(and_(alerts.c.id.in_(fresh), alerts.c.acknowledged_at.is_(None)))
                    .values(acknowledged_at=self.clock(), acknowledged_by=who.name[:512])
                )
                self._record(conn, who, "alert-ack", None, "ids " + ",".join(str(i) for i in fresh))
        return AckResult(acknowledged=fresh, already=[i for i in wanted if i not in fresh])

    def store_alert(self, draft: AlertDraft) -> Alert | None:
        """Store a raised alert; None if the same alert (same dedup key) is already stored, so
        a record the follower delivers twice alerts once. Internal: called only by the alert
        follower (system), never on behalf of a client, and not itself audited."""
        values = {
            "at": draft.at,
            "rule": draft.rule[:64],
            "kind": draft.kind[:32],
            "severity": draft.severity[:16],
            "path": draft.path,
            "principal": None if draft.principal is None else draft.principal[:512],
            "summary": draft.summary,
            "audit_seq": draft.audit_seq,
            "dedup": draft.dedup,
        }
        with self.engine.begin() as conn:
            stmt = _INSERT_ALERT["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
            if conn.execute(stmt, values).rowcount != 1:
                return None
            row = conn.execute(select(alerts).where(alerts.c.dedup == draft.dedup)).one()
        return _alert(row)

    def read_before(self, path: str, principal: str, since: float, before_seq: int) -> bool:
        """Did ``principal`` read ``path`` successfully at or after ``since``, in a record
        before ``before_seq``? (the rare-reader rule; internal)."""
        stmt = select(audit.c.seq).where(
            audit.c.path == path,
            audit.c.at >= since,
            audit.c.seq < before_seq,
            audit.c.principal == principal,
            audit.c.action == "read",
            audit.c.outcome == "ok",
        )
        with self._read_tx() as conn:
            return conn.execute(stmt.limit(1)).first() is not None
