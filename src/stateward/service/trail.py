"""Appending to the audit trail: one hash-chained record per request or command.

Two ways in, one chain. An operation that changes something appends its record inside its own
write transaction (:meth:`AuditTrail.append`, called by the unit of work), so the change and
its record commit together or not at all. Whatever changed nothing -- a read, a refusal, a
failure -- is recorded by :meth:`AuditTrail.record_outcome` when the gate closes the request;
a read's record is durable before its response is sent, and a read whose record cannot be
written fails (fail closed). Concurrent standalone records share transactions (group commit).

Committed records are handed to listeners (SIEM sinks, alert rules) after the commit.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from stateward import metrics
from stateward.domain import audit_chain
from stateward.domain.audit_record import AuditRecord, Outcome
from stateward.domain.errors import Unavailable
from stateward.domain.principal import Principal
from stateward.service import context
from stateward.service.context import AuditContext
from stateward.storage import audit_repo, transactions
from stateward.storage.transactions import Connection, Engine

log = logging.getLogger("stateward.audit")


@dataclass
class _Slot:
    record: AuditRecord
    sealed: AuditRecord | None = None
    error: BaseException | None = None
    done: bool = False


class AuditTrail:
    def __init__(self, engine: Engine, clock: Callable[[], float]) -> None:
        self.engine = engine
        self.clock = clock
        #: Called with every committed record (sinks, alert rules); must not block.
        self.listeners: list[Callable[[AuditRecord], None]] = []
        self.write_failures = 0
        self._cond = threading.Condition()
        self._pending: list[_Slot] = []
        self._writing = False

    def build(
        self, ctx: AuditContext, outcome: Outcome, status: int, reason: str = ""
    ) -> AuditRecord:
        """The record describing ``ctx`` (never a body, token or key: names and numbers)."""
        who = ctx.who
        facts = ctx.facts
        return AuditRecord(
            at=self.clock(),
            request_id=ctx.request_id,
            principal=who.name if who is not None else "anonymous",
            principal_kind=who.kind if who is not None else "anonymous",
            source=(who.source if who is not None else "") or ctx.source,
            user_agent=ctx.user_agent or (who.user_agent if who is not None else ""),
            action=ctx.action or ("request" if who is not None else "authenticate"),
            operation=ctx.operation,
            path=ctx.path,
            outcome=outcome,
            status=status,
            reason=" ".join((reason or str(facts.get("reason", ""))).split())[:500],
            lock_id=facts.get("lock_id"),
            serial=facts.get("serial"),
            version=facts.get("version"),
            bytes_in=int(facts.get("bytes_in", 0)),
            bytes_out=int(facts.get("bytes_out", 0)),
            resources=facts.get("resources"),
            prev_resources=facts.get("prev_resources"),
            claims=dict(who.claims) if who is not None else {},
        )

    def append(self, conn: Connection, record: AuditRecord) -> AuditRecord:
        """Link ``record`` to the chain head and insert it, inside the caller's write
        transaction (which holds the write lock, so the chain stays one line)."""
        head = audit_repo.head(conn)
        seq, prev = (1, audit_chain.GENESIS) if head is None else (head[0] + 1, head[1])
        sealed = audit_chain.seal(record, seq, prev)
        audit_repo.insert_record(
            conn,
            seq=seq,
            at=sealed.at,
            principal=sealed.principal[:512],
            action=sealed.action,
            path=sealed.path,
            outcome=sealed.outcome,
            prev_hash=sealed.prev_hash,
            hash=sealed.hash,
            record=json.dumps(sealed.to_dict(), sort_keys=True, separators=(",", ":")),
        )
        return sealed

    def append_pending(self, conn: Connection) -> AuditRecord | None:
        """In a committing write transaction: the current operation's record, unless it was
        recorded already or never reached an action (then the gate records its outcome)."""
        ctx = context.current()
        if ctx is None or ctx.recorded or ctx.action is None:
            return None
        return self.append(conn, self.build(ctx, "ok", 200))

    def committed(self, record: AuditRecord | None) -> None:
        """After the commit of a transaction that appended ``record``."""
        if record is not None:
            ctx = context.current()
            if ctx is not None:
                ctx.recorded = True
            self.publish(record)

    def record_outcome(
        self, ctx: AuditContext, outcome: Outcome, status: int, reason: str = ""
    ) -> None:
        """Write a standalone record for ``ctx``; raises Unavailable if it cannot (the caller
        fails the request). Concurrent callers share transactions: one of them writes every
        record waiting at that moment in one commit, so N parallel reads cost one fsync."""
        slot = _Slot(self.build(ctx, outcome, status, reason))
        with self._cond:
            self._pending.append(slot)
            while not slot.done:
                if self._writing:
                    self._cond.wait()
                    continue
                self._writing = True
                batch, self._pending = self._pending, []
                self._cond.release()
                try:
                    self._write_batch(batch)
                finally:
                    self._cond.acquire()
                    self._writing = False
                    self._cond.notify_all()
        if slot.error is not None:
            raise Unavailable("the audit trail cannot be written; request refused") from slot.error
        ctx.recorded = True
        assert slot.sealed is not None
        self.publish(slot.sealed)

    def _write_batch(self, batch: list[_Slot]) -> None:
        try:
            with transactions.write(self.engine) as conn:
                sealed = [self.append(conn, s.record) for s in batch]
        except Exception as exc:
            log.error("audit records could not be written: %s", type(exc).__name__)
            self.write_failures += len(batch)
            for _ in batch:
                metrics.audit_write_failed()
            for s in batch:
                s.error, s.done = exc, True
            return
        for s, r in zip(batch, sealed, strict=True):
            s.sealed, s.done = r, True

    def publish(self, record: AuditRecord) -> None:
        """Hand a committed record to the listeners. One failing never affects the request
        or the others."""
        for listener in list(self.listeners):
            try:
                listener(record)
            except Exception:
                log.exception("audit listener failed")

    @contextmanager
    def child(self, who: Principal, suffix: str) -> Iterator[AuditContext | None]:
        """A record of its own inside the current operation (same request ID and source), for
        an operation made of steps that each deserve one (an import: one per version).
        Outside an audited operation (a direct call in a test), no child is opened."""
        outer = context.current()
        if outer is None:
            yield None
            return
        operation = f"{outer.operation} {suffix}" if suffix else outer.operation
        with context.begin(
            operation, outer.source, outer.user_agent, request_id=outer.request_id
        ) as ctx:
            ctx.who = outer.who or who
            yield ctx
