"""Alerts in the service: listing and acknowledging (``audit`` on the whole store), and storing
what the alert engine raises (internal: no transport calls :meth:`AlertOps.store_alert`)."""

from __future__ import annotations

from collections.abc import Sequence

from stateward.domain.actions import Action
from stateward.domain.alerts import AckResult, Alert, AlertDraft
from stateward.domain.errors import BadRequest, NotFound
from stateward.domain.principal import Principal
from stateward.service.deps import Operations
from stateward.service.views import LockView, lock_view
from stateward.storage import alerts_repo, locks_repo
from stateward.storage.records import AlertRecord

MAX_LIST = 1000
MAX_ACK = 1000


def _alert(r: AlertRecord) -> Alert:
    return Alert(
        id=r.id,
        at=r.at,
        rule=r.rule,
        kind=r.kind,
        severity=r.severity,
        path=r.path,
        principal=r.principal,
        summary=r.summary,
        audit_seq=r.audit_seq,
        acknowledged_at=r.acknowledged_at,
        acknowledged_by=r.acknowledged_by,
    )


class AlertOps(Operations):
    def list_alerts(
        self, who: Principal, include_acknowledged: bool = False, limit: int = 100
    ) -> list[Alert]:
        """Alerts, newest first; by default only those not yet acknowledged (needs ``audit``
        on the whole store)."""
        self.authz.authorize_store(who, Action.AUDIT)
        if not 1 <= limit <= MAX_LIST:
            raise BadRequest(f"limit must be between 1 and {MAX_LIST}")
        with self.uow.read() as conn:
            rows = alerts_repo.list_alerts(conn, include_acknowledged, limit)
        return [_alert(r) for r in rows]

    def acknowledge_alerts(self, who: Principal, ids: Sequence[int]) -> AckResult:
        """Mark alerts as seen (needs ``audit`` on the whole store). All or nothing: an unknown
        ID refuses the whole request. Acknowledging twice is not an error."""
        self.authz.authorize_store(who, Action.AUDIT)
        wanted = sorted(set(ids))
        if not wanted or len(wanted) > MAX_ACK:
            raise BadRequest(f"give between 1 and {MAX_ACK} alert IDs")
        with self.uow.write() as conn:
            found = alerts_repo.acknowledged_at(conn, wanted)
            missing = [i for i in wanted if i not in found]
            if missing:
                shown = ", ".join(str(i) for i in missing[:10])
                raise NotFound(f"no alert with ID {shown}")
            fresh = [i for i in wanted if found[i] is None]
            if fresh:
                alerts_repo.acknowledge(conn, fresh, self.clock(), who.name[:512])
                self.event(conn, who, "alert-ack", None, "ids " + ",".join(str(i) for i in fresh))
        return AckResult(acknowledged=fresh, already=[i for i in wanted if i not in fresh])

    def held_locks(self) -> list[LockView]:
        """Every held lock (the long-lock rules); internal, for the alert engine."""
        now = self.clock()
        with self.uow.read() as conn:
            held = locks_repo.list_all(conn)
        return [lock_view(h, now) for h in held]

    def store_alert(self, draft: AlertDraft) -> Alert | None:
        """Store a raised alert; None if the same alert (same dedup key) is already stored, so
        a record the follower delivers twice alerts once. Internal: called only by the alert
        engine (system), never on behalf of a client, and not itself audited."""
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
        with self.uow.write() as conn:
            stored = alerts_repo.insert_unless_raised(conn, values)
        return None if stored is None else _alert(stored)
