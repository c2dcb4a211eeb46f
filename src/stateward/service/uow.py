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

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DataError, OperationalError

from stateward.domain.audit_record import AuditRecord
from stateward.domain.errors import BadRequest, Unavailable
from stateward.service.trail import AuditTrail
from stateward.storage.engine import READ_ONLY

STORE_DOWN = "metadata store is unavailable, retry later"


class UnitOfWork:
    def __init__(self, engine: Engine, trail: AuditTrail) -> None:
        self.engine = engine
        self.trail = trail

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction that commits with the current operation's audit record."""
        appended: AuditRecord | None = None
        try:
            with self.engine.begin() as conn:
                yield conn
                appended = self.trail.append_pending(conn)
        except OperationalError as exc:
            raise Unavailable(STORE_DOWN) from exc
        except DataError as exc:
            # A value the store refuses to hold (PostgreSQL: a NUL character in text, an
            # integer past 64 bits); SQLite stores the former. Never echo the value.
            raise BadRequest(_data_error_reason(exc)) from exc
        self.trail.committed(appended)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction: one snapshot, never queued behind writers."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{READ_ONLY: True})
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            raise Unavailable(STORE_DOWN) from exc


def _data_error_reason(exc: DataError) -> str:
    text = str(exc.orig)
    if "NUL" in text:
        return "the request holds a NUL character, which the metadata store cannot hold"
    if "out of range" in text:
        return "the request holds a number out of the metadata store's range"
    return "the request holds a value the metadata store cannot hold"
