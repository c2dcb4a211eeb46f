"""The unit of work: one metadata transaction, the audit record of the change it makes, and
the publication of that record once committed.

Write transactions run one at a time (``BEGIN IMMEDIATE`` on SQLite, a transaction-level
advisory lock on PostgreSQL: storage/engine.py), so an operation's checks can never be
separated from the change they guard, on one server or across replicas. The first write
transaction of an audited operation to commit also carries that operation's audit record: a
change and its record commit together or not at all, and a failing audit insert fails the
operation (fail closed). Blobs are written *before* the transaction that points at them (a
crash in between leaves an orphan blob, collected later, never a dangling pointer).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from stateward.domain.audit_record import AuditRecord
from stateward.domain.errors import BadRequest, Unavailable
from stateward.service.trail import AuditTrail
from stateward.storage import transactions
from stateward.storage.errors import StoreUnavailable, ValueRefused
from stateward.storage.transactions import Connection, Engine


class UnitOfWork:
    def __init__(self, engine: Engine, trail: AuditTrail) -> None:
        self.engine = engine
        self.trail = trail

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction that commits with the current operation's audit record."""
        appended: AuditRecord | None = None
        with _store_errors(), transactions.write(self.engine) as conn:
            yield conn
            appended = self.trail.append_pending(conn)
        self.trail.committed(appended)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction: one snapshot, never queued behind writers."""
        with _store_errors(), transactions.read(self.engine) as conn:
            yield conn


@contextmanager
def _store_errors() -> Iterator[None]:
    """A store that cannot be reached: 503 (retry later); a value it cannot hold: 400."""
    try:
        yield
    except StoreUnavailable as exc:
        raise Unavailable(str(exc), retry=exc.retry) from exc
    except ValueRefused as exc:
        raise BadRequest(str(exc)) from exc
