"""Recording requests that changed nothing (reads, refusals, failures), and reading the trail.

Operations that change something record themselves inside their own transaction
(``ServiceBase._write_tx``). :meth:`AuditOps.audited` wraps every transport call and records
what is left: a successful read is recorded *before* its response is returned, so a read whose
record cannot be written fails (fail closed); a refusal or failure is recorded with its status
and one-line reason.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select

from stateward import metrics
from stateward.domain import audit_chain as chain
from stateward.domain.actions import Action
from stateward.domain.audit_record import AuditRecord, Outcome
from stateward.domain.errors import ServiceError, Unavailable
from stateward.domain.globs import glob_match
from stateward.domain.principal import Principal
from stateward.service.base import ServiceBase
from stateward.service.context import AuditContext
from stateward.storage.schema import audit

log = logging.getLogger("stateward.audit")
T = TypeVar("T")
PAGE = 1000


@dataclass(frozen=True, slots=True)
class AuditQuery:
    since: float | None = None
    until: float | None = None
    path: str | None = None  # a path or a glob
    principal: str | None = None  # exact, or a prefix ending in '*'
    action: str | None = None
    outcome: str | None = None
    after_seq: int = 0
    limit: int | None = None

    def matches(self, r: AuditRecord) -> bool:
        if self.path is not None and (r.path is None or not glob_match(self.path, r.path)):
            return False
        if self.principal is not None:
            want = self.principal
            if want.endswith("*") and not r.principal.startswith(want[:-1]):
                return False
            if not want.endswith("*") and r.principal != want:
                return False
        if self.action is not None and r.action != self.action:
            return False
        return self.outcome is None or r.outcome == self.outcome


@dataclass(frozen=True, slots=True)
class VerifyReport:
    checked: int
    first_bad_seq: int | None
    problem: str

    @property
    def ok(self) -> bool:
        return self.first_bad_seq is None


@dataclass
class _Slot:
    record: AuditRecord
    sealed: AuditRecord | None = None
    error: BaseException | None = None
    done: bool = False


class _Committer:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.pending: list[_Slot] = []
        self.writing = False


class AuditOps(ServiceBase):
    def audited(self, ctx: AuditContext, call: Callable[[], T]) -> T:
        """Run one transport call and make sure exactly one record describes it."""
        try:
            result = call()
        except ServiceError as exc:
            if not ctx.recorded:
                outcome: Outcome = "denied" if exc.denied else "failed"
                self.record_outcome(ctx, outcome, exc.status, str(exc))
            raise
        except Exception:
            if not ctx.recorded:
                self.record_outcome(ctx, "failed", 500, "internal error")
            raise
        if not ctx.recorded:
            self.record_outcome(ctx, "ok", 200)
        return result

    def record_outcome(
        self, ctx: AuditContext, outcome: Outcome, status: int, reason: str = ""
    ) -> None:
        """Write a standalone record; raises Unavailable if it cannot (the caller fails).

        Concurrent callers share transactions (group commit): one of them writes every record
        waiting at that moment in one commit, so N parallel reads cost one fsync, not N."""
        record = self._audit_record(ctx, outcome, status, reason)
        slot = _Slot(record)
        committer = self._committer()
        with committer.cond:
            committer.pending.append(slot)
            while not slot.done:
                if committer.writing:
                    committer.cond.wait()
                    continue
                committer.writing = True
                batch, committer.pending = committer.pending, []
                committer.cond.release()
                try:
                    self._write_batch(batch)
                finally:
                    committer.cond.acquire()
                    committer.writing = False
                    committer.cond.notify_all()
        if slot.error is not None:
            raise Unavailable("the audit trail cannot be written; request refused") from slot.error
        ctx.recorded = True
        assert slot.sealed is not None
        self._publish(slot.sealed)

    def _write_batch(self, batch: list[_Slot]) -> None:
        try:
            with self.engine.begin() as conn:
                sealed = [self._append_audit(conn, s.record) for s in batch]
        except Exception as exc:
            log.error("audit records could not be written: %s", type(exc).__name__)
            self.audit_write_failures += len(batch)
            for _ in batch:
                metrics.audit_write_failed()
            for s in batch:
                s.error, s.done = exc, True
            return
        for s, r in zip(batch, sealed, strict=True):
            s.sealed, s.done = r, True

    def _committer(self) -> _Committer:
        """One per service, created on first use (dict.setdefault is atomic)."""
        committer: _Committer = self.__dict__.setdefault("_audit_committer", _Committer())
        return committer

    audit_write_failures = 0

    # -- reading -----------------------------------------------------------------------------

    def audit_records(self, who: Principal, query: AuditQuery) -> Iterator[AuditRecord]:
        """Records matching ``query`` in chain order (needs ``audit`` on the whole store)."""
        self._authorize(who, Action.AUDIT)
        after, returned = query.after_seq, 0
        while True:
            stmt = select(audit.c.seq, audit.c.record).where(audit.c.seq > after)
            if query.since is not None:
                stmt = stmt.where(audit.c.at >= query.since)
            if query.until is not None:
                stmt = stmt.where(audit.c.at < query.until)
            if query.path is not None and "*" not in query.path:
                stmt = stmt.where(audit.c.path == query.path)
            with self._read_tx() as conn:
                rows = conn.execute(stmt.order_by(audit.c.seq).limit(PAGE)).all()
            for row in rows:
                record = chain.from_json(row.record)
                if query.matches(record):
                    yield record
                    returned += 1
                    if query.limit is not None and returned >= query.limit:
                        return
            if len(rows) < PAGE:
                return
            after = rows[-1].seq

    def verify_audit(self, who: Principal) -> VerifyReport:
        """Walk the whole chain; name the first record that was modified, deleted, inserted or
        moved."""
        self._authorize(who, Action.AUDIT)

        def rows() -> Iterator[tuple[int, str, str, str]]:
            after = 0
            while True:
                with self._read_tx() as conn:
                    page = conn.execute(
                        select(audit.c.seq, audit.c.prev_hash, audit.c.hash, audit.c.record)
                        .where(audit.c.seq > after)
                        .order_by(audit.c.seq)
                        .limit(PAGE)
                    ).all()
                for r in page:
                    yield int(r.seq), str(r.prev_hash), str(r.hash), str(r.record)
                if len(page) < PAGE:
                    return
                after = page[-1].seq

        checked, problem = chain.verify(rows())
        if problem is None:
            return VerifyReport(checked, None, "")
        return VerifyReport(checked, problem.seq, problem.what)

    def audit_head_seq(self) -> int:
        with self._read_tx() as conn:
            row = conn.execute(select(audit.c.seq).order_by(audit.c.seq.desc()).limit(1)).first()
        return 0 if row is None else int(row.seq)


def record_dict(record: AuditRecord) -> dict[str, Any]:
    return record.to_dict()
