"""Reading the audit trail: queries, verification of the hash chain, and what the trail's
followers (sinks, alert rules) read. Appending is ``service/trail.py``'s."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from stateward.domain import audit_chain as chain
from stateward.domain.actions import Action
from stateward.domain.audit_record import AuditRecord
from stateward.domain.globs import glob_match
from stateward.domain.principal import Principal
from stateward.service import context
from stateward.service.deps import Operations
from stateward.storage import audit_repo

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


class AuditOps(Operations):
    # -- reading -----------------------------------------------------------------------------

    def audit_records(self, who: Principal, query: AuditQuery) -> Iterator[AuditRecord]:
        """Records matching ``query`` in chain order (needs ``audit`` on the whole store)."""
        self.authz.authorize_store(who, Action.AUDIT)
        after, returned = query.after_seq, 0
        while True:
            exact = query.path if query.path is not None and "*" not in query.path else None
            with self.uow.read() as conn:
                rows = audit_repo.records_after(
                    conn, after, PAGE, since=query.since, until=query.until, path=exact
                )
            for _seq, text in rows:
                record = chain.from_json(text)
                if query.matches(record):
                    yield record
                    returned += 1
                    if query.limit is not None and returned >= query.limit:
                        return
            if len(rows) < PAGE:
                return
            after = rows[-1][0]

    def verify_audit(self, who: Principal) -> VerifyReport:
        """Walk the whole chain; name the first record that was modified, deleted, inserted or
        moved."""
        self.authz.authorize_store(who, Action.AUDIT)

        def rows() -> Iterator[tuple[int, str, str, str]]:
            after = 0
            while True:
                with self.uow.read() as conn:
                    page = audit_repo.chain_rows(conn, after, PAGE)
                for r in page:
                    yield r.seq, r.prev_hash, r.hash, r.record
                if len(page) < PAGE:
                    return
                after = page[-1].seq

        checked, problem = chain.verify(rows())
        if problem is None:
            return VerifyReport(checked, None, "")
        return VerifyReport(checked, problem.seq, problem.what)

    def audit_head_seq(self, who: Principal) -> int:
        """The newest record's seq (needs ``audit`` on the whole store)."""
        self.authz.authorize_store(who, Action.AUDIT)
        with self.uow.read() as conn:
            return audit_repo.head_seq(conn)

    def record_note(self, who: Principal, action: Action, reason: str) -> None:
        """Commit the current operation's record now, ``ok`` with ``reason``: for work done
        outside this store's own transactions that its trail must show (a migrate-store into
        it). Needs ``action`` on the whole store."""
        self.authz.authorize_store(who, action)
        context.note(reason=reason)
        with self.uow.write():
            pass  # the unit of work appends the operation's record as it commits

    # -- for the trail's followers (internal: jobs, never a transport) ------------------------

    def follower_cursor(self, name: str) -> int:
        """Where follower ``name`` has got to (created at 0 when first asked)."""
        with self.uow.write() as conn:
            return audit_repo.cursor(conn, name)

    def save_follower_cursor(self, name: str, seq: int) -> None:
        with self.uow.write() as conn:
            audit_repo.save_cursor(conn, name, seq)

    def start_follower_at_head(self, name: str) -> None:
        """A follower seen for the first time starts after the newest record."""
        with self.uow.write() as conn:
            audit_repo.start_cursor_at_head(conn, name)

    def records_after(self, after: int, limit: int) -> list[tuple[int, AuditRecord]]:
        """Up to ``limit`` records after seq ``after``, in chain order."""
        with self.uow.read() as conn:
            rows = audit_repo.records_after(conn, after, limit)
        return [(seq, chain.from_json(text)) for seq, text in rows]

    def authentications_before(self, seq: int, window: float) -> list[AuditRecord]:
        """The ``authenticate`` records of the ``window`` seconds up to record ``seq``."""
        with self.uow.read() as conn:
            texts = audit_repo.authentications_before(conn, seq, window)
        return [chain.from_json(text) for text in texts]

    def read_before(self, path: str, principal: str, since: float, before_seq: int) -> bool:
        """Did ``principal`` read ``path`` successfully at or after ``since``, in a record
        before ``before_seq``? (the rare-reader rule)."""
        with self.uow.read() as conn:
            return audit_repo.read_before(conn, path, principal, since, before_seq)
